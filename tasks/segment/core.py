"""Segmentation stage: split long recordings into bounded segments, streaming.

Cuts come from chapter marks when the recording has them, otherwise from silences between
pieces, otherwise from fixed windows; every cut that is not already in a silence moves to the
quietest frame near it, so no cut goes through a note. Segments are 30 s to 120 s by default
and never shorter than one GAN window (23.8 s).

Nothing loads a whole file: ``compute_envelope`` reads blocks and keeps one energy value per
50 ms frame (a 3-hour compilation is 216,000 numbers), ``plan_segments`` decides every cut
from that envelope alone, and ``iter_segment_audio`` / ``write_segments`` then read one
segment's range at a time.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soxr

from musika_model.audio import (
    AudioFileError,
    ChannelLayoutError,
    EmptyAudioError,
    NonFiniteAudioError,
    TruncatedAudioError,
    audio_info,
    iter_audio_blocks,
    read_audio_window,
    write_wav,
)
from tasks.pipeline.batching import ItemFailed
from tasks.segment.params import SegmentParams

DEFAULT_BLOCK_FRAMES = 1 << 16
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ENERGY_FLOOR = 1e-12  # -120 dB: keeps log10 finite on digital silence

Method = Literal["chapter", "silence", "window", "merged"]


class SegmentationFailed(ItemFailed):
    """A recording that yields no segment; ``reason`` says why."""


class NotAudio(SegmentationFailed):
    def __init__(self, message: str):
        super().__init__("not_audio", message)


class EmptyAudio(SegmentationFailed):
    def __init__(self, message: str):
        super().__init__("empty", message)


class NonFiniteAudio(SegmentationFailed):
    def __init__(self, message: str):
        super().__init__("non_finite", message)


class NoSegments(SegmentationFailed):
    """Everything was silence (``silent``) or too short to reach the minimum (``too_short``)."""


@dataclass(frozen=True)
class Chapter:
    title: str | None
    start_s: float
    end_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Chapter:
        return cls(data.get("title"), float(data["start_s"]), float(data["end_s"]))


def _chapter_times(raw: Mapping[str, Any] | Chapter) -> tuple[str | None, float | None, float | None]:
    """(title, start, end) from a Chapter, our dict form, or yt-dlp's (start_time/end_time)."""
    if isinstance(raw, Chapter):
        return raw.title, raw.start_s, raw.end_s

    def number(*keys: str) -> float | None:
        for key in keys:
            value = raw.get(key)
            if value is not None:
                try:
                    return float(value)
                except (TypeError, ValueError):
                    return None
        return None

    title = raw.get("title")
    return (str(title) if title is not None else None), number("start_s", "start_time"), number(
        "end_s", "end_time"
    )


def clip_chapters(
    chapters: Iterable[Mapping[str, Any] | Chapter], duration_s: float
) -> tuple[list[Chapter], list[str]]:
    """Chapters made consistent with the audio's real duration, and what had to be fixed.

    Sorted by start; a missing end becomes the next start (or the end of the audio); ends past
    the audio or past the next chapter's start are clipped; chapters starting after the audio
    ends, or left empty, are dropped. Each fix is described in the returned issue list.
    """
    parsed = []
    issues = []
    for number, raw in enumerate(chapters, 1):
        title, start, end = _chapter_times(raw)
        if start is None or not math.isfinite(start):
            issues.append(f"chapter {number} ({title!r}) has no valid start time: dropped")
            continue
        if start < 0:
            issues.append(f"chapter {number} ({title!r}) starts at {start:.2f} s, before 0: moved to 0")
            start = 0.0
        parsed.append((start, end if end is not None and math.isfinite(end) else None, title))
    parsed.sort(key=lambda chapter: chapter[0])
    clipped: list[Chapter] = []
    for position, (start, end, title) in enumerate(parsed):
        next_start = parsed[position + 1][0] if position + 1 < len(parsed) else duration_s
        if start >= duration_s:
            issues.append(
                f"chapter {title!r} starts at {start:.2f} s, after the audio ends ({duration_s:.2f} s): dropped"
            )
            continue
        if end is None:
            end = min(next_start, duration_s)
        if end > duration_s:
            issues.append(
                f"chapter {title!r} ends at {end:.2f} s, after the audio ends ({duration_s:.2f} s): clipped"
            )
            end = duration_s
        if end > next_start:
            issues.append(
                f"chapter {title!r} ends at {end:.2f} s, after the next chapter starts "
                f"({next_start:.2f} s): clipped"
            )
            end = next_start
        if end <= start:
            issues.append(f"chapter {title!r} is empty after clipping ({start:.2f}-{end:.2f} s): dropped")
            continue
        clipped.append(Chapter(title, start, end))
    return clipped, issues


