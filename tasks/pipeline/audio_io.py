"""Stage-level audio helpers: which file of a store object is its audio, and the level stats
stages record.

Reading, writing and converting audio files is `musika_model.audio` (one NaN rule, one error
family, OS faults kept as OSError); nothing here touches a file's samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from musika_model.audio import AudioFileError, to_stereo_float

SILENCE_DBFS = -float("inf")


def single_audio_file(directory: Path) -> Path:
    """The one `audio.*` file of a stage object's directory (AudioFileError if not exactly one)."""
    found = sorted(directory.glob("audio.*"))
    if len(found) != 1:
        raise AudioFileError(f"expected one audio.* file in {directory}, found {[p.name for p in found]}")
    return found[0]


def amplitude_to_db(amplitude: float) -> float:
    """20*log10(amplitude), with -inf for zero instead of a warning."""
    return 20.0 * float(np.log10(amplitude)) if amplitude > 0 else SILENCE_DBFS


@dataclass(frozen=True)
class AudioStats:
    duration_s: float
    peak_dbfs: float
    rms_dbfs: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def audio_stats(audio: np.ndarray, sample_rate: int) -> AudioStats:
    """Duration, sample peak and RMS (over both channels) of (n, 2) or mono audio."""
    samples = to_stereo_float(audio)
    if samples.size == 0:
        return AudioStats(duration_s=0.0, peak_dbfs=SILENCE_DBFS, rms_dbfs=SILENCE_DBFS)
    peak = float(np.max(np.abs(samples)))
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return AudioStats(
        duration_s=samples.shape[0] / float(sample_rate),
        peak_dbfs=amplitude_to_db(peak),
        rms_dbfs=amplitude_to_db(rms),
    )
