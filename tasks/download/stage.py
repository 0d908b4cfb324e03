"""The crawl stages (`list`, `download`): list sources, plan and download items into the store, the
thin Prefect tasks, and the store's memory of permanent failures that keeps a refresh from
requesting a dead source or video again. The yt-dlp calls, retries and listing parsing (no
Prefect, no store): core.py."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from http import HTTPStatus
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from musika_model.audio import copy_to_flac
from tasks.download.core import (
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
LIST_MEMORY_VERSION = 1
"""Version of the key a source's permanent listing failure is recorded under (`source_key`)."""
REMEMBERED = frozenset({"http_404", "http_410", "not_media", "no_audio", "unavailable"})
"""Failures the source or video itself decides (gone, private, not media): recorded in the store,
and not requested again by later refreshes unless `retry_failed`. Any other failure (timeouts,
network, truncation, HTTP 403/408/429/5xx and other statuses, unexplained yt-dlp errors) may be
transient and is tried again."""
REFUSED = frozenset({"too_short", "too_long", "too_large"})
"""Refusals by the crawl's own filters: recorded under `refusal_key`, which holds the filter
settings, so a refresh with other duration bounds or another size cap tries the video again."""
_FILTER_FIELDS = frozenset({"min_duration_s", "max_duration_s", "max_download_mb"})
_LINEAGE_ENTRY_FIELDS = ("item_id", "video_id", "extractor", "url", "playlist_index")


@dataclass(frozen=True)
class SourceListing:
    """What one source listed: its entries, or the failure that stopped the listing.

    `remembered`: not requested this time, because its permanent failure (`failure`) or its one
    video's (the video then comes from the previous version) is recorded in the store.
    """

    source: str
    entries: list[CrawlEntry]
    failure: ItemOutcome | None = None
    remembered: bool = False


def validate_crawl_setup(params: CrawlParams) -> None:
    """Fail before any network access when ffmpeg is missing or the cookies file does not exist."""
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        raise InvalidCrawlParams(f"{' and '.join(missing)} not found on PATH: the crawl stage converts audio with them")
    _base_options(params)


def _listing_failure(source: str, reason: str, message: str) -> ItemOutcome:
    return ItemOutcome(source, "", LIST_STAGE, "failed", {}, {"source": source}, reason, message)


def list_source(source: str, params: CrawlParams) -> SourceListing:
    """List one source; a failure (dead playlist, not media, timeout) is returned, not raised."""
    try:
        return SourceListing(source, list_entries(source, params))
    except CrawlItemFailed as failure:
        return SourceListing(source, [], _listing_failure(source, failure.reason, str(failure)))


def source_key(source: str) -> str:
    """Where the permanent listing failure of `source` is recorded (the `list` stage stores no
    object, only these failure records)."""
    digest = "sha256:" + hashlib.sha256(source.encode("utf-8")).hexdigest()
    return object_key(LIST_STAGE, LIST_MEMORY_VERSION, {}, (digest,))


def refusal_key(item: WorkItem, params: CrawlParams) -> str:
    """Where a refusal of a planned download by the crawl's filters (`REFUSED`) is recorded: its
    key's parameters plus the filter settings, so other bounds or another cap find no record."""
    filters = params.model_dump(include=_FILTER_FIELDS)
    return object_key(DOWNLOAD_STAGE, DOWNLOAD_STAGE_VERSION, {**item.params, "filters": filters}, item.inputs)


def remembered_failure(store: ArtifactStore, item: WorkItem, params: CrawlParams) -> dict[str, Any] | None:
    """The recorded permanent failure of a planned download, or None (also once its object is
    stored: a retry worked). A record of a reason that is no longer remembered (written by an
    older version of this stage) is cleared, so the video is tried again."""
    record = store.recorded_failure(item.key)
    if record is not None and record.get("reason") not in REMEMBERED:
        store.clear_failure(item.key)
        record = None
    if record is None:
        record = store.recorded_failure(refusal_key(item, params))
    if record is None or store.has(item.key):
        return None
    return record


def _remembered_listing(
    store: ArtifactStore, source: str, earlier: Sequence[CrawlEntry], params: CrawlParams
) -> SourceListing | None:
    """The listing of a source that is not requested again: its own permanent failure is recorded,
    or it is a single video (its one remembered entry is the source itself) whose download
    failure is. None when it has to be listed."""
    record = store.recorded_failure(source_key(source))
    if record is not None and record.get("reason") in REMEMBERED:
        return SourceListing(source, [], _listing_failure(source, record["reason"], record["message"]), remembered=True)
    if len(earlier) == 1 and earlier[0].url == source and earlier[0].playlist_index is None:
        items, _ = plan_download_items(earlier, params)
        if items and remembered_failure(store, items[0], params) is not None:
            return SourceListing(source, [], remembered=True)
    return None


