"""The crawl stages (`list`, `download`): list sources, plan and download items into the store, the
thin Prefect tasks. The yt-dlp calls, retries and listing parsing (no Prefect, no store):
core.py."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from musika_model.audio import copy_to_flac
from tasks.download.core import (
    _TRANSIENT_HTTP,
    CHANNELS,
    SAMPLE_RATE,
    CrawlEntry,
    CrawlItemFailed,
    _base_options,
    _duration_rejection,
    download_audio,
    list_entries,
    new_entries,
)
from tasks.download.params import CrawlParams, InvalidCrawlParams
from tasks.pipeline.batching import ItemOutcome, WorkItem, count_statuses, run_batch
from tasks.pipeline.caching import STORE_OBJECTS
from tasks.store import ArtifactStore, object_key

# ---- the crawl stages: list sources, plan and download items into the store, thin Prefect tasks ---

LIST_STAGE = "list"
DOWNLOAD_STAGE = "download"
DOWNLOAD_STAGE_VERSION = 1
DOWNLOADED_AUDIO = "audio.flac"
"""ffmpeg's WAV output is 16-bit PCM, so 16-bit FLAC keeps it bit for bit at about half the size
(an eighth of float WAV); the sources are lossy anyway, so nothing is gained by more bits."""
METADATA_FILE = "metadata.json"
RETRIED_NEXT_RUN = frozenset(
    {"timeout", "network", "truncated", "too_short", "too_long", *(f"http_{code}" for code in _TRANSIENT_HTTP)}
)
"""Download failures that are not remembered in the store: they depend on the network or on
duration bounds (which are not part of the object key), so the next refresh tries again."""
_LINEAGE_ENTRY_FIELDS = ("item_id", "video_id", "extractor", "url", "playlist_index")


@dataclass(frozen=True)
class SourceListing:
    """What one source listed: its entries, or the failure that stopped the listing."""

    source: str
    entries: list[CrawlEntry]
    failure: ItemOutcome | None = None


def validate_crawl_setup(params: CrawlParams) -> None:
    """Fail before any network access when ffmpeg is missing or the cookies file does not exist."""
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        raise InvalidCrawlParams(f"{' and '.join(missing)} not found on PATH: the crawl stage converts audio with them")
    _base_options(params)


def list_source(source: str, params: CrawlParams) -> SourceListing:
    """List one source; a failure (dead playlist, not media, timeout) is returned, not raised."""
    try:
        return SourceListing(source, list_entries(source, params))
    except CrawlItemFailed as failure:
        outcome = ItemOutcome(source, "", LIST_STAGE, "failed", {}, {"source": source}, failure.reason, str(failure))
        return SourceListing(source, [], outcome)


@task(name="list-sources", cache_policy=NO_CACHE)
def list_sources(sources: list[str], params: CrawlParams) -> list[SourceListing]:
    """List every source in turn (never cached: a refresh is about what is new)."""
    logger = get_run_logger()
    listings = []
    for source in sources:
        listing = list_source(source, params)
        if listing.failure is not None:
            logger.warning("listing %s failed (%s): %s", source, listing.failure.reason, listing.failure.message)
        else:
            logger.info("%s: %d entries", source, len(listing.entries))
        listings.append(listing)
    return listings


def lineage_entries(
    listings: Mapping[str, Sequence[CrawlEntry]], remembered: Mapping[str, Sequence[CrawlEntry]]
) -> list[dict[str, Any]]:
    """Per source, the entries a dataset version is made of, with the fields that identify and
    fetch them. A video keeps the record it had when first remembered: titles, durations and
    positions in a playlist change on the site and would make an unchanged refresh look new."""
    earlier = {entry.item_id: entry for entries in remembered.values() for entry in entries}
    return [
        {"source": source,
         "videos": sorted(({name: getattr(earlier.get(entry.item_id, entry), name) for name in _LINEAGE_ENTRY_FIELDS}
                           for entry in entries), key=lambda video: video["item_id"])}
        for source, entries in listings.items()
    ]


def remembered_entries(lineage_sources: Sequence[Any], sources: Collection[str]) -> dict[str, list[CrawlEntry]]:
    """Entries an earlier version recorded (``lineage_entries``) for the sources still asked for.

    A refresh keeps them, so videos that fell out of a ``max_items`` listing, or a listing that
    failed this time, do not leave the dataset.
    """
    remembered: dict[str, list[CrawlEntry]] = {}
    for record in lineage_sources:
        if isinstance(record, Mapping) and record.get("source") in sources:
            remembered[record["source"]] = [CrawlEntry(**video, source=record["source"])
                                            for video in record.get("videos") or []]
    return remembered


def merge_entries(
    sources: Sequence[str], listings: Sequence[SourceListing], remembered: Mapping[str, Sequence[CrawlEntry]]
) -> dict[str, list[CrawlEntry]]:
    """Per source, its listed entries then its remembered ones; a video belongs to the first
    source that lists it."""
    listed = {listing.source: listing.entries for listing in listings}
    merged: dict[str, list[CrawlEntry]] = {}
    seen: set[str] = set()
    for source in sources:
        fresh = new_entries([*listed.get(source, []), *remembered.get(source, [])], seen)
        seen.update(entry.item_id for entry in fresh)
        merged[source] = fresh
    return merged


def video_digest(item_id: str) -> str:
    """The input of a download object: a digest of the video's item id, so the same video is
    never downloaded twice, whichever source lists it."""
    return "sha256:" + hashlib.sha256(item_id.encode("utf-8")).hexdigest()


def download_params(params: CrawlParams) -> dict[str, Any]:
    """The crawl options that change a download's bytes (not pacing, retries, cookies or proxy)."""
    return {"sample_rate": SAMPLE_RATE, "channels": CHANNELS, "audio_format": params.audio_format}


