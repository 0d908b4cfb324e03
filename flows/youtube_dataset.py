"""Flow: YouTube sources -> downloads -> segments -> quality filters and duplicates -> loudness-
normalized dataset version. Run weekly by the `youtube-refresh` deployment.

A refresh lists every source again (never cached), adds the videos the previous version of the
dataset recorded for those sources (so a `max_items` window or a failed listing drops nothing),
and downloads only videos whose download object is not in the store: a download's key hashes
the video's id and the output format only. Sources and videos whose permanent failure (404,
not media, removed, refused by the duration bounds or the size cap) the store remembers are not
requested again unless `run.retry_failed`. Everything after the download is the recordings path
of `flows/audio_dataset.py`, so unchanged videos reuse every object and only new ones are
processed. Downloads run one batch after another (the rate limit spaces them); each batch's
segment plans start while the next batch downloads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.audio_dataset import by_parent, check_path_bounds, path_params, segment_filter_normalize
from flows.deployment_defaults import over_deployment_default
from tasks.download import stage as download
from tasks.download.core import expand_sources
from tasks.download.params import CrawlParams
from tasks.normalize import stage as normalize
from tasks.normalize.params import LoudnessParams
from tasks.pipeline.batching import (
    ItemOutcome,
    StageFailed,
    WorkItem,
    check_failure_bound,
    count_statuses,
    partition,
)
from tasks.pipeline.caching import batch_outcomes, submit_batch
from tasks.pipeline.params import RunSettings
from tasks.pipeline.preflight import check_download_space
from tasks.pipeline.publishing import publish_dataset_version, summarize_sources
from tasks.quality.params import QualityParams
from tasks.segment import stage as segment
from tasks.segment.params import SegmentParams
from tasks.store import ArtifactStore, CorruptVersionError

DEFAULT_CRAWL, DEFAULT_SEGMENT, DEFAULT_QUALITY = CrawlParams(), SegmentParams(), QualityParams()
DEFAULT_LOUDNESS, DEFAULT_RUN = LoudnessParams(), RunSettings()
_DURATION_REASONS = ("too_short", "too_long")
_CRAWL_RECORD = {"max_items", "min_duration_s", "max_duration_s"}
"""The crawl settings a dataset version records: those that decide which videos it holds."""


def _previous_lineage(store: ArtifactStore, name: str) -> list:
    """The sources recorded by the newest readable version of `name` ([] for a new dataset). An
    unreadable version file is passed over, as publishing passes over it."""
    for number in reversed(store.version_numbers(name)):
        try:
            return store.read_version(name, number).lineage.sources
        except CorruptVersionError:
            continue
    return []


@flow(
    name="refresh-youtube-dataset",
    description="Crawl YouTube sources, download only new videos, segment, filter, normalize, publish.",
    task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2),
    log_prints=True,
)
def refresh_youtube_dataset(
    name: str,
    sources: list[str],
    crawl_settings: CrawlParams = DEFAULT_CRAWL,
    segment_settings: SegmentParams = DEFAULT_SEGMENT,
    quality_settings: QualityParams = DEFAULT_QUALITY,
    loudness_settings: LoudnessParams = DEFAULT_LOUDNESS,
    run: RunSettings = DEFAULT_RUN,
) -> dict:
    """Publish the next version of `name` from video, playlist and channel URLs, search queries
    (`ytsearch10:...`) and files listing them; unchanged videos are reused, not fetched again."""
    crawl_settings = over_deployment_default("crawl_settings", crawl_settings)
    segment_settings = over_deployment_default("segment_settings", segment_settings)
    quality_settings = over_deployment_default("quality_settings", quality_settings)
    loudness_settings = over_deployment_default("loudness_settings", loudness_settings)
    run = over_deployment_default("run", run)
    logger = get_run_logger()
    store = ArtifactStore.open(run.store)
    download.validate_crawl_setup(crawl_settings)
    wanted = expand_sources(sources)
    remembered = download.remembered_entries(_previous_lineage(store, name), wanted)

    listings = download.list_sources(wanted, crawl_settings, store.root, remembered, run.retry_failed)
    entries = download.merge_entries(wanted, listings, remembered)
    origin = {entry.item_id: source for source, listed in entries.items() for entry in listed}
    listing_failures = [listing.failure for listing in listings if listing.failure is not None]
    if not origin:
        reasons = "; ".join(f"{o.item_id}: {o.reason}" for o in listing_failures) or "they list no videos"
        raise StageFailed(f"crawl: no video found in {len(wanted)} sources ({reasons})")

    download_items, out_of_bounds = download.plan_download_items(
        [entry for listed in entries.values() for entry in listed], crawl_settings)
    download_items, remembered_failures = download.skip_remembered_downloads(
        store, download_items, crawl_settings, run.retry_failed)
    skipped_summary = download.remembered_summary(listings, remembered_failures)
    if skipped_summary is not None:
        logger.info("%s", skipped_summary)
    plan_items = segment.plan_recording_items(
        [(item.item_id, item.key, {"metadata": download.METADATA_FILE, "source": origin[item.item_id]})
         for item in download_items],
        segment_settings,
    )
    plan_for = {item.inputs[0]: item for item in plan_items}
    logger.info("%d videos from %d sources (%d remembered from the last version, %d out of the duration bounds)",
                len(origin), len(wanted), sum(map(len, remembered.values())), len(out_of_bounds))
    check_download_space(store, download_items, run, logger.info)

    downloads: list[ItemOutcome] = list(remembered_failures)

    def downloaded_batches() -> Iterator[tuple[list[WorkItem], list[ItemOutcome]]]:
        for batch in partition(download_items, run.batch_size):
            fetched = submit_batch(download.download_batch, store, batch, run.retry_failed, store_root=store.root,
                                   params=crawl_settings)
            outcomes = download.apply_duration_bounds(batch_outcomes(fetched), crawl_settings)
            downloads.extend(outcomes)
            yield [plan_for[item.key] for item in batch], outcomes

    outcomes = segment_filter_normalize(store, downloaded_batches(), quality_settings, loudness_settings, run)
    fetch_attempted = [o for o in downloads if o.reason not in _DURATION_REASONS]
    check_failure_bound("download", fetch_attempted, run.max_failure_ratio)
    check_path_bounds(outcomes, run.max_failure_ratio)
    failures = listing_failures + out_of_bounds + [o for o in downloads if not o.ok] + outcomes.failures()

    published = publish_dataset_version(
        store_root=store.root,
        name=name,
        stage=normalize.STAGE,
        params={"crawl": crawl_settings.model_dump(mode="json", include=_CRAWL_RECORD),
                "download": download.download_params(crawl_settings),
                **path_params(segment_settings, quality_settings, loudness_settings)},
        outcomes=outcomes.attempted()["normalize"],
        failures=failures,
        lineage={"sources": download.lineage_entries(entries, remembered)},
        sources=summarize_sources([o for o in outcomes.normalized if o.ok], failures,
                                  by_parent(lambda parent: origin.get(parent, parent))),
    )
    stages = {"list": {"listed": len(wanted) - len(listing_failures), "failed": len(listing_failures)},
              "download": count_statuses(downloads + out_of_bounds), **outcomes.counts()}
    return {**published, "stages": stages}