@task(name="list-sources", cache_policy=NO_CACHE)
def list_sources(
    sources: list[str],
    params: CrawlParams,
    store_root: str,
    remembered: Mapping[str, Sequence[CrawlEntry]],
    retry_failed: bool = False,
) -> list[SourceListing]:
    """List every source in turn (never cached: a refresh is about what is new).

    A permanent listing failure (`REMEMBERED`) is recorded in the store. Unless `retry_failed`,
    a source whose failure is recorded, or that is one video (`remembered`: the previous
    version's entries, `remembered_entries`) whose download failure is, is not requested again.
    """
    logger = get_run_logger()
    store = ArtifactStore(store_root)
    listings = []
    for source in sources:
        if not retry_failed:
            skipped = _remembered_listing(store, source, remembered.get(source, ()), params)
            if skipped is not None:
                listings.append(skipped)
                continue
        listing = list_source(source, params)
        if listing.failure is not None:
            logger.warning("listing %s failed (%s): %s", source, listing.failure.reason, listing.failure.message)
            if listing.failure.reason in REMEMBERED:
                store.record_failure(source_key(source), stage=LIST_STAGE, item=source,
                                     reason=listing.failure.reason, message=listing.failure.message or "")
        else:
            logger.info("%s: %d entries", source, len(listing.entries))
        if retry_failed and (listing.failure is None or listing.failure.reason not in REMEMBERED):
            store.clear_failure(source_key(source))
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


def skip_remembered_downloads(
    store: ArtifactStore, items: Sequence[WorkItem], params: CrawlParams, retry_failed: bool = False
) -> tuple[list[WorkItem], list[ItemOutcome]]:
    """The planned downloads to run, and a failed outcome (the recorded reason and message) for
    each whose permanent failure is remembered: not requested again unless `retry_failed`."""
    if retry_failed:
        return list(items), []
    to_run: list[WorkItem] = []
    skipped: list[ItemOutcome] = []
    for item in items:
        record = remembered_failure(store, item, params)
        if record is None:
            to_run.append(item)
        else:
            skipped.append(ItemOutcome(item.item_id, item.key, DOWNLOAD_STAGE, "failed", {}, dict(item.source),
                                       record["reason"], record["message"]))
    return to_run, skipped


def _reason_label(reason: str) -> str:
    """A reason code as a user reads it: "http_404" is "404 Not Found", "not_media" "not media"."""
    code = reason.removeprefix("http_")
    if code != reason and code.isdigit():
        try:
            return f"{code} {HTTPStatus(int(code)).phrase}"
        except ValueError:
            return f"HTTP {code}"
    return reason.replace("_", " ")


def remembered_summary(listings: Sequence[SourceListing], skipped: Sequence[ItemOutcome]) -> str | None:
    """One line on what a refresh did not request because its permanent failure is remembered
    (sources whose listing failed, videos whose download failed); None when nothing was."""
    sources = [listing.failure for listing in listings if listing.remembered and listing.failure is not None]
    if not sources and not skipped:
        return None
    reasons = Counter(outcome.reason or "" for outcome in [*sources, *skipped])
    labels = ", ".join(_reason_label(reason) + (f" x{count}" if count > 1 else "")
                       for reason, count in reasons.most_common())
    counted = " and ".join(f"{count} {noun}{'' if count == 1 else 's'}"
                           for count, noun in ((len(sources), "source"), (len(skipped), "video")) if count)
    return (f"skipped {counted} remembered as permanent failures ({labels}); "
            "--retry-failed (run.retry_failed) tries them again")


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
    planned = {item.key: item for item in items}
    for outcome in outcomes:
        # run_batch records every expected failure under the item's key; only REMEMBERED stay there.
        if outcome.status != "failed" or outcome.reason in REMEMBERED:
            continue
        store.clear_failure(outcome.key)
        if outcome.reason in REFUSED:
            store.record_failure(refusal_key(planned[outcome.key], params), stage=DOWNLOAD_STAGE,
                                 item=outcome.item_id, reason=outcome.reason, message=outcome.message or "")
    logger.info("download: %s", count_statuses(outcomes))
    return outcomes
