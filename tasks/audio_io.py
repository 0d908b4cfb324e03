"""Small audio helpers shared by the data stages: float32 stereo WAV I/O, PCM conversion, stats.

The project's audio contract (docs/stage-contracts.md §1): float32 samples in [-1, 1], shape (n, 2), mono is
duplicated to stereo and never dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SILENCE_DBFS = -float("inf")


class AudioFormatError(ValueError):
    """An array or file that cannot be turned into (n, 2) float32 audio."""


def pcm_to_float32(audio: np.ndarray) -> np.ndarray:
    """Convert integer PCM to float32 in [-1, 1] (scaled by the integer range); floats pass through.

    Signed integers are divided by 2**(bits-1); unsigned 8-bit PCM (WAV's convention) is
    centred on 128 first.
    """
    array = np.asarray(audio)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    if array.dtype == np.uint8:
        return ((array.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if np.issubdtype(array.dtype, np.signedinteger):
        scale = float(2 ** (8 * array.dtype.itemsize - 1))
        return (array.astype(np.float64) / scale).astype(np.float32)
    raise AudioFormatError(
        f"unsupported sample type {array.dtype}: expected float or signed integer PCM"
    )


def ensure_stereo(audio: np.ndarray) -> np.ndarray:
    """Return audio of shape (n, 2): 1-D or (n, 1) mono is duplicated to both channels."""
    array = np.asarray(audio)
    if array.ndim == 1:
        return np.stack([array, array], axis=1)
    if array.ndim == 2 and array.shape[1] == 1:
        return np.repeat(array, 2, axis=1)
    if array.ndim == 2 and array.shape[1] == 2:
        return array
    raise AudioFormatError(
        f"audio of shape {array.shape}: expected (n,) mono, (n, 1) mono or (n, 2) stereo "
        "with samples along the first axis"
    )


def as_stereo_float32(audio: np.ndarray) -> np.ndarray:
    """PCM conversion and stereo duplication in one step: the form every stage works on."""
    return np.ascontiguousarray(ensure_stereo(pcm_to_float32(audio)), dtype=np.float32)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write audio as a 32-bit float stereo WAV; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, as_stereo_float32(audio), int(sample_rate), subtype="FLOAT", format="WAV")
    return target


def write_pcm16_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write 16-bit PCM WAV (what every player and browser takes), clipped to [-1, 1], channels as
    given; for generated samples people listen to."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0), int(sample_rate), subtype="PCM_16",
             format="WAV")
    return target


def write_pcm16_flac(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write stereo 16-bit FLAC at the fastest compression level (about 8x smaller than float WAV).

    Lossless only for audio already on the int16 grid, such as FluidSynth's output.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, as_stereo_float32(audio), int(sample_rate), format="FLAC", subtype="PCM_16",
             compression_level=0.0)
    return target


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read any file libsndfile decodes (WAV, FLAC, OGG, MP3) as (n, 2) float32 and its rate."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"audio file not found: {source}")
    try:
        audio, sample_rate = sf.read(source, dtype="float32", always_2d=True)
    except sf.LibsndfileError as error:
        raise AudioFormatError(f"cannot decode audio file {source}: {error}") from error
    if audio.shape[1] > 2:
        raise AudioFormatError(
            f"{source} has {audio.shape[1]} channels: only mono and stereo are supported"
        )
    return as_stereo_float32(audio), int(sample_rate)


def single_audio_file(directory: Path) -> Path:
    """The one `audio.*` file of a stage object's directory."""
    found = sorted(directory.glob("audio.*"))
    if len(found) != 1:
        raise AudioFormatError(f"expected one audio.* file in {directory}, found {[p.name for p in found]}")
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
    samples = as_stereo_float32(audio)
    if samples.size == 0:
        return AudioStats(duration_s=0.0, peak_dbfs=SILENCE_DBFS, rms_dbfs=SILENCE_DBFS)
    peak = float(np.max(np.abs(samples)))
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return AudioStats(
        duration_s=samples.shape[0] / float(sample_rate),
        peak_dbfs=amplitude_to_db(peak),
        rms_dbfs=amplitude_to_db(rms),
    )
