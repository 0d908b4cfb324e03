"""Pre-flight: refuse a build whose store clearly cannot hold it, before any task runs.

The estimates are rough and meant to be on the low side (FLAC at a quarter of 16-bit PCM, the
one exact figure being normalize's float32 WAV), so that only a build that clearly does not fit
is refused; one that runs out of space anyway stops with `EnvironmentFault` when it does.
Items whose object is in the store already, or whose failure is recorded, need nothing. Only a
store on a local path is checked: the free space of an fsspec store (s3://, gs://) is unknown.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from musika_model.audio import AudioError, audio_info
from musika_model.config import LATENT_DEPTH, SAMPLES_PER_LATENT
from tasks.pipeline.batching import EnvironmentFault, WorkItem
from tasks.pipeline.caching import is_settled
from tasks.pipeline.environment import Fault, describe_filesystem, format_bytes, free_bytes
from tasks.pipeline.params import RunSettings
from tasks.store import ArtifactStore
from tasks.store.backends import LocalBackend

SAMPLE_RATE = 44100
FLOAT_WAV_BYTES_PER_S = SAMPLE_RATE * 2 * 4
"""normalize's output (and segment's for sources that are not 16-bit at 44.1 kHz): exact."""
FLAC_BYTES_PER_S = SAMPLE_RATE * 2 * 2 // 4
"""16-bit stereo FLAC, taken as a quarter of PCM: FluidSynth piano measured about that, recordings
compress less, so this is the low side."""
LATENT_BYTES_PER_S = SAMPLE_RATE / SAMPLES_PER_LATENT * 2 * LATENT_DEPTH * 4
"""encode's (T, 128) float32 latents: 1/64 of normalize's WAV."""
MIDI_SAMPLE = 32
"""MIDI files whose length is read; the others are scaled from their size (lengths cost a parse)."""

Log = Callable[[str], None]


@dataclass(frozen=True)
class SpaceNeed:
    """Roughly how many bytes the items still to make will write, and how that was reckoned."""

    bytes: int
    items: int
    basis: str


def _store_dir(store: ArtifactStore, log: Log) -> str | None:
    """The store's directory, or None (with a log line) for a store not on a local path."""
    if isinstance(store.backend, LocalBackend):
        return str(store.backend.root)
    log(f"pre-flight: space check skipped, the store {store.root} is not on a local path "
        "(its free space is unknown)")
    return None


def _new_items(count: int) -> str:
    return f"{count} new item" + ("" if count == 1 else "s")


def check_space(store: ArtifactStore, need: SpaceNeed, log: Log) -> None:
    """Raise `EnvironmentFault` when `need` is over the free space of the store's filesystem."""
    root = _store_dir(store, log)
    if root is None:
        return
    if not need.items:
        log("pre-flight: every item is in the store already (or recorded as failed), nothing new to write")
        return
    free = free_bytes(root)
    where = describe_filesystem(root)
    if free is None or need.bytes <= free:
        room = "unknown space" if free is None else f"{format_bytes(free)} free"
        log(f"pre-flight: roughly {format_bytes(need.bytes)} needed for {_new_items(need.items)} ({need.basis}); "
            f"{room} on {where}")
        return
    fault = Fault("space", root, None, free, need.bytes, f"the {_new_items(need.items)}")
    raise EnvironmentFault(
        f"pre-flight: not enough space for this build in the store at {root}: roughly "
        f"{format_bytes(need.bytes)} needed for its {_new_items(need.items)} ({need.basis}, a rough "
        f"estimate) and {where} has {format_bytes(free)} free. Nothing was run: free space or use "
        "another store (--store, MUSIKA_PIANO_DATA), then run again.",
        fault,
    )


def _pending(store: ArtifactStore, items: Sequence[WorkItem], retry_failed: bool) -> list[WorkItem]:
    return [item for item in items if not is_settled(store, item, retry_failed)]