@dataclass(frozen=True)
class Envelope:
    """Mean-square energy (over channels) of consecutive ``hop``-sample frames of a file."""

    energy: np.ndarray
    hop: int
    sample_rate: int
    num_samples: int
    channels: int

    @property
    def duration_s(self) -> float:
        return self.num_samples / float(self.sample_rate)

    @property
    def frame_s(self) -> float:
        return self.hop / float(self.sample_rate)

    def db(self) -> np.ndarray:
        return 10.0 * np.log10(np.maximum(self.energy, _ENERGY_FLOOR))


@dataclass(frozen=True)
class PlannedSegment:
    """One segment of the source: sample range ``[start_sample, end_sample)`` at the source rate."""

    index: int
    start_sample: int
    end_sample: int
    source_rate: int
    chapter: str | None
    method: Method

    @property
    def start_s(self) -> float:
        return self.start_sample / float(self.source_rate)

    @property
    def end_s(self) -> float:
        return self.end_sample / float(self.source_rate)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def provenance(self, parent_id: str) -> dict[str, Any]:
        return {
            "parent_id": parent_id,
            "index": self.index,
            "start_s": round(self.start_s, 4),
            "end_s": round(self.end_s, 4),
            "chapter": self.chapter,
            "method": self.method,
        }


@dataclass(frozen=True)
class DroppedSpan:
    """Audio left out of every segment because it is silent or too short to stand alone."""

    start_s: float
    end_s: float
    reason: Literal["silent", "too_short"]
    chapter: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SegmentPlan:
    segments: list[PlannedSegment]
    dropped: list[DroppedSpan]
    source_rate: int
    output_rate: int
    duration_s: float
    chapters: list[Chapter] = field(default_factory=list)
    chapter_issues: list[str] = field(default_factory=list)

    def to_dict(self, parent_id: str) -> dict[str, Any]:
        return {
            "segments": [segment.provenance(parent_id) for segment in self.segments],
            "dropped": [span.to_dict() for span in self.dropped],
            "source_rate": self.source_rate,
            "output_rate": self.output_rate,
            "duration_s": self.duration_s,
            "chapters": [chapter.to_dict() for chapter in self.chapters],
            "chapter_issues": list(self.chapter_issues),
        }


@dataclass(frozen=True)
class WrittenSegment:
    path: Path
    segment: PlannedSegment
    parent_id: str
    sample_rate: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sample_rate": self.sample_rate,
                **self.segment.provenance(self.parent_id)}


@contextmanager
def _segmentation_failures() -> Iterator[None]:
    """`musika_model.audio` errors as this stage's failures (``truncated``, ``not_audio``,
    ``empty``, ``non_finite``); a missing file or another fault of the machine stays an OSError."""
    try:
        yield
    except TruncatedAudioError as error:
        raise SegmentationFailed(error.reason, str(error)) from error
    except (AudioFileError, ChannelLayoutError) as error:
        raise NotAudio(str(error)) from error
    except EmptyAudioError as error:
        raise EmptyAudio(str(error)) from error
    except NonFiniteAudioError as error:
        raise NonFiniteAudio(str(error)) from error


