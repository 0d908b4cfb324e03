"""Audio input for the Musika codec: any file soundfile reads, as 44.1 kHz stereo float32.

- Formats: whatever libsndfile decodes (WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...).
- Sample rates: anything, resampled with soxr's streaming resampler (HQ), so reading in
  blocks and reading whole give the same samples.
- Channels: mono is duplicated to stereo (never dropped); more than two channels is an error.
- Integer PCM is scaled to [-1, 1) by its full-scale value; NaN/Inf are rejected.
- Long files are read in blocks (`iter_audio_blocks`), so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from musika_model.config import SAMPLE_RATE

DEFAULT_BLOCK_FRAMES = 1 << 20
"""Frames read per block when streaming a file (about 24 s at 44.1 kHz)."""


class AudioError(Exception):
    """Base class of the audio input errors."""


class AudioFileError(AudioError):
    """A file could not be opened or decoded."""


class EmptyAudioError(AudioError):
    """The audio holds no samples."""


class NonFiniteAudioError(AudioError):
    """The audio contains NaN or infinite samples."""


class ChannelLayoutError(AudioError):
    """The audio is neither mono nor stereo, or is laid out channels-first."""


class AudioDtypeError(AudioError):
    """The audio array has a dtype that is not integer PCM or real floating point."""


class SampleRateError(AudioError):
    """A sample rate that is not a positive number."""


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says (before resampling)."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def _scale_to_float(audio: np.ndarray, source: str) -> np.ndarray:
    if np.issubdtype(audio.dtype, np.floating):
        return audio.astype(np.float32, copy=False)
    if np.issubdtype(audio.dtype, np.signedinteger):
        full_scale = float(2 ** (8 * audio.dtype.itemsize - 1))
        return (audio.astype(np.float64) / full_scale).astype(np.float32)
    if np.issubdtype(audio.dtype, np.unsignedinteger):
        midpoint = float(2 ** (8 * audio.dtype.itemsize - 1))
        return ((audio.astype(np.float64) - midpoint) / midpoint).astype(np.float32)
    raise AudioDtypeError(
        f"{source}: audio dtype {audio.dtype} is not supported; expected integer PCM or float"
    )


def check_finite(audio: np.ndarray, source: str, offset: int = 0) -> None:
    """Raise NonFiniteAudioError naming the first NaN/Inf sample (offset added to its index)."""
    finite = np.isfinite(audio)
    if not finite.all():
        first = int(np.argwhere(~finite)[0][0]) + offset
        raise NonFiniteAudioError(f"{source}: non-finite sample (NaN or Inf) at sample {first}")


def to_stereo_float(audio: np.ndarray, source: str = "audio", offset: int = 0) -> np.ndarray:
    """(n,), (n, 1) or (n, 2) audio of any PCM dtype -> (n, 2) float32, mono duplicated.

    `source` names the audio in error messages; `offset` is added to reported sample indices.
    """
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.ndim != 2:
        raise ChannelLayoutError(
            f"{source}: expected audio shaped (samples,) or (samples, channels), got {audio.shape}"
        )
    if audio.shape[1] not in (1, 2):
        hint = " (channels-first? transpose it)" if audio.shape[0] in (1, 2) else ""
        raise ChannelLayoutError(
            f"{source}: expected 1 or 2 channels, got shape {audio.shape}{hint}"
        )
    audio = _scale_to_float(audio, source)
    check_finite(audio, source, offset)
    if audio.shape[1] == 1:
        audio = np.repeat(audio, 2, axis=1)
    return np.ascontiguousarray(audio)


def _check_rate(sample_rate: float, source: str) -> None:
    if not np.isfinite(sample_rate) or sample_rate <= 0:
        raise SampleRateError(f"{source}: sample rate must be a positive number, got {sample_rate}")


def resample(
    audio: np.ndarray, sample_rate: float, target_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Resample (n, 2) float32 audio; a no-op at the target rate.

    Uses the same streaming resampler as `iter_audio_blocks`, fed in one piece.
    """
    _check_rate(sample_rate, "resample")
    if sample_rate == target_rate:
        return audio
    stream = soxr.ResampleStream(sample_rate, target_rate, audio.shape[1], dtype="float32")
    return stream.resample_chunk(np.ascontiguousarray(audio, dtype=np.float32), last=True)


def _open(path: Path) -> sf.SoundFile:
    if not path.is_file():
        raise AudioFileError(f"{path}: no such audio file")
    try:
        return sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError) as error:
        raise AudioFileError(f"{path}: cannot open as audio ({error})") from error


def audio_info(path: str | Path) -> AudioInfo:
    """Header facts of an audio file, without decoding it."""
    path = Path(path)
    with _open(path) as handle:
        return AudioInfo(path, handle.samplerate, handle.channels, handle.frames, handle.format)


def iter_audio_blocks(
    path: str | Path,
    target_rate: int = SAMPLE_RATE,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
) -> Iterator[np.ndarray]:
    """Yield a file's audio as consecutive (k, 2) float32 blocks at `target_rate`.

    At most about `block_frames` source frames are held at a time. Concatenating the blocks
    gives exactly what `load_audio` returns. Raises EmptyAudioError for a file with no
    samples and NonFiniteAudioError (with the sample index) for NaN/Inf.
    """
    path = Path(path)
    if block_frames < 1:
        raise ValueError(f"block_frames must be positive, got {block_frames}")
    with _open(path) as handle:
        if handle.channels > 2:
            raise ChannelLayoutError(
                f"{path}: {handle.channels} channels; expected mono or stereo"
            )
        source_rate = handle.samplerate
        stream = None
        if source_rate != target_rate:
            stream = soxr.ResampleStream(source_rate, target_rate, 2, dtype="float32")
        read = 0
        while True:
            try:
                block = handle.read(frames=block_frames, dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError) as error:
                raise AudioFileError(
                    f"{path}: decoding failed after {read} frames ({error})"
                ) from error
            if len(block) == 0:
                break
            block = to_stereo_float(block, str(path), offset=read)
            read += len(block)
            if stream is not None:
                block = stream.resample_chunk(block)
            if len(block):
                yield block
        if stream is not None and read:
            tail = stream.resample_chunk(np.zeros((0, 2), np.float32), last=True)
            if len(tail):
                yield tail
    if read == 0:
        raise EmptyAudioError(f"{path}: the file holds no audio samples")


def load_audio(path: str | Path, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A whole file as (n, 2) float32 at `target_rate` (see `iter_audio_blocks`)."""
    return np.concatenate(list(iter_audio_blocks(path, target_rate)), axis=0)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write (n, 2) or (n,) float audio as a float32 WAV; returns the path.

    Raises NonFiniteAudioError instead of writing NaN/Inf.
    """
    path = Path(path)
    stereo = to_stereo_float(audio, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), stereo, sample_rate, subtype="FLOAT", format="WAV")
    return path