def _midi_seconds(paths: Sequence[str]) -> tuple[dict[str, float], str]:
    """Seconds of music in each MIDI file: read for up to `MIDI_SAMPLE` files spread over the
    list, the others scaled from their size by the sample's seconds per byte; and the basis."""
    import pretty_midi

    unique = sorted(set(paths))
    if not unique:
        return {}, "nothing new"
    sample = unique[:: max(1, math.ceil(len(unique) / MIDI_SAMPLE))]
    seconds: dict[str, float] = {}
    for path in sample:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seconds[path] = pretty_midi.PrettyMIDI(path).get_end_time()
        except Exception:  # noqa: BLE001 - unreadable: the render fails on it, writing nothing
            seconds[path] = 0.0
    sizes = {path: os.path.getsize(path) if os.path.isfile(path) else 0 for path in unique}
    per_byte = sum(seconds.values()) / max(1, sum(sizes[path] for path in sample))
    for path in unique:
        seconds.setdefault(path, sizes[path] * per_byte)
    if len(sample) == len(unique):
        return seconds, "from the MIDI files' lengths"
    return seconds, f"lengths of {len(sample)} of {len(unique)} MIDI files, the others scaled by size"


def check_midi_space(
    store: ArtifactStore,
    render_items: Sequence[WorkItem],
    normalize_items: Sequence[WorkItem],
    max_midi_minutes: float,
    run: RunSettings,
    log: Log,
) -> None:
    """Render (FLAC) and normalize (float WAV) of each new item, from the MIDI lengths (files over
    `max_midi_minutes` are refused without writing) plus the render tail."""
    if _store_dir(store, log) is None:
        return
    renders = _pending(store, render_items, run.retry_failed)
    normalizes = _pending(store, normalize_items, run.retry_failed)
    by_key = {item.key: item for item in render_items}
    seconds, basis = _midi_seconds([by_key[item.inputs[0]].source["path"] for item in normalizes]
                                   + [item.source["path"] for item in renders])

    def rendered_s(item: WorkItem) -> float:
        music = seconds[item.source["path"]]
        return 0.0 if music > max_midi_minutes * 60 else music + float(item.params.get("tail_seconds", 0.0))

    total = (sum(rendered_s(item) for item in renders) * FLAC_BYTES_PER_S
             + sum(rendered_s(by_key[item.inputs[0]]) for item in normalizes) * FLOAT_WAV_BYTES_PER_S)
    check_space(store, SpaceNeed(int(total), len(normalizes), basis), log)


def check_recordings_space(store: ArtifactStore, plan_items: Sequence[WorkItem], run: RunSettings, log: Log) -> None:
    """Segments and normalized audio of each new recording (one whose plan is not in the store),
    from its header's length: segment FLAC for 16-bit 44.1 kHz sources, float WAV otherwise."""
    if _store_dir(store, log) is None:
        return
    new = _pending(store, plan_items, run.retry_failed)
    total = 0.0
    for item in new:
        try:
            info = audio_info(item.source["path"])
        except (AudioError, OSError):
            continue  # unreadable: segment-plan fails on it, writing nothing
        lossless = info.subtype == "PCM_16" and info.sample_rate == SAMPLE_RATE
        total += info.duration * ((FLAC_BYTES_PER_S if lossless else FLOAT_WAV_BYTES_PER_S) + FLOAT_WAV_BYTES_PER_S)
    check_space(store, SpaceNeed(int(total), len(new), "from the recordings' lengths"), log)


def check_download_space(store: ArtifactStore, download_items: Sequence[WorkItem], run: RunSettings,
                         log: Log) -> None:
    """Download and segment FLAC and normalized float WAV of each new video, from the length the
    site listed (videos listed without one count for nothing)."""
    if _store_dir(store, log) is None:
        return
    new = _pending(store, download_items, run.retry_failed)
    lengths = [item.source.get("duration_s") for item in new]
    total = sum(s for s in lengths if s) * (2 * FLAC_BYTES_PER_S + FLOAT_WAV_BYTES_PER_S)
    unknown = sum(not s for s in lengths)
    basis = "from the listed lengths" + (f"; {unknown} listed without one, not counted" if unknown else "")
    check_space(store, SpaceNeed(int(total), len(new), basis), log)


def check_encode_space(store: ArtifactStore, items: Sequence[WorkItem], run: RunSettings, log: Log) -> None:
    """Latents of each new item, from the length its normalized audio recorded."""
    if _store_dir(store, log) is None:
        return
    new = _pending(store, items, run.retry_failed)
    total = sum(float(item.source.get("duration_s") or 0.0) for item in new) * LATENT_BYTES_PER_S
    check_space(store, SpaceNeed(int(total), len(new), "from the items' lengths"), log)
