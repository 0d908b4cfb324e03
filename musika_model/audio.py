"""Audio file I/O for the whole project: the one module that reads, writes and converts audio.

The audio contract (docs/stage-contracts.md §1): in memory, audio is (n, 2) float32 in [-1, 1],
samples along the first axis; mono is duplicated to stereo, never dropped; more than two
channels is an error. Integer PCM is scaled by its full-scale value (signed: 2**(bits - 1);
unsigned 8-bit, WAV's convention, centred on 128 first); other dtypes are refused.

- Header: `audio_info` (rate, channels, frames, format, subtype; nothing decoded).
- Reading, any format libsndfile decodes (WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...): `read_audio`
  (a whole file at its own rate), `read_audio_window` (a range of frames), `iter_audio_blocks`
  (bounded memory, resampled or not), `load_audio` (a whole file at 44.1 kHz). Resampling is
  soxr's streaming resampler (HQ), so reading in blocks and reading whole give the same samples.
- Writing: `write_wav` (float32 stereo WAV), `write_pcm16_flac` (16-bit stereo FLAC, exact for
  audio on the int16 grid), `write_pcm16_wav` (16-bit WAV, channels as given, for listening),
  `copy_to_flac` (a file re-encoded as FLAC block by block).
- In memory: `to_stereo_float`, `check_finite`, `resample`.

**A cut file is refused.** A file that ends before the length its header declares (a copy or
download cut short) raises `TruncatedAudioError`, giving both lengths, from every reader:
libsndfile opens a cut WAV or AIFF as a shorter, valid file, so their headers are read here
when the file is opened; other formats (FLAC, MP3, OGG) show it while decoding, when the data
breaks off at the end of the file or simply ends more than `TRUNCATION_TOLERANCE_S` (or
`TRUNCATION_TOLERANCE_RATIO` of the declared length) early. The tolerance is for lengths that
are estimates (an MP3 without a Xing header).

**One rule for non-finite samples.** NaN and Inf are never read, converted or written: reading
a file, converting an array and writing one raise `NonFiniteAudioError`, naming the file (or
array) and its first bad frame. Nothing is replaced, clipped or skipped, and a writer refuses
before it creates the file. A caller that wants to keep such audio (evaluation flags NaN clips
and writes them as silence) replaces the values itself, visibly.

**One error family**, `AudioError` (a ValueError): the audio itself cannot be used.

    AudioError
    ├── AudioFileError       not audio libsndfile can decode, or decoding failed part-way
    │   └── TruncatedAudioError  shorter than its header declares (`reason`: "truncated")
    ├── EmptyAudioError      no samples
    ├── NonFiniteAudioError  NaN or Inf (`source`, `frame`: the first bad frame)
    ├── ChannelLayoutError   neither mono nor stereo, or channels-first
    ├── AudioDtypeError      not integer PCM or real floating point
    └── SampleRateError      not a positive number

**Faults of the machine are not bad audio.** A missing file, a directory, a denied permission, a
read-only file system, a full disk or an I/O error is the `OSError` the OS reported, with its
errno and the path, never an `AudioError`. libsndfile reduces such faults to "System error.", to
a codec message ("problem with initialization of the flac decoder" on a full disk), or to a
short count that soundfile turns into an AssertionError or, when reading, an early end of file.
So every file is opened by Python and handed to libsndfile as a file object; the first OSError
its reads, writes or seeks hit is raised instead. A write that fails removes its partial file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import soundfile as sf
import soxr

from musika_model.config import SAMPLE_RATE

DEFAULT_BLOCK_FRAMES = 1 << 20
"""Frames read per block when streaming a file (about 24 s at 44.1 kHz)."""

_COPY_BLOCK_FRAMES = 1 << 18
_RESCAN_FRAMES = 4096
"""Frames read per step when counting what a broken-off file still decodes."""
TRUNCATION_TOLERANCE_S = 0.5
TRUNCATION_TOLERANCE_RATIO = 0.01
"""How far decoding may end before the declared length without the file counting as cut:
the larger of the two."""
_PCM_LIKE_WAVE_TAGS = frozenset({0x0001, 0x0003, 0x0006, 0x0007})
"""WAVE format tags with one block per frame (PCM, IEEE float, A-law, mu-law)."""
_WAVE_EXTENSIBLE = 0xFFFE
_HEADER_LENGTH_FORMATS = frozenset({"WAV", "WAVEX", "AIFF"})
"""Formats whose frame count libsndfile takes from the bytes present, not from the header."""
_OPEN_ENDED_SIZES = frozenset({0, 0xFFFFFFFF})
"""Data sizes streaming writers leave in a WAV header: the length is not declared."""


# ---------------------------------------------------------------------------------- errors


class AudioError(ValueError):
    """Base class: audio that cannot be used (a bad file or array; never a fault of the machine)."""


class AudioFileError(AudioError):
    """A file libsndfile cannot open or decode: not audio, corrupt or truncated."""


class TruncatedAudioError(AudioFileError):
    """A file that ends before the length its header declares; `declared_frames` and `frames`
    (what the file holds) at `sample_rate`."""

    reason = "truncated"

    def __init__(self, path: str | Path, declared_frames: int, frames: int, sample_rate: int) -> None:
        super().__init__(
            f"{path}: truncated file: declares {declared_frames / sample_rate:.2f} s, "
            f"holds {frames / sample_rate:.2f} s"
        )
        self.declared_frames = declared_frames
        self.frames = frames
        self.sample_rate = sample_rate


class EmptyAudioError(AudioError):
    """The audio holds no samples."""


class NonFiniteAudioError(AudioError):
    """NaN or infinite samples; `source` names the file or array, `frame` is the first bad frame."""

    def __init__(self, message: str, source: str | None = None, frame: int | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.frame = frame


class ChannelLayoutError(AudioError):
    """The audio is neither mono nor stereo, or is laid out channels-first."""


class AudioDtypeError(AudioError):
    """The audio array has a dtype that is not integer PCM or real floating point."""


class SampleRateError(AudioError):
    """A sample rate that is not a positive number."""


# ---------------------------------------------------------------------------------- in memory


def check_finite(
    audio: np.ndarray, source: str, offset: int = 0, sample_rate: float | None = None
) -> None:
    """Raise NonFiniteAudioError naming the first frame with a NaN/Inf sample.

    `offset` is added to the frame index (the block's position in its file); with
    `sample_rate` the message gives the time as well.
    """
    finite = np.isfinite(audio)
    if finite.all():
        return
    frame = int(np.argwhere(~finite)[0][0]) + offset
    when = f" ({frame / sample_rate:.3f} s)" if sample_rate else ""
    raise NonFiniteAudioError(
        f"{source}: non-finite sample (NaN or Inf) at frame {frame}{when}", source, frame
    )


def _scale_to_float(audio: np.ndarray, source: str) -> np.ndarray:
    if np.issubdtype(audio.dtype, np.floating):
        with np.errstate(over="ignore"):  # beyond float32's range is Inf: check_finite says so
            return audio.astype(np.float32, copy=False)
    if audio.dtype == np.uint8:
        return ((audio.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if np.issubdtype(audio.dtype, np.signedinteger):
        full_scale = float(2 ** (8 * audio.dtype.itemsize - 1))
        return (audio.astype(np.float64) / full_scale).astype(np.float32)
    raise AudioDtypeError(
        f"{source}: audio dtype {audio.dtype} is not supported; expected float, signed integer "
        "PCM or unsigned 8-bit PCM"
    )


def _float_frames(
    audio: np.ndarray, source: str, offset: int = 0, sample_rate: float | None = None
) -> np.ndarray:
    """(n,), (n, 1) or (n, 2) audio of any PCM dtype -> (n, 1) or (n, 2) finite float32."""
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
    check_finite(audio, source, offset, sample_rate)
    return audio


def to_stereo_float(
    audio: np.ndarray, source: str = "audio", offset: int = 0, sample_rate: float | None = None
) -> np.ndarray:
    """(n,), (n, 1) or (n, 2) audio of any PCM dtype -> (n, 2) float32, mono duplicated.

    `source` names the audio in error messages; `offset` is added to reported frame indices.
    Raises ChannelLayoutError, AudioDtypeError or NonFiniteAudioError.
    """
    audio = _float_frames(audio, source, offset, sample_rate)
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


# ---------------------------------------------------------------------------------- OS faults


def _located(error: OSError, path: Path) -> OSError:
    """`error` with the path in it (an OSError of the same errno, hence the same subclass)."""
    if error.errno is None or error.filename is not None:
        return error
    return OSError(error.errno, error.strerror, str(path))


class _Trap:
    """A binary file for libsndfile's virtual I/O that keeps the first OSError it hits.

    soundfile calls these methods from C callbacks, where an exception cannot get through:
    libsndfile would only see a short count. The failing call returns what a short count
    looks like, the error is kept, and `raise_error` raises it.
    """

    def __init__(self, file: BinaryIO, path: Path) -> None:
        self._file = file
        self.path = path
        self.error: OSError | None = None

    def __repr__(self) -> str:  # soundfile names the file with repr() in its messages
        return repr(str(self.path))

    def _call(self, method: Callable[..., Any], failed: Any, *args: Any) -> Any:
        if self.error is not None:
            return failed
        try:
            return method(*args)
        except OSError as error:
            self.error = error
            return failed

    def read(self, size: int = -1) -> bytes:
        return self._call(self._file.read, b"", size)

    def readinto(self, buffer: Any) -> int:
        return self._call(self._file.readinto, 0, buffer)

    def write(self, data: bytes) -> int:
        return self._call(self._file.write, 0, data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._call(self._file.seek, -1, offset, whence)

    def tell(self) -> int:
        return self._call(self._file.tell, -1)

    def at_end(self) -> bool:
        """Whether libsndfile has read the file up to its last byte."""
        return self._file.tell() >= os.fstat(self._file.fileno()).st_size

    def raise_error(self) -> None:
        """Raise the kept OSError (errno kept, path added); nothing when there is none."""
        if self.error is None:
            return
        located = _located(self.error, self.path)
        if located is self.error:
            raise located
        raise located from self.error


def _detail(error: BaseException) -> str:
    if isinstance(error, sf.LibsndfileError):
        return error.error_string
    return str(error) or type(error).__name__


_SOUNDFILE_ERRORS = (sf.SoundFileError, RuntimeError, AssertionError)
"""What soundfile raises for a failed call (an AssertionError for a short write)."""


# ---------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says (before resampling)."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def _chunks(file: _Trap, byteorder: Literal["little", "big"]) -> Iterator[tuple[bytes, int]]:
    """(id, declared size) of each chunk of a RIFF or IFF file after its 12-byte header, the file
    standing at the chunk's data; ends where a chunk header is cut off."""
    offset = 12
    while True:
        file.seek(offset)
        header = file.read(8)
        if len(header) < 8:
            return
        size = int.from_bytes(header[4:], byteorder)
        yield header[:4], size
        offset += 8 + size + (size & 1)


def _declared_frames(file: _Trap) -> int | None:
    """The frame count a WAV or AIFF header declares; None for other formats, for a WAV whose
    length is left open (a streaming writer's) and for one whose blocks are not single frames."""
    file.seek(0)
    magic = file.read(12)
    if magic[:4] == b"RIFF" and magic[8:] == b"WAVE":
        block_align = 0
        for chunk, size in _chunks(file, "little"):
            if chunk == b"fmt ":
                fmt = file.read(min(size, 26))
                tag = int.from_bytes(fmt[:2], "little")
                if tag == _WAVE_EXTENSIBLE and len(fmt) == 26:
                    tag = int.from_bytes(fmt[24:26], "little")
                if tag in _PCM_LIKE_WAVE_TAGS:
                    block_align = int.from_bytes(fmt[12:14], "little")
            elif chunk == b"data":
                return None if not block_align or size in _OPEN_ENDED_SIZES else size // block_align
    elif magic[:4] == b"FORM" and magic[8:] in (b"AIFF", b"AIFC"):
        for chunk, _ in _chunks(file, "big"):
            if chunk == b"COMM":
                common = file.read(6)
                return int.from_bytes(common[2:], "big") if len(common) == 6 else None
    return None


@contextmanager
def _reading(path: str | Path) -> Iterator[tuple[sf.SoundFile, _Trap]]:
    """The file opened by Python (OS faults raise here as themselves), decoded by libsndfile; a
    WAV or AIFF shorter than its header declares raises TruncatedAudioError."""
    source = Path(path)
    with open(source, "rb") as file:
        trap = _Trap(file, source)
        try:
            handle = sf.SoundFile(trap)
        except _SOUNDFILE_ERRORS as error:
            trap.raise_error()
            raise AudioFileError(f"{source}: cannot open as audio ({_detail(error)})") from error
        with handle:
            # libsndfile counts these formats' frames from the bytes present: only the header
            # still tells how long the file was.
            if handle.format in _HEADER_LENGTH_FORMATS:
                position = trap.tell()
                declared = _declared_frames(trap)
                trap.seek(position)
                trap.raise_error()
                if declared is not None and declared > handle.frames:
                    raise TruncatedAudioError(source, declared, handle.frames, handle.samplerate)
            yield handle, trap


def _decode(trap: _Trap, done: int, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A read or seek on an open file: OS faults as OSError, anything else AudioFileError."""
    try:
        result = call(*args, **kwargs)
    except _SOUNDFILE_ERRORS as error:
        trap.raise_error()
        raise AudioFileError(
            f"{trap.path}: decoding failed after {done} frames ({_detail(error)})"
        ) from error
    trap.raise_error()  # a failed read looks like the end of the file to libsndfile
    return result


def _cut_short(handle: sf.SoundFile, held: int) -> bool:
    """Whether `held` decodable frames fall short of the declared length by more than the
    tolerance."""
    tolerance = max(TRUNCATION_TOLERANCE_S * handle.samplerate, TRUNCATION_TOLERANCE_RATIO * handle.frames)
    return handle.frames - held > tolerance


def _decodable_frames(handle: sf.SoundFile, trap: _Trap, start: int) -> int:
    """How many frames from `start` still decode, read in small steps (after a read that broke
    off somewhere in a large block)."""
    count = 0
    with suppress(AudioFileError):
        _decode(trap, start, handle.seek, start)
        while len(block := _decode(trap, start + count, handle.read, _RESCAN_FRAMES, always_2d=True)):
            count += len(block)
    return count


def _read(handle: sf.SoundFile, trap: _Trap, frames: int, position: int, dtype: str = "float32") -> np.ndarray:
    """Up to `frames` frames (-1: the rest) from `position`, where the handle stands. Decoding
    that breaks off at the end of the file, or data that ends early, short of the declared
    length raises TruncatedAudioError."""
    due = max(0, handle.frames - position)
    try:
        block = _decode(trap, position, handle.read, frames, dtype=dtype, always_2d=True)
    except AudioFileError as error:
        if not trap.at_end():
            raise
        held = position + _decodable_frames(handle, trap, position)
        if not _cut_short(handle, held):
            raise
        raise TruncatedAudioError(trap.path, handle.frames, held, handle.samplerate) from error
    held = position + len(block)
    if len(block) < (due if frames < 0 else min(frames, due)) and _cut_short(handle, held):
        raise TruncatedAudioError(trap.path, handle.frames, held, handle.samplerate)
    return block


def _check_channels(handle: sf.SoundFile, trap: _Trap) -> None:
    if handle.channels > 2:
        raise ChannelLayoutError(f"{trap.path}: {handle.channels} channels; expected mono or stereo")


def audio_info(path: str | Path) -> AudioInfo:
    """Header facts of an audio file, without decoding it. Raises AudioFileError
    (TruncatedAudioError for a WAV or AIFF shorter than its header declares) or OSError."""
    with _reading(path) as (handle, _):
        return AudioInfo(Path(path), handle.samplerate, handle.channels, handle.frames,
                         handle.format, handle.subtype)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """A whole file as (n, 2) float32 at its own sample rate, and that rate.

    Raises AudioFileError (TruncatedAudioError for a file cut short), ChannelLayoutError,
    EmptyAudioError, NonFiniteAudioError (with the frame) or the OSError of a fault of the machine.
    """
    with _reading(path) as (handle, trap):
        _check_channels(handle, trap)
        rate = handle.samplerate
        audio = _read(handle, trap, -1, 0)
    if len(audio) == 0:
        raise EmptyAudioError(f"{path}: the file holds no audio samples")
    return to_stereo_float(audio, str(path), sample_rate=rate), int(rate)


def read_audio_window(path: str | Path, start: int, frames: int) -> tuple[np.ndarray, int]:
    """Frames [start, start + frames) of a file (fewer at its end) as (k, 2) float32 at its own
    rate, and that rate; only that range is decoded. Errors as `read_audio`."""
    if start < 0 or frames < 0:
        raise ValueError(f"start and frames must not be negative, got {start} and {frames}")
    with _reading(path) as (handle, trap):
        _check_channels(handle, trap)
        if handle.frames == 0:
            raise EmptyAudioError(f"{path}: the file holds no audio samples")
        rate = handle.samplerate
        start = min(start, handle.frames)
        _decode(trap, 0, handle.seek, start)
        audio = _read(handle, trap, frames, start)
    return to_stereo_float(audio, str(path), offset=start, sample_rate=rate), int(rate)


def iter_audio_blocks(
    path: str | Path,
    target_rate: int | None = SAMPLE_RATE,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
) -> Iterator[np.ndarray]:
    """Yield a file's audio as consecutive (k, 2) float32 blocks at `target_rate` (None: the
    file's own rate, blocks of exactly `block_frames` but the last).

    At most about `block_frames` source frames are held at a time. Concatenating the blocks
    gives exactly what `load_audio` returns. Errors as `read_audio`; NonFiniteAudioError gives
    the frame's position in the file.
    """
    if block_frames < 1:
        raise ValueError(f"block_frames must be positive, got {block_frames}")
    done = 0
    with _reading(path) as (handle, trap):
        _check_channels(handle, trap)
        source_rate = handle.samplerate
        rate = source_rate if target_rate is None else target_rate
        _check_rate(rate, str(path))
        stream = None
        if source_rate != rate:
            stream = soxr.ResampleStream(source_rate, rate, 2, dtype="float32")
        while True:
            block = _read(handle, trap, block_frames, done)
            if len(block) == 0:
                break
            block = to_stereo_float(block, str(path), offset=done, sample_rate=source_rate)
            done += len(block)
            if stream is not None:
                block = stream.resample_chunk(block)
            if len(block):
                yield block
        if stream is not None and done:
            tail = stream.resample_chunk(np.zeros((0, 2), np.float32), last=True)
            if len(tail):
                yield tail
    if done == 0:
        raise EmptyAudioError(f"{path}: the file holds no audio samples")


def load_audio(path: str | Path, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A whole file as (n, 2) float32 at `target_rate` (see `iter_audio_blocks`)."""
    return np.concatenate(list(iter_audio_blocks(path, target_rate)), axis=0)


# ---------------------------------------------------------------------------------- writing


def _remove_partial(target: Path) -> None:
    """Delete what a failed write left, if it is a regular file (never a device or a link)."""
    with suppress(OSError):
        if stat.S_ISREG(os.lstat(target).st_mode):
            target.unlink()


def _write(
    path: str | Path,
    sample_rate: int,
    channels: int,
    format: str,
    subtype: str,
    fill: Callable[[sf.SoundFile], None],
    **options: Any,
) -> Path:
    """Create the file, let `fill` write its frames; OS faults as OSError, no partial file left."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    opened = False
    try:
        with open(target, "wb") as file:  # closing flushes the last bytes: it can fail too
            opened = True
            trap = _Trap(file, target)
            try:
                with sf.SoundFile(trap, "w", int(sample_rate), channels, subtype, format=format,
                                  **options) as handle:
                    fill(handle)
            except _SOUNDFILE_ERRORS:
                trap.raise_error()
                raise
            trap.raise_error()
    except BaseException as error:
        if opened:
            _remove_partial(target)
        if isinstance(error, OSError) and (located := _located(error, target)) is not error:
            raise located from error
        raise
    return target


def _write_frames(path: str | Path, frames: np.ndarray, sample_rate: int, format: str, subtype: str,
                  **options: Any) -> Path:
    return _write(path, sample_rate, frames.shape[1], format, subtype,
                  lambda handle: handle.write(frames), **options)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write audio as a 32-bit float stereo WAV (mono duplicated); returns the path."""
    _check_rate(sample_rate, str(path))
    return _write_frames(path, to_stereo_float(audio, str(path)), sample_rate, "WAV", "FLOAT")


def write_pcm16_flac(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write stereo 16-bit FLAC at the fastest compression level (about 8x smaller than float
    WAV). Lossless only for audio already on the int16 grid, such as FluidSynth's output."""
    _check_rate(sample_rate, str(path))
    return _write_frames(path, to_stereo_float(audio, str(path)), sample_rate, "FLAC", "PCM_16",
                         compression_level=0.0)


def write_pcm16_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write 16-bit PCM WAV (what every player and browser takes), clipped to [-1, 1], mono or
    stereo as given; for audio people listen to."""
    _check_rate(sample_rate, str(path))
    frames = np.clip(_float_frames(audio, str(path)), -1.0, 1.0)
    return _write_frames(path, frames, sample_rate, "WAV", "PCM_16")


def copy_to_flac(
    source: str | Path, target: str | Path, block_frames: int = _COPY_BLOCK_FRAMES
) -> Path:
    """Re-encode an audio file as FLAC block by block (a 3-hour file is never held whole).

    A 16-bit source stays 16-bit, sample for sample; any other becomes 24-bit. Rate and
    channels are kept; an empty source gives an empty FLAC (check it with `audio_info`).
    Raises AudioFileError (TruncatedAudioError for a source cut short), NonFiniteAudioError for
    NaN/Inf in a floating-point source, or the OSError of a fault of the machine; a failed copy
    leaves no target.
    """
    with _reading(source) as (handle, trap):
        sixteen = handle.subtype == "PCM_16"
        floating = handle.subtype in ("FLOAT", "DOUBLE")
        dtype = "int16" if sixteen else "float32" if floating else "int32"

        def fill(out: sf.SoundFile) -> None:
            done = 0
            while len(block := _read(handle, trap, block_frames, done, dtype)):
                if floating:
                    check_finite(block, str(source), done, handle.samplerate)
                out.write(block)
                done += len(block)

        return _write(target, handle.samplerate, handle.channels, "FLAC",
                      "PCM_16" if sixteen else "PCM_24", fill, compression_level=0.0)