def plan_download_items(
    entries: Sequence[CrawlEntry], params: CrawlParams
) -> tuple[list[WorkItem], list[ItemOutcome]]:
    """One download item per entry, and a failed outcome for each entry whose listed duration is
    out of bounds (it is not fetched at all)."""
    settings = download_params(params)
    items: list[WorkItem] = []
    rejected: list[ItemOutcome] = []
    for entry in entries:
        inputs = (video_digest(entry.item_id),)
        key = object_key(DOWNLOAD_STAGE, DOWNLOAD_STAGE_VERSION, settings, inputs)
        bound = None if entry.duration_s is None else _duration_rejection(entry.duration_s, params, "listed by the site")
        if bound is not None:
            rejected.append(ItemOutcome(entry.item_id, key, DOWNLOAD_STAGE, "failed", {}, entry.to_dict(),
                                        bound.reason, str(bound)))
            continue
        items.append(WorkItem(entry.item_id, key, inputs, settings, entry.to_dict()))
    return items, rejected


def apply_duration_bounds(outcomes: Sequence[ItemOutcome], params: CrawlParams) -> list[ItemOutcome]:
    """Downloads reused from the store were fetched under whatever bounds held then: those out of
    today's bounds become ``too_short``/``too_long`` failures."""
    bounded = []
    for outcome in outcomes:
        duration = outcome.stats.get("duration_s")
        bound = None if not outcome.ok or duration is None else _duration_rejection(
            float(duration), params, "measured on the download")
        bounded.append(outcome if bound is None else replace(
            outcome, status="failed", reason=bound.reason, message=str(bound)))
    return bounded


def download_item(item: WorkItem, out_dir: Path, params: CrawlParams) -> dict[str, Any]:
    """Download one planned entry into ``out_dir`` as audio.flac plus metadata.json."""
    entry = CrawlEntry.from_dict(item.source)
    work = out_dir / "download"
    downloaded = download_audio(entry, work, params)
    copy_to_flac(downloaded.audio_path, out_dir / DOWNLOADED_AUDIO)  # block by block, 16-bit kept
    metadata = {**downloaded.metadata, "source": entry.source}
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, ensure_ascii=False), encoding="utf-8")
    shutil.rmtree(work)
    return {
        "duration_s": round(float(metadata["duration_s"]), 4),
        "title": metadata.get("title"),
        "uploader": metadata.get("uploader"),
        "url": metadata.get("webpage_url"),
        "source": entry.source,
        "chapters": len(metadata.get("chapters") or []),
    }


@task(name="download-batch", cache_policy=STORE_OBJECTS, persist_result=True)
def download_batch(
    items: list[WorkItem], store_root: str, params: CrawlParams, retry_failed: bool = False
) -> list[ItemOutcome]:
    """Download a batch of entries into the store, one at a time (pacing applies across them)."""
    logger = get_run_logger()
    store = ArtifactStore(store_root)
    outcomes = run_batch(
        store, DOWNLOAD_STAGE, DOWNLOAD_STAGE_VERSION, items,
        lambda item, out_dir: download_item(item, out_dir, params),
        log=logger.warning, retry_failed=retry_failed,
    )
    for outcome in outcomes:
        if outcome.status == "failed" and outcome.reason in RETRIED_NEXT_RUN:
            store.clear_failure(outcome.key)
    logger.info("download: %s", count_statuses(outcomes))
    return outcomes
