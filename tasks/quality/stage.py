"""The quality stage and deduplication (`quality`, `dedupe`): plan items, measure one segment into
the store, decide what every segment adds, cut the unrepeated stretches of partly repeated ones
into the store, the thin Prefect tasks. The measurements and duplicate detection (no Prefect,
no store): core.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from musika_model.audio import (
    ChannelLayoutError,
    EmptyAudioError,
    NonFiniteAudioError,
    audio_info,
    read_audio,
    read_audio_window,
    write_pcm16_flac,
    write_wav,
)
from tasks.pipeline.audio_io import single_audio_file
from tasks.pipeline.batching import ItemOutcome, WorkItem, count_statuses, run_batch
from tasks.pipeline.caching import STORE_OBJECTS
from tasks.quality.core import (
    DuplicateItem,
    Fingerprint,
    FingerprintIndex,
    QualityRejected,
    Verdict,
    compute_fingerprint,
    evaluate_quality,
    piece_item_id,
)
from tasks.quality.params import QualityParams
from tasks.store import ArtifactStore, object_key

# ---- the quality stage and deduplication: plan items, measure one segment, thin Prefect tasks -----
#
# A quality object holds a segment's measurements (stats) and fingerprint; a segment that fails
# a filter is a recorded failure with its reasons. Deduplication then compares the fingerprints
# of every segment that passed, in item-id order, with those of the audio kept before it: a
# segment that repeats nothing is kept as it is (normalize reads the segment object, as it always
# did); one whose repeats leave no stretch of `min_segment_s` is dropped as ``duplicate`` naming
# the item it repeats most; of the others, each stretch left that long becomes a `dedupe` object
# (keyed by the segment object and the stretch) that normalize reads instead. The same set of
# segments always keeps the same audio.

STAGE = "quality"
STAGE_VERSION = 1
DEDUPE_STAGE = "dedupe"
DEDUPE_STAGE_VERSION = 1
FINGERPRINT_FILE = "fingerprint.bin"


def plan_quality_items(segments: Sequence[WorkItem], params: QualityParams) -> list[WorkItem]:
    """One quality item per segment, keyed by the segment object and the measuring thresholds
    (`QualityParams.measure_key_params`)."""
    settings = params.measure_key_params()
    return [
        WorkItem(segment.item_id, object_key(STAGE, STAGE_VERSION, settings, (segment.key,)), (segment.key,),
                 settings, dict(segment.source))
        for segment in segments
    ]


def quality_item(store: ArtifactStore, item: WorkItem, out_dir: Path) -> dict[str, Any]:
    """Measure one segment; a failed filter raises ``QualityRejected`` (recorded with its reasons)."""
    try:
        audio, sample_rate = read_audio(single_audio_file(store.local_path(item.inputs[0])))
    except EmptyAudioError as error:  # reason codes as evaluate_quality gives them
        raise QualityRejected(["empty"], str(error)) from error
    except NonFiniteAudioError as error:
        raise QualityRejected(["non_finite"], str(error)) from error
    except ChannelLayoutError as error:
        raise QualityRejected(["bad_shape"], str(error)) from error
    report = evaluate_quality(audio, sample_rate, QualityParams.model_validate(item.params))
    report.raise_if_rejected()
    (out_dir / FINGERPRINT_FILE).write_bytes(compute_fingerprint(audio, sample_rate).to_bytes())
    return {name: round(value, 6) if isinstance(value, float) else value for name, value in report.measurements.items()}


@task(name="quality-batch", cache_policy=STORE_OBJECTS, persist_result=True)
def quality_batch(
    items: list[WorkItem], store_root: str, upstream: list[ItemOutcome], retry_failed: bool = False
) -> list[ItemOutcome]:
    """Measure the segments whose object exists; the others are `skipped` (failed upstream)."""
    logger = get_run_logger()
    store = ArtifactStore(store_root)
    outcomes = run_batch(store, STAGE, STAGE_VERSION, items, lambda item, out_dir: quality_item(store, item, out_dir),
                         log=logger.warning, retry_failed=retry_failed, upstream=upstream)
    logger.info("quality: %s", count_statuses(outcomes))
    return outcomes


@dataclass(frozen=True)
class Candidate:
    """A segment that passed the filters: its quality outcome (fingerprint, duration), its segment
    item, and the shortest stretch of it worth keeping (its plan's `min_segment_s`)."""

    measured: ItemOutcome
    segment: WorkItem
    min_kept_s: float


@dataclass
class Deduplication:
    """What deduplication made of the segments that passed the filters."""

    whole: list[WorkItem] = field(default_factory=list)
    """Segments that repeat nothing: kept as they are."""
    pieces: list[WorkItem] = field(default_factory=list)
    """`dedupe` items: the stretches kept of partly repeated segments."""
    duplicates: list[ItemOutcome] = field(default_factory=list)
    """`dedupe` failures: segments with no unrepeated stretch long enough to keep."""


def plan_piece_items(segment: WorkItem, verdict: Verdict) -> list[WorkItem]:
    """One `dedupe` item per stretch kept of a partly repeated segment, keyed by the segment object
    and the stretch (seconds from the segment's start). Its source places the stretch and the
    repeats cut out (`repeats_cut`) in the recording, like a segment's `start_s` and `end_s`."""
    offset = float(segment.source.get("start_s") or 0.0)
    cut = [{"start_s": round(offset + repeat.start_s, 4), "end_s": round(offset + repeat.end_s, 4),
            "duplicate_of": repeat.duplicate_of, "ber": repeat.ber} for repeat in verdict.repeats]
    provenance = {name: value for name, value in segment.source.items() if name not in ("start_sample", "end_sample")}
    items = []
    for start_s, end_s in verdict.kept:
        params = {"start_s": start_s, "end_s": end_s}
        items.append(WorkItem(
            piece_item_id(segment.item_id, start_s),
            object_key(DEDUPE_STAGE, DEDUPE_STAGE_VERSION, params, (segment.key,)),
            (segment.key,),
            params,
            {**provenance, "segment_id": segment.item_id, "start_s": round(offset + start_s, 4),
             "end_s": round(offset + end_s, 4), "repeats_cut": cut},
        ))
    return items


def find_duplicates(store: ArtifactStore, candidates: Sequence[Candidate], params: QualityParams) -> Deduplication:
    """Admit the segments in item-id order (``FingerprintIndex.admit``): kept whole, cut into the
    stretches they add, or ``dedupe`` failures naming the item they repeat."""
    index = FingerprintIndex(params)
    result = Deduplication()
    for candidate in sorted(candidates, key=lambda c: c.measured.item_id):
        outcome = candidate.measured
        fingerprint = Fingerprint.from_bytes((store.local_path(outcome.key) / FINGERPRINT_FILE).read_bytes())
        try:
            verdict = index.admit(outcome.item_id, fingerprint, float(outcome.stats["duration_s"]),
                                  candidate.min_kept_s)
        except DuplicateItem as duplicate:
            result.duplicates.append(ItemOutcome(
                outcome.item_id, outcome.key, DEDUPE_STAGE, "failed", {}, dict(outcome.source), duplicate.reason,
                f"duplicate_of {duplicate.duplicate_of}: {duplicate}"))
            continue
        if verdict.whole:
            result.whole.append(candidate.segment)
        else:
            result.pieces.extend(plan_piece_items(candidate.segment, verdict))
    return result


@task(name="deduplicate", cache_policy=NO_CACHE)
def deduplicate(candidates: list[Candidate], store_root: str, params: QualityParams) -> Deduplication:
    """Deduplicate every segment that passed the filters (a barrier over all batches)."""
    result = find_duplicates(ArtifactStore(store_root), candidates, params)
    trimmed = len({piece.source["segment_id"] for piece in result.pieces})
    get_run_logger().info("dedupe: of %d segments, %d dropped as duplicates, %d cut into %d pieces without "
                          "their repeats", len(candidates), len(result.duplicates), trimmed, len(result.pieces))
    return result


def piece_item(store: ArtifactStore, item: WorkItem, out_dir: Path) -> dict[str, Any]:
    """Copy a kept stretch of a segment into ``out_dir`` in the segment's own format (a 16-bit
    FLAC stays exact)."""
    segment_file = single_audio_file(store.local_path(item.inputs[0]))
    rate = audio_info(segment_file).sample_rate
    start, end = round(float(item.params["start_s"]) * rate), round(float(item.params["end_s"]) * rate)
    audio, rate = read_audio_window(segment_file, start, end - start)
    write = write_pcm16_flac if segment_file.suffix == ".flac" else write_wav
    write(out_dir / segment_file.name, audio, rate)
    return {"duration_s": round(audio.shape[0] / rate, 4), "segment_start_s": item.params["start_s"],
            "segment_end_s": item.params["end_s"]}


@task(name="dedupe-batch", cache_policy=STORE_OBJECTS, persist_result=True)
def dedupe_batch(
    items: list[WorkItem], store_root: str, upstream: list[ItemOutcome], retry_failed: bool = False
) -> list[ItemOutcome]:
    """Cut the kept stretches of partly repeated segments into the store."""
    logger = get_run_logger()
    store = ArtifactStore(store_root)
    outcomes = run_batch(store, DEDUPE_STAGE, DEDUPE_STAGE_VERSION, items,
                         lambda item, out_dir: piece_item(store, item, out_dir), log=logger.warning,
                         retry_failed=retry_failed, upstream=upstream)
    logger.info("dedupe: %s", count_statuses(outcomes))
    return outcomes
