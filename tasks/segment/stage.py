"""The segment stages: one plan object per recording (`segment-plan`), one object per segment
(`segment`), the thin Prefect batch tasks. Cutting itself (no Prefect, no store): core.py."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from musika_model.audio import (
    audio_info,
    write_pcm16_flac,
    write_wav,
)
from tasks.pipeline.audio_io import single_audio_file
from tasks.pipeline.batching import ItemOutcome, WorkItem, count_statuses, run_batch
from tasks.pipeline.caching import STORE_OBJECTS
from tasks.segment.core import (
    PlannedSegment,
    SegmentPlan,
    iter_segment_audio,
    plan_file,
)
from tasks.segment.params import SegmentParams
from tasks.store import ArtifactStore, is_object_key, object_key

# ---- the segment stages: one plan object per recording, one object per segment, thin Prefect tasks --
#
# A recording (a download object, or a local file named by its content digest) gets a plan
# object: plan.json with every cut, the spans left out and the parent's provenance. Each planned
# segment then becomes its own object, keyed by its index and the plan's key, holding one
# audio.* file: exactly what the quality and loudness stages read, item by item. The plan is
# computed once per recording and parameters; the flow reads it to name the segment objects.

PLAN_STAGE = "segment-plan"
PLAN_STAGE_VERSION = 1
PLAN_FILE = "plan.json"
STAGE = "segment"
STAGE_VERSION = 1
_PARENT_FIELDS = ("parent_id", "title", "uploader", "url", "source", "upload_date", "license")
_PROVENANCE_STATS = ("parent_id", "index", "start_s", "end_s", "chapter", "method", "title", "uploader", "url",
                     "source")


def segment_item_id(parent_id: str, index: int) -> str:
    return f"{parent_id}#{index:04d}"


def plan_recording_items(
    recordings: Sequence[tuple[str, str, Mapping[str, Any]]], params: SegmentParams
) -> list[WorkItem]:
    """One plan item per recording: (parent id, input, provenance), where the input is the key of
    a download object (provenance may name ``metadata`` there) or a local file's digest (the
    provenance then names its ``path``)."""
    settings = params.model_dump(mode="json")
    return [
        WorkItem(parent_id, object_key(PLAN_STAGE, PLAN_STAGE_VERSION, settings, (input_ref,)), (input_ref,),
                 settings, {**provenance, "parent_id": parent_id})
        for parent_id, input_ref, provenance in recordings
    ]


def _recording_audio(store: ArtifactStore, source: Mapping[str, Any], input_ref: str) -> Path:
    """The audio file of a recording: the one audio.* file of its object, or its local path."""
    if is_object_key(input_ref):
        return single_audio_file(store.local_path(input_ref))
    return Path(source["path"])


def _recording_metadata(store: ArtifactStore, source: Mapping[str, Any], input_ref: str) -> dict[str, Any]:
    """The metadata.json beside a download object's audio ({} for local files)."""
    if not is_object_key(input_ref) or not source.get("metadata"):
        return {}
    return json.loads((store.local_path(input_ref) / source["metadata"]).read_text(encoding="utf-8"))


def plan_item(store: ArtifactStore, item: WorkItem, out_dir: Path) -> dict[str, Any]:
    """Plan one recording's segments into ``out_dir/plan.json``; failures are ``SegmentationFailed``."""
    input_ref = item.inputs[0]
    metadata = _recording_metadata(store, item.source, input_ref)
    plan = plan_file(_recording_audio(store, item.source, input_ref), SegmentParams.model_validate(item.params),
                     metadata.get("chapters") or ())
    parent = {name: item.source.get(name) for name in _PARENT_FIELDS}
    parent.update({name: metadata[name] for name in ("title", "uploader", "upload_date", "license") if name in metadata})
    if metadata.get("webpage_url"):
        parent["url"] = metadata["webpage_url"]
    document = {**plan.to_dict(item.item_id), "parent": parent,
                "sample_ranges": [[segment.start_sample, segment.end_sample] for segment in plan.segments]}
    (out_dir / PLAN_FILE).write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    return {
        "duration_s": round(plan.duration_s, 4),
        "segments": len(plan.segments),
        "segmented_s": round(sum(segment.duration_s for segment in plan.segments), 4),
        "dropped_s": round(sum(span.end_s - span.start_s for span in plan.dropped), 4),
        "chapters": len(plan.chapters),
        "chapter_issues": len(plan.chapter_issues),
    }


