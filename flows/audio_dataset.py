"""Flow: a folder of recordings -> segments -> quality filters and duplicates -> loudness-normalized
dataset version; and that segment -> filter -> normalize path, which the YouTube refresh shares.

Objects per recording and segment (keys hash the stage, its version, its parameters, its inputs):
- segment-plan: plan.json of one recording (input: the file's digest, or a download object);
- segment: one segment's audio (input: the plan; parameter: the segment's index);
- quality: the segment's measurements and fingerprint (input: the segment; a failed filter is a
  recorded failure with its reasons);
- dedupe: the stretch kept of a segment that partly repeats earlier audio (input: the segment;
  parameters: the stretch);
- normalize: float32 WAV at the target loudness (input: the segment, or its dedupe object), as
  for MIDI.
Deduplication compares the fingerprints of every segment that passed, in item-id order, with the
audio kept before it: repeated stretches are cut out, and a segment left with no stretch of
`min_segment_s` is dropped as `duplicate`. Only wiring lives here: the stage work is in `tasks/`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.deployment_defaults import over_deployment_default
from tasks.normalize import stage as normalize
from tasks.normalize.params import LoudnessParams
from tasks.pipeline.batching import (
    ItemOutcome,
    WorkItem,
    check_failure_bound,
    count_statuses,
    partition,
)
from tasks.pipeline.caching import batch_outcomes, submit_batch
from tasks.pipeline.params import RunSettings
from tasks.pipeline.preflight import check_recordings_space
from tasks.pipeline.publishing import publish_dataset_version, summarize_sources
from tasks.pipeline.sources import AUDIO_EXTENSIONS, resolve_sources
from tasks.quality import stage as quality
from tasks.quality.params import QualityParams
from tasks.segment import stage as segment
from tasks.segment.params import SegmentParams
from tasks.store import ArtifactStore

DEFAULT_SEGMENT, DEFAULT_QUALITY = SegmentParams(), QualityParams()
DEFAULT_LOUDNESS, DEFAULT_RUN = LoudnessParams(), RunSettings()
_PROVENANCE = ("parent_id", "index", "start_s", "end_s", "chapter", "method", "title", "uploader", "url", "source")
_MEASUREMENTS = ("silence_ratio", "clipping_ratio", "bandwidth_hz", "loudness_range_lu")
_TRIM_PROVENANCE = ("segment_id", "repeats_cut")  # only items cut out of partly repeated segments have them


def path_params(segment_settings: SegmentParams, quality_settings: QualityParams,
                loudness_settings: LoudnessParams) -> dict:
    """The dataset parameters of the segment -> filter -> normalize path."""
    return {"segment": segment_settings.model_dump(mode="json"),
            "quality": quality_settings.model_dump(mode="json", exclude={"deduplicate"}),
            "deduplicate": quality_settings.deduplicate, "loudness": loudness_settings.model_dump(mode="json")}


@dataclass
class PathOutcomes:
    """Every item outcome of the path, per stage; normalized ones carry their provenance in stats."""

    plans: list[ItemOutcome] = field(default_factory=list)
    segments: list[ItemOutcome] = field(default_factory=list)
    measured: list[ItemOutcome] = field(default_factory=list)
    duplicates: list[ItemOutcome] = field(default_factory=list)
    pieces: list[ItemOutcome] = field(default_factory=list)
    normalized: list[ItemOutcome] = field(default_factory=list)

    def attempted(self) -> dict[str, list[ItemOutcome]]:
        """Per stage, the items it tried (not those skipped because their upstream failed)."""
        stages = {"segment-plan": self.plans, "segment": self.segments, "quality": self.measured,
                  "dedupe": self.duplicates + self.pieces, "normalize": self.normalized}
        return {stage: [o for o in outcomes if o.status != "skipped"] for stage, outcomes in stages.items()}

    def failures(self) -> list[ItemOutcome]:
        return [o for outcomes in self.attempted().values() for o in outcomes if not o.ok]

    def counts(self) -> dict[str, dict[str, int]]:
        return {stage: count_statuses(outcomes) for stage, outcomes in self.attempted().items()}


def segment_filter_normalize(
    store: ArtifactStore,
    plan_batches: Iterable[tuple[list[WorkItem], list[ItemOutcome] | None]],
    filters: QualityParams,
    levels: LoudnessParams,
    run: RunSettings,
) -> PathOutcomes:
    """Plan, cut, measure, deduplicate and normalize the recordings of `plan_batches`.

    Each element is a batch of plan items and the outcomes of the stage that made their inputs
    (None for local files); it is submitted as soon as it is produced, so a caller may yield
    batches while it downloads the next one.
    """
    result = PathOutcomes()
    plan_jobs = [
        (items, submit_batch(segment.plan_batch, store, items, run.retry_failed, store_root=store.root,
                             upstream=upstream))
        for items, upstream in plan_batches
    ]
    segment_items: dict[str, WorkItem] = {}
    measured_segment: dict[str, str] = {}  # quality key -> segment key
    shortest: dict[str, float] = {}  # plan key -> its min_segment_s, the shortest stretch dedupe keeps
    segment_jobs = []
    for plan_items, future in plan_jobs:
        shortest.update((item.key, SegmentParams.model_validate(item.params).min_segment_s) for item in plan_items)
        outcomes = batch_outcomes(future)
        result.plans.extend(outcomes)
        planned = {o.key for o in outcomes if o.ok}
        cuts = segment.plan_segment_items(store, [item for item in plan_items if item.key in planned])
        measure_for = {item.inputs[0]: item for item in quality.plan_quality_items(cuts, filters)}
        for batch in partition(cuts, run.batch_size):
            measures = [measure_for[item.key] for item in batch]
            segment_items.update((item.key, item) for item in batch)
            measured_segment.update((item.key, item.inputs[0]) for item in measures)
            cut = submit_batch(segment.segment_batch, store, batch, run.retry_failed, store_root=store.root)
            measured = submit_batch(quality.quality_batch, store, measures, run.retry_failed, store_root=store.root,
                                    upstream=cut)
            segment_jobs.append((cut, measured))
    result.segments = [o for cut, _ in segment_jobs for o in batch_outcomes(cut)]
    result.measured = [o for _, measured in segment_jobs for o in batch_outcomes(measured)]

    passed = [o for o in result.measured if o.ok]
    candidates = []
    for o in passed:
        cut_item = segment_items[measured_segment[o.key]]
        candidates.append(quality.Candidate(o, cut_item, shortest[cut_item.inputs[0]]))
    deduped = (quality.deduplicate(candidates, store.root, filters) if filters.deduplicate and candidates
               else quality.Deduplication(whole=[candidate.segment for candidate in candidates]))
    result.duplicates = deduped.duplicates
    segment_outcome = {o.key: o for o in result.segments}
    piece_jobs = [
        submit_batch(quality.dedupe_batch, store, batch, run.retry_failed, store_root=store.root,
                     upstream=[segment_outcome[item.inputs[0]] for item in batch])
        for batch in partition(deduped.pieces, run.batch_size)
    ]
    result.pieces = [o for job in piece_jobs for o in batch_outcomes(job)]
    made_by = {**segment_outcome, **{o.key: o for o in result.pieces}}  # object key -> its outcome
    measurements = {measured_segment[o.key]: o.stats for o in passed}  # segment (or piece) key -> quality stats
    measurements.update((piece.key, measurements[piece.inputs[0]]) for piece in deduped.pieces)
    kept = [*deduped.whole, *deduped.pieces]
    normalize_items = normalize.plan_normalize_items(kept, levels)
    normalized_from = {item.key: upstream for item, upstream in zip(normalize_items, kept, strict=True)}
    futures = [
        submit_batch(normalize.normalize_batch, store, batch, run.retry_failed, store_root=store.root,
                     upstream=[made_by[item.inputs[0]] for item in batch])
        for batch in partition(normalize_items, run.batch_size)
    ]
    for future in futures:
        for outcome in batch_outcomes(future):
            made_from = normalized_from[outcome.key]
            result.normalized.append(_with_provenance(outcome, made_from, measurements[made_from.key]))
    return result


def _with_provenance(outcome: ItemOutcome, cut: WorkItem, measurements: dict) -> ItemOutcome:
    """A normalized item's stats with where it comes from and its quality measurements, so the
    dataset manifest describes every item on its own."""
    if not outcome.ok:
        return outcome
    stats = {name: cut.source.get(name) for name in _PROVENANCE}
    stats.update({name: cut.source[name] for name in _TRIM_PROVENANCE if name in cut.source})
    stats.update({name: measurements[name] for name in _MEASUREMENTS if measurements.get(name) is not None})
    stats.update(outcome.stats)
    return ItemOutcome(outcome.item_id, outcome.key, outcome.stage, outcome.status, stats, dict(cut.source),
                       outcome.reason, outcome.message)


def check_path_bounds(outcomes: PathOutcomes, max_failure_ratio: float) -> None:
    """Fail when a stage lost too many items. Quality filters and deduplication drop items by
    design, so for them only "nothing passed" fails the run."""
    attempted = outcomes.attempted()
    check_failure_bound("segment-plan", attempted["segment-plan"], max_failure_ratio)
    check_failure_bound("segment", attempted["segment"], max_failure_ratio)
    check_failure_bound("quality", attempted["quality"], 1.0)
    check_failure_bound("normalize", attempted["normalize"], max_failure_ratio)


def source_label(item_id: str) -> str:
    """Which given source a recording came from: the folder (or file) its item name starts with."""
    return item_id.split("/", 1)[0]


def by_parent(label: Callable[[str], str]) -> Callable[[ItemOutcome], str]:
    """Label an outcome by its recording: the parent of a segment, or the recording itself."""
    return lambda outcome: label(outcome.source.get("parent_id") or outcome.item_id)


@flow(
    name="build-audio-dataset",
    description="Segment recordings, filter segments on quality and duplicates, loudness-normalize, publish.",
    task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2),
    log_prints=True,
)
def build_audio_dataset(
    name: str,
    sources: list[str],
    segment_settings: SegmentParams = DEFAULT_SEGMENT,
    quality_settings: QualityParams = DEFAULT_QUALITY,
    loudness_settings: LoudnessParams = DEFAULT_LOUDNESS,
    run: RunSettings = DEFAULT_RUN,
) -> dict:
    """Build (or refresh) the dataset `name` from recordings: folders, globs or files of
    wav/flac/mp3/ogg at any sample rate, mono or stereo."""
    logger = get_run_logger()
    segment_settings = over_deployment_default("segment_settings", segment_settings)
    quality_settings = over_deployment_default("quality_settings", quality_settings)
    loudness_settings = over_deployment_default("loudness_settings", loudness_settings)
    run = over_deployment_default("run", run)
    store = ArtifactStore.open(run.store)
    found = resolve_sources(sources, AUDIO_EXTENSIONS)
    plan_items = segment.plan_recording_items(
        [(f.name, f.digest, {"path": str(f.path), "source": source_label(f.name)}) for f in found.files],
        segment_settings,
    )
    logger.info("%d recordings (%d duplicates skipped) into %s", len(found.files), len(found.duplicates), store.root)
    check_recordings_space(store, plan_items, run, logger.info)
    outcomes = segment_filter_normalize(
        store, [(batch, None) for batch in partition(plan_items, run.batch_size)],
        quality_settings, loudness_settings, run,
    )
    check_path_bounds(outcomes, run.max_failure_ratio)
    failures = outcomes.failures()
    published = publish_dataset_version(
        store_root=store.root,
        name=name,
        stage=normalize.STAGE,
        params=path_params(segment_settings, quality_settings, loudness_settings),
        outcomes=outcomes.attempted()["normalize"],
        failures=failures,
        lineage={"sources": [f.to_dict() for f in found.files], "duplicates": found.duplicates},
        sources=summarize_sources(
            [o for o in outcomes.normalized if o.ok], failures, by_parent(source_label)),
    )
    return {**published, "stages": outcomes.counts()}