def compute_envelope(
    path: str | Path, frame_s: float = 0.05, block_frames: int = DEFAULT_BLOCK_FRAMES
) -> Envelope:
    """One pass over the file in blocks: energy per ``frame_s`` frame, never the whole file."""
    with _segmentation_failures():
        info = audio_info(path)
        hop = max(1, round(frame_s * info.sample_rate))
        block = max(hop, block_frames // hop * hop)  # whole frames per block: no carry-over
        parts = []
        read = 0
        for samples in iter_audio_blocks(path, None, block):  # (k, 2): mono is duplicated
            whole = samples.shape[0] // hop * hop
            # A frame's samples of both channels are contiguous in (n, 2) order.
            frames = samples[:whole].reshape(-1, hop * 2)
            parts.append(np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frames.shape[1])
            if whole < samples.shape[0]:
                rest = samples[whole:].astype(np.float64)
                parts.append(np.array([np.mean(rest * rest)]))
            read += samples.shape[0]
    return Envelope(
        energy=np.concatenate(parts),
        hop=hop,
        sample_rate=int(info.sample_rate),
        num_samples=read,
        channels=int(info.channels),
    )


# --- planning (frame arithmetic on the envelope only) -----------------------------------------


@dataclass(frozen=True)
class _Unit:
    """A candidate segment in envelope frames ``[start, end)``."""

    start: int
    end: int
    chapter: str | None
    method: Method

    @property
    def length(self) -> int:
        return self.end - self.start


def _silent_frames(envelope: Envelope, params: SegmentParams) -> np.ndarray:
    db = envelope.db()
    loud_level = float(np.percentile(db, 95))
    threshold = max(loud_level + params.silence_rel_db, params.silence_floor_dbfs)
    return db < threshold


def _pieces(silent: np.ndarray, start: int, end: int, min_gap: int, pad: int) -> list[tuple[int, int]]:
    """Sounding stretches of ``[start, end)`` separated by at least ``min_gap`` silent frames,
    each widened by ``pad`` frames of its surrounding silence."""
    sounding = np.flatnonzero(~silent[start:end])
    if sounding.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(sounding) > min_gap)
    firsts = np.concatenate(([sounding[0]], sounding[breaks + 1])) + start
    lasts = np.concatenate((sounding[breaks], [sounding[-1]])) + start + 1
    return [(max(start, a - pad), min(end, b + pad)) for a, b in zip(firsts.tolist(), lasts.tolist())]


def _quietest(db: np.ndarray, nominal: float, lo: int, hi: int) -> int:
    """Frame boundary in ``[lo, hi]`` whose following frame is quietest, nearest ``nominal`` on ties."""
    lo, hi = max(0, lo), min(db.shape[0] - 1, hi)
    if lo > hi:
        return round(min(max(nominal, lo), hi))
    candidates = np.arange(lo, hi + 1)
    # Levels within 1 dB count as equally quiet; among them the nearest wins.
    score = np.floor(db[lo : hi + 1]) * 1e6 + np.abs(candidates - nominal)
    return int(candidates[np.argmin(score)])


