"""The normalize stage: plan one item per upstream object, normalize one into the store, the thin
Prefect batch task. The loudness processing itself (no Prefect, no store): core.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from musika_model.audio import (
    ChannelLayoutError,
    EmptyAudioError,
    NonFiniteAudioError,
    read_audio,
    write_wav,
)
from tasks.normalize.core import ItemRejected, normalize_loudness
from tasks.normalize.params import LoudnessParams
from tasks.pipeline.audio_io import single_audio_file
from tasks.pipeline.batching import ItemFailed, ItemOutcome, WorkItem, count_statuses, run_batch
from tasks.pipeline.caching import STORE_OBJECTS
from tasks.store import ArtifactStore, object_key

STAGE = "normalize"
STAGE_VERSION = 1
NORMALIZED_AUDIO = "audio.wav"
_UPSTREAM_STATS = ("notes", "note_density", "duration_s")


def plan_normalize_items(upstream: Sequence[WorkItem], params: LoudnessParams) -> list[WorkItem]:
    """One normalize item per upstream item, keyed by the upstream object and the loudness settings."""
    settings = params.model_dump(mode="json")
    return [
        WorkItem(item.item_id, object_key(STAGE, STAGE_VERSION, settings, (item.key,)), (item.key,), settings,
                 dict(item.source))
        for item in upstream
    ]


def normalize_item(store: ArtifactStore, item: WorkItem, out_dir: Path) -> dict[str, Any]:
    """Normalize the upstream object's audio file into `out_dir/audio.wav` (float32); rejections
    become `ItemFailed`."""
    upstream_key = item.inputs[0]
    try:
        audio, sample_rate = read_audio(single_audio_file(store.local_path(upstream_key)))
    except EmptyAudioError as error:  # reason codes as normalize_loudness gives them
        raise ItemFailed("too_short", str(error)) from error
    except NonFiniteAudioError as error:
        raise ItemFailed("non_finite", str(error)) from error
    except ChannelLayoutError as error:
        raise ItemFailed("bad_shape", str(error)) from error
    try:
        result = normalize_loudness(audio, sample_rate, LoudnessParams.model_validate(item.params))
    except ItemRejected as rejected:
        raise ItemFailed(rejected.reason_code, rejected.message) from rejected
    write_wav(out_dir / NORMALIZED_AUDIO, result.audio, sample_rate)
    upstream_stats = store.manifest(upstream_key).stats
    stats = {name: upstream_stats[name] for name in _UPSTREAM_STATS if name in upstream_stats}
    stats.update({name: round(value, 3) if isinstance(value, float) else value
                  for name, value in result.stats().items()})
    return stats


@task(name="normalize-batch", cache_policy=STORE_OBJECTS, persist_result=True)
def normalize_batch(
    items: list[WorkItem], store_root: str, upstream: list[ItemOutcome], retry_failed: bool = False
) -> list[ItemOutcome]:
    """Normalize the items whose upstream object exists; the others are `skipped` (failed upstream)."""
    logger = get_run_logger()
    store = ArtifactStore(store_root)
    outcomes = run_batch(
        store, STAGE, STAGE_VERSION, items, lambda item, out_dir: normalize_item(store, item, out_dir),
        log=logger.warning, retry_failed=retry_failed, upstream=upstream,
    )
    logger.info("normalize: %s", count_statuses(outcomes))
    return outcomes
