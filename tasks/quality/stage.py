"""The quality stage and deduplication (`quality`, `dedupe`): plan items, measure one segment into
the store, the thin Prefect batch tasks. The measurements and duplicate detection (no Prefect,
no store): core.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from musika_model.audio import (
    ChannelLayoutError,
    EmptyAudioError,
    NonFiniteAudioError,
    read_audio,
)
from tasks.pipeline.audio_io import single_audio_file
from tasks.pipeline.batching import ItemOutcome, WorkItem, count_statuses, run_batch
from tasks.pipeline.caching import STORE_OBJECTS
from tasks.quality.core import (
    DuplicateItem,
    Fingerprint,
    FingerprintIndex,
    QualityRejected,
    compute_fingerprint,
    evaluate_quality,
)
from tasks.quality.params import QualityParams
from tasks.store import ArtifactStore, object_key

# ---- the quality stage and deduplication: plan items, measure one segment, thin Prefect tasks -----
#
# A quality object holds a segment's measurements (stats) and fingerprint; a segment that fails
# a filter is a recorded failure with its reasons. Deduplication then compares the fingerprints
# of every segment that passed, in item-id order: the first of a group is kept, the others are
# dropped as ``duplicate`` naming it, so the same set of segments always keeps the same copies.

STAGE = "quality"
STAGE_VERSION = 1
DEDUPE_STAGE = "dedupe"
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


def find_duplicates(store: ArtifactStore, passed: Sequence[ItemOutcome], params: QualityParams) -> list[ItemOutcome]:
    """``dedupe`` failures for the passed segments that repeat an earlier one (by item id)."""
    index = FingerprintIndex(params)
    duplicates = []
    for outcome in sorted(passed, key=lambda o: o.item_id):
        fingerprint = Fingerprint.from_bytes((store.local_path(outcome.key) / FINGERPRINT_FILE).read_bytes())
        try:
            index.check(outcome.item_id, fingerprint)
        except DuplicateItem as duplicate:
            duplicates.append(ItemOutcome(outcome.item_id, outcome.key, DEDUPE_STAGE, "failed", {}, dict(outcome.source),
                                          duplicate.reason, f"duplicate_of {duplicate.duplicate_of}: {duplicate}"))
    return duplicates


@task(name="deduplicate", cache_policy=NO_CACHE)
def deduplicate(passed: list[ItemOutcome], store_root: str, params: QualityParams) -> list[ItemOutcome]:
    """Find the duplicates among every segment that passed the filters (a barrier over all batches)."""
    duplicates = find_duplicates(ArtifactStore(store_root), passed, params)
    get_run_logger().info("dedupe: %d of %d segments repeat an earlier one", len(duplicates), len(passed))
    return duplicates