def _units_for_chapters(
    chapters: Sequence[Chapter],
    frame_s: float,
    silent: np.ndarray,
    db: np.ndarray,
    sizes: dict[str, int],
    dropped: list[DroppedSpan],
) -> list[_Unit]:
    """One unit per chapter (its silent edges trimmed), or its pieces when it is too long.

    Chapters tile the recording: each runs to the next one's start, audio before the first
    one is an untitled chapter, and each mark moves to the quietest frame near it.
    """
    frames = silent.shape[0]
    if chapters[0].start_s > 0:
        chapters = [Chapter(None, 0.0, chapters[0].start_s), *chapters]
    nominals = [chapter.start_s / frame_s for chapter in chapters[1:]]
    bounds = [0]
    for position, nominal in enumerate(nominals):
        following = nominals[position + 1] if position + 1 < len(nominals) else frames
        lo = max(int(nominal) - sizes["search"], bounds[-1] + 1)
        hi = min(int(nominal) + sizes["search"], int(following) - 1)
        bounds.append(_quietest(db, nominal, lo, hi))
    bounds.append(frames)
    units: list[_Unit] = []
    for chapter, start, end in zip(chapters, bounds[:-1], bounds[1:]):
        if end <= start:  # a chapter shorter than one frame
            continue
        pieces = _pieces(silent, start, end, sizes["min_gap"], sizes["pad"])
        if not pieces:
            dropped.append(DroppedSpan(start * frame_s, end * frame_s, "silent", chapter.title))
            continue
        first, last = pieces[0][0], pieces[-1][1]
        if last - first <= sizes["max"]:
            units.append(_Unit(first, last, chapter.title, "chapter"))
        else:
            units.extend(_Unit(a, b, chapter.title, "silence") for a, b in pieces)
    return units


def _join_titles(first: str | None, second: str | None) -> str | None:
    if first is None or first == second:
        return second if first is None else first
    return first if second is None else f"{first} / {second}"


def _merge(first: _Unit, second: _Unit) -> _Unit:
    return _Unit(first.start, second.end, _join_titles(first.chapter, second.chapter), "merged")


def _merge_short(
    units: list[_Unit], sizes: dict[str, int], frame_s: float, dropped: list[DroppedSpan]
) -> list[_Unit]:
    """Short units join a neighbour: one the joint span stays in bounds with (next first),
    else one that is too long anyway (it gets split); else they are dropped as too short."""
    kept: list[_Unit] = []
    queue = list(units)
    while queue:
        unit = queue.pop(0)
        if unit.length >= sizes["min"]:
            kept.append(unit)
            continue
        following = queue[0] if queue else None
        previous = kept[-1] if kept else None
        if following is not None and following.end - unit.start <= sizes["max"]:
            queue[0] = _merge(unit, following)
        elif previous is not None and unit.end - previous.start <= sizes["max"]:
            kept[-1] = _merge(previous, unit)
        elif following is not None and following.length > sizes["max"]:
            queue[0] = _merge(unit, following)
        elif previous is not None and previous.length > sizes["max"]:
            kept[-1] = _merge(previous, unit)
        else:
            dropped.append(DroppedSpan(unit.start * frame_s, unit.end * frame_s, "too_short", unit.chapter))
    return kept


def _split_long(unit: _Unit, db: np.ndarray, sizes: dict[str, int]) -> list[_Unit]:
    """Equal windows whose cuts move to the quietest frame nearby, every window in bounds."""
    if unit.length <= sizes["max"]:
        return [unit]
    count = math.ceil(unit.length / sizes["max"])
    step = unit.length / count
    cuts = [unit.start]
    for k in range(1, count):
        remaining = count - k
        nominal = unit.start + k * step
        lo = max(int(nominal) - sizes["search"], cuts[-1] + sizes["min"], unit.end - remaining * sizes["max"])
        hi = min(int(nominal) + sizes["search"], cuts[-1] + sizes["max"], unit.end - remaining * sizes["min"])
        cuts.append(_quietest(db, nominal, lo, hi))
    cuts.append(unit.end)
    return [_Unit(a, b, unit.chapter, "window") for a, b in itertools.pairwise(cuts)]