@task(name="segment-plan-batch", cache_policy=STORE_OBJECTS, persist_result=True)
def plan_batch(
    items: list[WorkItem], store_root: str, upstream: list[ItemOutcome] | None = None, retry_failed: bool = False
) -> list[ItemOutcome]:
    """Plan the segments of a batch of recordings (those whose upstream download failed are skipped)."""
    logger = get_run_logger()
    store = ArtifactStore(store_root)
    outcomes = run_batch(store, PLAN_STAGE, PLAN_STAGE_VERSION, items,
                         lambda item, out_dir: plan_item(store, item, out_dir), log=logger.warning,
                         retry_failed=retry_failed, upstream=upstream)
    logger.info("segment-plan: %s", count_statuses(outcomes))
    return outcomes


def read_plan(store: ArtifactStore, plan_key: str) -> dict[str, Any]:
    return json.loads((store.local_path(plan_key) / PLAN_FILE).read_text(encoding="utf-8"))


def plan_segment_items(store: ArtifactStore, plans: Sequence[WorkItem]) -> list[WorkItem]:
    """One item per segment of every plan object in the store, keyed by its index and the plan.

    ``plans`` are the plan items whose objects exist; each segment's source holds its
    provenance and where its parent's audio is.
    """
    items = []
    for plan_work in plans:
        document = read_plan(store, plan_work.key)
        for segment, (start, end) in zip(document["segments"], document["sample_ranges"], strict=True):
            params = {"index": segment["index"]}
            items.append(WorkItem(
                segment_item_id(plan_work.item_id, segment["index"]),
                object_key(STAGE, STAGE_VERSION, params, (plan_work.key,)),
                (plan_work.key,),
                params,
                # The plan object may have been made for the same content under another name.
                {**document["parent"], **segment, "parent_id": plan_work.item_id,
                 "source": plan_work.source.get("source"), "recording": plan_work.inputs[0],
                 "path": plan_work.source.get("path"), "source_rate": document["source_rate"],
                 "output_rate": document["output_rate"], "start_sample": start, "end_sample": end},
            ))
    return items


def segment_item(store: ArtifactStore, item: WorkItem, out_dir: Path) -> dict[str, Any]:
    """Cut one segment into ``out_dir``: 16-bit FLAC when that holds it exactly (a 16-bit source
    at the output rate, such as every download), float32 WAV otherwise."""
    source = item.source
    path = _recording_audio(store, source, source["recording"])
    rate, output_rate = int(source["source_rate"]), int(source["output_rate"])
    start, end = int(source["start_sample"]), int(source["end_sample"])
    planned = PlannedSegment(int(source["index"]), start, end, rate, source.get("chapter"), source["method"])
    plan = SegmentPlan([planned], [], rate, output_rate, duration_s=end / rate)
    _, audio = next(iter_segment_audio(path, plan))
    if rate == output_rate and audio_info(path).subtype == "PCM_16":
        write_pcm16_flac(out_dir / "audio.flac", audio, output_rate)
    else:
        write_wav(out_dir / "audio.wav", audio, output_rate)
    stats = {name: source.get(name) for name in _PROVENANCE_STATS}
    stats["duration_s"] = round(audio.shape[0] / output_rate, 4)
    return stats


@task(name="segment-batch", cache_policy=STORE_OBJECTS, persist_result=True)
def segment_batch(items: list[WorkItem], store_root: str, retry_failed: bool = False) -> list[ItemOutcome]:
    """Cut a batch of planned segments into the store, reading only each segment's range."""
    logger = get_run_logger()
    store = ArtifactStore(store_root)
    outcomes = run_batch(store, STAGE, STAGE_VERSION, items, lambda item, out_dir: segment_item(store, item, out_dir),
                         log=logger.warning, retry_failed=retry_failed)
    logger.info("segment: %s", count_statuses(outcomes))
    return outcomes
