"""GAN training windows: random crops of `latent_length` frames from weighted latent sources.

A *source* is one latents dataset (e.g. one dataset version): a list of (T, 128) arrays or
`.npy` paths (opened memory-mapped, so a source may be larger than memory). Several sources
with sampling weights make a mixture; fine-tuning with replay mixes a fraction of the parent's
data into the new data this way.

Sampling, per window:
1. a source is drawn with probability weight / sum(weights);
2. inside the source, every possible window is equally likely: an item of T frames holds
   T - L + 1 windows, so longer items are drawn proportionally to their window count, and the
   start frame is uniform in [0, T - L]. Items shorter than one window are skipped.

The sampler is plain numpy, for either Keras backend; `prefetched_batches` draws an epoch's full
(B, L, 128) batches in a background thread a few batches ahead of the training step.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import STEREO_LATENT_WIDTH

FINITE_CHECK_FRAMES = 65536
"""Frames checked for NaN/Inf at a time, so a memory-mapped item is never read whole."""


class TrainingDataError(ValueError):
    """Base class of unusable training latents."""


class EmptySourceError(TrainingDataError):
    """No sources, or a source without items."""


class LatentWidthError(TrainingDataError):
    """An item that is not a (T, 128) array."""


class SourceTooShortError(TrainingDataError):
    """A source in which no item holds one GAN window."""


class NonFiniteTrainingLatentsError(TrainingDataError):
    """An item containing NaN or Inf."""


class SourceWeightError(TrainingDataError):
    """A sampling weight that is not a positive finite number."""


@dataclass(frozen=True)
class LatentSource:
    """One latents dataset: items as arrays or .npy paths, and its sampling weight."""

    name: str
    items: Sequence[np.ndarray | str | Path]
    weight: float = 1.0


@dataclass
class LoadedSource:
    """A validated source: usable items, their window counts and the items skipped as too short."""

    name: str
    weight: float
    items: list[np.ndarray]
    labels: list[str]
    window_counts: np.ndarray
    skipped: list[str] = field(default_factory=list)

    @property
    def cumulative_windows(self) -> np.ndarray:
        return np.cumsum(self.window_counts)

    @property
    def num_windows(self) -> int:
        return int(self.window_counts.sum())

    @property
    def num_frames(self) -> int:
        return int(sum(len(item) for item in self.items))


def _open_item(item: np.ndarray | str | Path, label: str) -> np.ndarray:
    if isinstance(item, (str, Path)):
        path = Path(item)
        if not path.is_file():
            raise EmptySourceError(f"{label}: latent file not found: {path}")
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as error:
            raise TrainingDataError(f"{label}: not a readable .npy array ({error})") from error
    return np.asarray(item)


def _check_item(array: np.ndarray, label: str) -> None:
    if array.ndim != 2 or array.shape[1] != STEREO_LATENT_WIDTH:
        raise LatentWidthError(
            f"{label}: latents must be (T, {STEREO_LATENT_WIDTH}), found shape {array.shape}"
        )
    if array.dtype.kind != "f":
        raise LatentWidthError(f"{label}: latents must be floating point, found dtype {array.dtype}")
    for start in range(0, len(array), FINITE_CHECK_FRAMES):
        chunk = np.asarray(array[start : start + FINITE_CHECK_FRAMES])
        finite = np.isfinite(chunk).all(axis=1)
        if not finite.all():
            frame = start + int(np.argmin(finite))
            raise NonFiniteTrainingLatentsError(f"{label}: NaN or Inf at latent frame {frame}")


def load_source(source: LatentSource, window: int) -> LoadedSource:
    """Open and validate every item of `source` for windows of `window` frames."""
    if not (isinstance(source.weight, (int, float)) and math.isfinite(source.weight)) or source.weight <= 0:
        raise SourceWeightError(
            f"source '{source.name}': weight must be a positive number, got {source.weight!r}"
        )
    if len(source.items) == 0:
        raise EmptySourceError(f"source '{source.name}' has no items")
    items, labels, counts, skipped = [], [], [], []
    lengths = []
    for index, item in enumerate(source.items):
        label = f"source '{source.name}' item {index}" + (
            f" ({item})" if isinstance(item, (str, Path)) else ""
        )
        array = _open_item(item, label)
        _check_item(array, label)
        lengths.append(len(array))
        if len(array) < window:
            skipped.append(label)
            continue
        items.append(array)
        labels.append(label)
        counts.append(len(array) - window + 1)
    if not items:
        shown = ", ".join(str(length) for length in lengths[:20])
        more = f" and {len(lengths) - 20} more" if len(lengths) > 20 else ""
        raise SourceTooShortError(
            f"source '{source.name}': every item is shorter than one GAN window of {window} "
            f"latent frames; item lengths: {shown}{more}"
        )
    return LoadedSource(
        source.name, float(source.weight), items, labels, np.asarray(counts, np.int64), skipped
    )


@dataclass(frozen=True)
class WindowPositions:
    """Where a run of drawn windows comes from: source, item and start frame per window."""

    sources: np.ndarray
    items: np.ndarray
    starts: np.ndarray


class WindowSampler:
    """Draws training windows from a weighted mixture of latent sources."""

    def __init__(self, sources: Sequence[LatentSource], window: int) -> None:
        if not sources:
            raise EmptySourceError("no latent sources given")
        if window < 1:
            raise TrainingDataError(f"window must be at least one frame, got {window}")
        self.window = window
        self.sources = [load_source(source, window) for source in sources]
        weights = np.array([source.weight for source in self.sources], dtype=np.float64)
        self.probabilities = weights / weights.sum()
        self._cumulative = [source.cumulative_windows for source in self.sources]

    def positions(self, rng: np.random.Generator, count: int) -> WindowPositions:
        """`count` random window positions, following the sampling rule of the module docstring."""
        sources = rng.choice(len(self.sources), size=count, p=self.probabilities)
        items = np.empty(count, dtype=np.int64)
        starts = np.empty(count, dtype=np.int64)
        for index, source in enumerate(self.sources):
            chosen = np.flatnonzero(sources == index)
            if not len(chosen):
                continue
            cumulative = self._cumulative[index]
            flat = rng.integers(0, source.num_windows, size=len(chosen))
            item = np.searchsorted(cumulative, flat, side="right")
            items[chosen] = item
            starts[chosen] = flat - (cumulative[item] - source.window_counts[item])
        return WindowPositions(sources, items, starts)

    def batch(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """One (size, window, 128) float32 batch of random windows."""
        positions = self.positions(rng, size)
        out = np.empty((size, self.window, STEREO_LATENT_WIDTH), dtype=np.float32)
        for row, (source, item, start) in enumerate(
            zip(positions.sources, positions.items, positions.starts)
        ):
            out[row] = self.sources[source].items[item][start : start + self.window]
        return out

    def batches(self, rng: np.random.Generator, size: int) -> Iterator[np.ndarray]:
        while True:
            yield self.batch(rng, size)

    def summary(self) -> list[dict]:
        """Per source: name, probability, items used and skipped, frames and windows."""
        return [
            {
                "name": source.name,
                "probability": float(probability),
                "items": len(source.items),
                "skipped_short_items": len(source.skipped),
                "frames": source.num_frames,
                "windows": source.num_windows,
            }
            for source, probability in zip(self.sources, self.probabilities)
        ]


def prefetched_batches(
    sampler: WindowSampler, batch_size: int, seed: int | Sequence[int], count: int, prefetch: int = 2
) -> Iterator[np.ndarray]:
    """`count` (batch_size, window, 128) float32 batches, drawn by a background thread up to
    `prefetch` batches ahead of the step that takes them (numpy releases the GIL while copying
    windows, so drawing overlaps the training step on either backend).

    `seed` (an int or a sequence such as (run seed, epoch, attempt)) fixes the draws, so an
    epoch replays the same windows after a resume. Closing the iterator early stops the thread.
    """
    if batch_size < 1:
        raise TrainingDataError(f"batch_size must be at least 1, got {batch_size}")
    seed_key = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    rng = np.random.default_rng(seed_key)
    ready: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def offer(item: np.ndarray | BaseException) -> bool:
        """Queue `item` unless the consumer has gone; returns whether it was queued."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def draw() -> None:
        try:
            for _ in range(count):
                if not offer(sampler.batch(rng, batch_size)):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            offer(error)

    def stream() -> Iterator[np.ndarray]:
        worker = threading.Thread(target=draw, name="training-batches", daemon=True)
        worker.start()
        try:
            for _ in range(count):
                item = ready.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()

    return stream()