def plan_segments(
    envelope: Envelope, params: SegmentParams, chapters: Sequence[Mapping[str, Any] | Chapter] = ()
) -> SegmentPlan:
    """Decide every segment from the envelope: chapters, then silences, then windows.

    Raises NoSegments when nothing usable is left (all silent, or only short fragments).
    """
    frame_s = envelope.frame_s
    frames = envelope.num_samples // envelope.hop  # whole frames only: a trailing partial is left out
    silent = _silent_frames(envelope, params)[:frames]
    db = envelope.db()[:frames]
    sizes = {
        "min": math.ceil(params.min_segment_s / frame_s),
        "max": math.floor(params.max_segment_s / frame_s),
        "min_gap": math.ceil(params.min_gap_s / frame_s),
        "pad": round(params.gap_padding_s / frame_s),
        "search": round(params.cut_search_s / frame_s),
    }
    clipped, issues = clip_chapters(chapters, frames * frame_s)
    dropped: list[DroppedSpan] = []
    if clipped:
        units = _units_for_chapters(clipped, frame_s, silent, db, sizes, dropped)
    else:
        units = [_Unit(a, b, None, "silence") for a, b in _pieces(silent, 0, frames, sizes["min_gap"], sizes["pad"])]
        if not units:
            dropped.append(DroppedSpan(0.0, envelope.duration_s, "silent"))
    units = _merge_short(units, sizes, frame_s, dropped)
    windows = [window for unit in units for window in _split_long(unit, db, sizes)]
    if not windows:
        reasons = {span.reason for span in dropped}
        reason = "silent" if reasons == {"silent"} else "too_short"
        details = "; ".join(f"{s.start_s:.1f}-{s.end_s:.1f} s {s.reason}" for s in dropped[:5])
        raise NoSegments(reason, f"no segment of at least {params.min_segment_s} s remains ({details})")
    segments = [
        PlannedSegment(
            index=index,
            start_sample=window.start * envelope.hop,
            end_sample=window.end * envelope.hop,
            source_rate=envelope.sample_rate,
            chapter=window.chapter,
            method=window.method,
        )
        for index, window in enumerate(windows)
    ]
    return SegmentPlan(
        segments=segments,
        dropped=dropped,
        source_rate=envelope.sample_rate,
        output_rate=params.sample_rate,
        duration_s=envelope.duration_s,
        chapters=clipped,
        chapter_issues=issues,
    )


def plan_file(
    path: str | Path,
    params: SegmentParams,
    chapters: Sequence[Mapping[str, Any] | Chapter] = (),
    block_frames: int = DEFAULT_BLOCK_FRAMES,
) -> SegmentPlan:
    """Envelope pass plus planning for one file."""
    return plan_segments(compute_envelope(path, params.frame_s, block_frames), params, chapters)


# --- reading and writing segments ------------------------------------------------------------


def iter_segment_audio(
    path: str | Path, plan: SegmentPlan
) -> Iterator[tuple[PlannedSegment, np.ndarray]]:
    """Each planned segment's audio as (n, 2) float32 at ``plan.output_rate``, one at a time."""
    with _segmentation_failures():
        rate = audio_info(path).sample_rate
    if rate != plan.source_rate:
        raise NotAudio(f"{path} is {rate} Hz but the plan was made for {plan.source_rate} Hz")
    for segment in plan.segments:
        with _segmentation_failures():
            audio, _ = read_audio_window(path, segment.start_sample, segment.end_sample - segment.start_sample)
        if plan.output_rate != plan.source_rate:
            audio = soxr.resample(audio, plan.source_rate, plan.output_rate).astype(np.float32)
        yield segment, audio


def write_segments(
    path: str | Path, plan: SegmentPlan, target_dir: str | Path, parent_id: str
) -> Iterator[WrittenSegment]:
    """Write each segment as ``<target_dir>/<parent_id>-<index>.wav`` (float32) and yield it."""
    if not _SAFE_ID.match(parent_id):
        raise ValueError(
            f"parent_id {parent_id!r} is not a safe file name (letters, digits, '._-', no leading dot)"
        )
    directory = Path(target_dir)
    for segment, audio in iter_segment_audio(path, plan):
        target = write_wav(directory / f"{parent_id}-{segment.index:03d}.wav", audio, plan.output_rate)
        yield WrittenSegment(target, segment, parent_id, plan.output_rate)
