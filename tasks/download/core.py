"""Crawl stage: list and download audio from video sites with the yt-dlp Python API.

Sources are video URLs, playlist and channel URLs, search queries (``ytsearch5:chopin
nocturne``) and text files listing any of these, one per line (``#`` starts a comment).
``list_entries`` does a flat extraction (no media downloaded); ``download_audio`` fetches one
entry as a 44.1 kHz stereo WAV beside a JSON sidecar of its metadata.

Every item is named by a sanitized id (``youtube-dQw4w9WgXcQ``), never by its title, so
titles with slashes, quotes or any script stay in the metadata. Per-item failures raise a
``CrawlItemFailed`` subclass carrying a machine-readable ``reason`` ("http_404", "timeout",
"truncated", "not_media", "no_audio", "unavailable", "too_long", "too_large", ...), which the
batch runner records. Transient failures (HTTP 429/403/5xx, timeouts, dropped connections) are
retried with exponential backoff first; every request gives up after ``socket_timeout_s`` of
silence, and a download stops at ``max_download_mb``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yt_dlp
from yt_dlp.networking.exceptions import HTTPError, IncompleteRead, TransportError
from yt_dlp.utils import (
    ContentTooShortError,
    DownloadError,
    ExtractorError,
    PostProcessingError,
    UnsupportedError,
)

from musika_model.audio import AudioFileError, audio_info
from tasks.download.params import CrawlParams, InvalidCrawlParams
from tasks.pipeline.batching import ItemFailed
from tasks.segment.core import clip_chapters

LOG = logging.getLogger(__name__)

SAMPLE_RATE = 44100
CHANNELS = 2
SOURCE_LIST_COMMENT = "#"
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$", re.IGNORECASE)
_SEARCH_QUERY = re.compile(r"^[a-z][a-z0-9]*search[a-z]*(\d+|all)?:.+", re.IGNORECASE)
# Extractors whose ids are only unique within one site (file names, "page-1"): the page URL
# is hashed into the item id so two hosts' "audio.mp3" stay two items.
_HOST_LOCAL_ID_EXTRACTORS = frozenset({"generic", "html5mediaembed"})
# Flat entries of these extractors are playlists themselves (a channel's tabs): listed again.
_NESTED_PLAYLIST_EXTRACTORS = ("tab", "playlist")
_MAX_NESTING = 2
_TRANSIENT_HTTP = frozenset({403, 408, 429, 500, 502, 503, 504})
_TRUNCATED_MESSAGE = re.compile(r"bytes read, \d+ more expected|Downloaded \d+ bytes, expected")
_TIMEOUT_MESSAGE = re.compile(r"timed? ?out", re.IGNORECASE)
# What the site says about a video or playlist that is gone for good (YouTube's wording). Its
# "Video unavailable. This content isn't available, try again later" is a rate limit, not this.
_UNAVAILABLE_MESSAGE = re.compile(
    r"private video|this (?:video|playlist) (?:is private|has been removed|does not exist)|no longer available"
    r"|has been terminated|(?:channel|playlist) does not exist",
    re.IGNORECASE,
)
_TRY_LATER_MESSAGE = re.compile(r"try again later|rate.limit|not a bot|captcha", re.IGNORECASE)
# yt-dlp's HTTP downloader says so, and downloads nothing, when Content-Length passes max_filesize.
_MAX_FILESIZE_MESSAGE = re.compile(r"larger than max-filesize \((\d+) bytes > \d+ bytes\)")
_MIB = 1 << 20
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_SAFE_NAME_MAX = 96
TRUNCATION_TOLERANCE_S = 2.0
"""A file this much (or 2 %) shorter than the duration the site reported counts as truncated."""


class InvalidSource(ValueError):
    """A source that is neither a URL, a search query, nor a readable list file."""


class CrawlItemFailed(ItemFailed):
    """One source or video that could not be listed or downloaded; `reason` says why."""

    transient = False


class HttpStatusError(CrawlItemFailed):
    """The server answered with an HTTP error status (reason ``http_<status>``)."""

    def __init__(self, status: int, message: str, retry_after_s: float | None = None):
        super().__init__(f"http_{status}", message)
        self.status = status
        self.retry_after_s = retry_after_s
        self.transient = status in _TRANSIENT_HTTP


class DownloadTimeout(CrawlItemFailed):
    """The server did not answer within the socket timeout."""

    transient = True

    def __init__(self, message: str):
        super().__init__("timeout", message)


class NetworkError(CrawlItemFailed):
    """The connection failed (refused, reset, proxy error)."""

    transient = True

    def __init__(self, message: str):
        super().__init__("network", message)


class TruncatedDownload(CrawlItemFailed):
    """Fewer bytes or seconds arrived than the server or the site announced."""

    transient = True

    def __init__(self, message: str):
        super().__init__("truncated", message)


class NotMedia(CrawlItemFailed):
    """The URL is not a page or file with audio or video on it."""

    def __init__(self, message: str):
        super().__init__("not_media", message)


class NoAudio(CrawlItemFailed):
    """The media has no audio stream (or an empty one)."""

    def __init__(self, message: str):
        super().__init__("no_audio", message)


class Unavailable(CrawlItemFailed):
    """The site says the video or playlist is private, removed, or does not exist."""

    def __init__(self, message: str):
        super().__init__("unavailable", message)


class TooLarge(CrawlItemFailed):
    """The download is larger than ``max_download_mb``, announced or as received."""

    def __init__(self, message: str):
        super().__init__("too_large", message)


class DurationOutOfBounds(CrawlItemFailed):
    """The audio is shorter or longer than the crawl's duration bounds (``too_short``/``too_long``)."""


class DownloadFailed(CrawlItemFailed):
    """Any other yt-dlp failure (reason ``download_error``), or output that is not 44.1 kHz stereo."""

    def __init__(self, message: str, reason: str = "download_error"):
        super().__init__(reason, message)


@dataclass(frozen=True)
class CrawlEntry:
    """One listed video: enough to download it later and to tell whether it is new.

    ``url`` is what yt-dlp is given; when the video is one of several media on a page that has
    no URL of its own (HTML ``<audio>`` tags), ``url`` is the page and ``playlist_index`` picks it.
    """

    item_id: str
    video_id: str
    extractor: str
    url: str
    title: str | None = None
    uploader: str | None = None
    duration_s: float | None = None
    playlist: str | None = None
    playlist_url: str | None = None
    playlist_index: int | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CrawlEntry:
        return cls(**data)


@dataclass(frozen=True)
class DownloadedItem:
    """A downloaded item: 44.1 kHz stereo WAV ``audio_path`` and its JSON sidecar."""

    item_id: str
    audio_path: Path
    metadata_path: Path
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "audio_path": str(self.audio_path),
            "metadata_path": str(self.metadata_path),
            "metadata": self.metadata,
        }


def safe_name(text: str, max_length: int = _SAFE_NAME_MAX) -> str:
    """A file-name-safe form of ``text``: ASCII letters, digits, ``._-`` only, no leading dot.

    When anything had to change, a hash of the original is appended so two different texts
    never map to the same name.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = _SAFE_CHARS.sub("_", ascii_text).strip("._-")
    if cleaned == text and len(cleaned) <= max_length:
        return cleaned
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
    return f"{cleaned[: max_length - 11] or 'item'}-{digest}"


def item_id_for(extractor: str, video_id: str, page_url: str | None) -> str:
    """The store-wide item id of a video: ``<extractor>-<id>``, sanitized.

    For extractors whose ids are only unique per page or host, a hash of the page URL is added.
    """
    key = extractor.lower()
    name = f"{key}-{video_id}"
    if key in _HOST_LOCAL_ID_EXTRACTORS and page_url:
        name += "-" + hashlib.sha1(page_url.encode("utf-8")).hexdigest()[:8]
    return safe_name(name)


def new_entries(entries: Iterable[CrawlEntry], known_ids: Collection[str]) -> list[CrawlEntry]:
    """Entries whose item id is not in ``known_ids``, first occurrence of each, order kept."""
    seen = set(known_ids)
    fresh = []
    for entry in entries:
        if entry.item_id not in seen:
            seen.add(entry.item_id)
            fresh.append(entry)
    return fresh


# --- sources ---------------------------------------------------------------------------------


def is_remote_source(source: str) -> bool:
    """True for a URL or a yt-dlp search query (``ytsearch10:...``)."""
    return bool(_URL.match(source) or _SEARCH_QUERY.match(source))


def read_source_list(path: str | Path) -> list[str]:
    """The sources listed in a text file: one per line, blank lines and ``#`` comments skipped."""
    list_path = Path(path)
    try:
        text = list_path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise InvalidSource(f"source list not found: {list_path}") from error
    except UnicodeDecodeError as error:
        raise InvalidSource(f"{list_path} is not a UTF-8 text list of sources") from error
    sources = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()  # only whole-line comments: URLs may contain '#'
        if not line or line.startswith(SOURCE_LIST_COMMENT):
            continue
        if not is_remote_source(line) and not Path(line).is_file():
            raise InvalidSource(
                f"{list_path}:{number}: {line!r} is not a URL, a search query (ytsearchN:...) "
                "or an existing list file"
            )
        sources.append(line)
    return sources


def expand_sources(sources: Iterable[str], _depth: int = 0) -> list[str]:
    """URLs and search queries of ``sources``, with list files replaced by their lines.

    List files may name other list files (up to 3 levels). Duplicates are kept once.
    """
    expanded: list[str] = []
    for source in sources:
        text = source.strip()
        if is_remote_source(text):
            expanded.append(text)
        elif Path(text).is_file():
            if _depth >= 3:
                raise InvalidSource(f"source lists nest more than 3 levels deep at {text}")
            expanded.extend(expand_sources(read_source_list(text), _depth + 1))
        else:
            raise InvalidSource(
                f"{text!r} is not a URL, a search query (ytsearchN:...) or an existing list file"
            )
    return list(dict.fromkeys(expanded))


# --- yt-dlp plumbing -------------------------------------------------------------------------


class _YtdlpLogger:
    """Routes yt-dlp's output into logging (its errors become our exceptions) and notes the size
    its downloader refused (it reports that only here: the download just ends with no file)."""

    def __init__(self) -> None:
        self.refused_bytes: int | None = None

    def debug(self, message: str) -> None:
        LOG.debug("%s", message)
        refused = _MAX_FILESIZE_MESSAGE.search(message)
        if refused is not None:
            self.refused_bytes = int(refused.group(1))

    def info(self, message: str) -> None:
        LOG.debug("%s", message)

    def warning(self, message: str) -> None:
        LOG.info("yt-dlp: %s", message)

    def error(self, message: str) -> None:
        LOG.debug("yt-dlp: %s", message)


def _base_options(params: CrawlParams) -> dict[str, Any]:
    options: dict[str, Any] = {
        "quiet": True,
        "noprogress": True,
        "no_color": True,
        "logger": _YtdlpLogger(),
        "socket_timeout": params.socket_timeout_s,
        "retries": 0,  # retried here, with backoff, for every kind of transient failure
        "extractor_retries": 0,
        "fragment_retries": params.retries,
        "cachedir": False,
        "noplaylist": True,
    }
    if params.cookies_file is not None:
        if not Path(params.cookies_file).is_file():
            raise InvalidCrawlParams(f"cookies_file not found: {params.cookies_file}")
        options["cookiefile"] = params.cookies_file
    if params.proxy is not None:
        options["proxy"] = params.proxy
    return options


def _exception_chain(error: BaseException | None) -> list[BaseException]:
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _retry_after(error: HTTPError) -> float | None:
    try:
        value = error.response.headers.get("Retry-After")
        return float(value) if value is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


def _classify(error: DownloadError, workdir: Path | None) -> CrawlItemFailed:
    """Turn yt-dlp's DownloadError into the specific per-item failure it stands for."""
    message = re.sub(r"^ERROR:\s*", "", str(error)).strip()
    exc_info = getattr(error, "exc_info", None)
    chain = _exception_chain(exc_info[1] if exc_info else None)
    for cause in chain:
        if isinstance(cause, HTTPError):
            return HttpStatusError(cause.status, message, _retry_after(cause))
    if (any(isinstance(cause, ExtractorError) for cause in chain) and _UNAVAILABLE_MESSAGE.search(message)
            and not _TRY_LATER_MESSAGE.search(message)):
        return Unavailable(message)
    for cause in chain:
        if isinstance(cause, UnsupportedError):
            return NotMedia(message)
        if isinstance(cause, (ContentTooShortError, IncompleteRead)):
            return TruncatedDownload(message)
        if isinstance(cause, TimeoutError):
            return DownloadTimeout(message)
        if isinstance(cause, PostProcessingError):
            return _classify_unconvertible(message, workdir)
    if _TRUNCATED_MESSAGE.search(message):
        return TruncatedDownload(message)
    if _TIMEOUT_MESSAGE.search(message):
        return DownloadTimeout(message)
    if any(isinstance(cause, TransportError) for cause in chain):
        return NetworkError(message)
    if any(isinstance(cause, ExtractorError) for cause in chain) and "no video formats" in message.lower():
        return NotMedia(message)
    return DownloadFailed(message)


def _audio_streams(path: Path) -> list[str] | None:
    """Codec types of the streams ffprobe finds in ``path``; None when it is not media at all."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return None
    streams = json.loads(probe.stdout or "{}").get("streams", [])
    return [stream.get("codec_type", "") for stream in streams]


def _classify_unconvertible(message: str, workdir: Path | None) -> CrawlItemFailed:
    """Audio extraction failed: a file with streams but no audio, or a file that is not media."""
    downloads = sorted(workdir.iterdir()) if workdir is not None and workdir.is_dir() else []
    for path in downloads:
        streams = _audio_streams(path)
        if streams:
            kinds = ", ".join(sorted(set(streams)))
            return NoAudio(f"the download has no audio stream (streams: {kinds}): {message}")
    return NotMedia(f"the download is not a media file ffmpeg can read: {message}")


def _run_with_retries(params: CrawlParams, what: str, attempt_once: Callable[[], Any]) -> Any:
    attempt = 0
    while True:
        try:
            return attempt_once()
        except CrawlItemFailed as failure:
            if not failure.transient or attempt == params.retries:
                raise
            wait = params.backoff_s(attempt, getattr(failure, "retry_after_s", None))
            attempt += 1
            LOG.info("%s: %s (%s); retry %d of %d in %.1f s", what, failure.reason, failure,
                     attempt, params.retries, wait)
            time.sleep(wait)


# --- listing ---------------------------------------------------------------------------------


def _entry_from_info(
    info: Mapping[str, Any], source: str, playlist: Mapping[str, Any] | None
) -> CrawlEntry:
    is_reference = info.get("_type") in ("url", "url_transparent")
    extractor = str(info.get("ie_key") or info.get("extractor_key") or info.get("extractor") or "generic")
    video_id = str(info.get("id") or info.get("url"))
    page_url = info.get("webpage_url") or info.get("url")
    if is_reference or playlist is None:
        url = str(info.get("url") if is_reference else page_url)
        index = None
    else:
        # A medium embedded in a playlist page (an <audio> tag): reachable only through the page.
        url = str(playlist.get("webpage_url") or playlist.get("original_url") or source)
        index = int(info["playlist_index"])
    duration = info.get("duration")
    return CrawlEntry(
        item_id=item_id_for(extractor, video_id, page_url),
        video_id=video_id,
        extractor=extractor.lower(),
        url=url,
        title=info.get("title"),
        uploader=info.get("uploader") or info.get("channel"),
        duration_s=float(duration) if duration is not None else None,
        playlist=(playlist or {}).get("title"),
        playlist_url=(playlist or {}).get("webpage_url"),
        playlist_index=index,
        source=source,
    )


def _flatten(
    info: Mapping[str, Any], source: str, params: CrawlParams, depth: int
) -> list[CrawlEntry]:
    if info.get("_type") not in ("playlist", "multi_video"):
        return [_entry_from_info(info, source, None)]
    entries: list[CrawlEntry] = []
    for position, child in enumerate(info.get("entries") or [], 1):
        if child is None:
            continue
        child = dict(child)
        child.setdefault("playlist_index", position)
        kind = str(child.get("ie_key") or "").lower()
        if child.get("_type") in ("playlist", "multi_video"):
            entries.extend(_flatten(child, source, params, depth + 1))
        elif (
            child.get("_type") == "url"
            and kind.endswith(_NESTED_PLAYLIST_EXTRACTORS)
            and depth < _MAX_NESTING
        ):
            entries.extend(_list_remote(str(child["url"]), source, params, depth + 1))
        else:
            entries.append(_entry_from_info(child, source, info))
        if params.max_items is not None and len(entries) >= params.max_items:
            break
    return entries


def _list_remote(url: str, source: str, params: CrawlParams, depth: int = 0) -> list[CrawlEntry]:
    options = _base_options(params) | {"extract_flat": "in_playlist", "noplaylist": False}
    if params.max_items is not None:
        options["playlistend"] = params.max_items

    def attempt() -> list[CrawlEntry]:
        with yt_dlp.YoutubeDL(options) as ydl:
            try:
                info = ydl.sanitize_info(ydl.extract_info(url, download=False))
            except DownloadError as error:
                raise _classify(error, None) from error
        if info is None:
            raise NotMedia(f"yt-dlp found nothing at {url}")
        return _flatten(info, source, params, depth)

    return _run_with_retries(params, f"listing {url}", attempt)


def list_entries(source: str, params: CrawlParams) -> list[CrawlEntry]:
    """Flat listing of one source (URL, search query or list file): nothing is downloaded.

    Playlists and channels give one entry per video; ``params.max_items`` bounds the count
    (per source). Entries are unique by item id. To record failures per line of a list file,
    call ``expand_sources`` first and list each source on its own.
    """
    entries: list[CrawlEntry] = []
    for remote in expand_sources([source]):
        entries.extend(_list_remote(remote, remote, params))
    unique = new_entries(entries, ())
    return unique if params.max_items is None else unique[: params.max_items]


# --- downloading -----------------------------------------------------------------------------

_pace_lock = threading.Lock()
_last_download_end = 0.0


def _wait_for_turn(interval_s: float) -> None:
    """Sleep until ``interval_s`` has passed since the last download of this process ended."""
    with _pace_lock:
        wait = _last_download_end + interval_s - time.monotonic()
    if wait > 0:
        time.sleep(wait)


def _mark_download_end() -> None:
    global _last_download_end
    with _pace_lock:
        _last_download_end = time.monotonic()


class _DurationFilter:
    """yt-dlp match filter: skips (and remembers why) videos whose reported duration is out of bounds."""

    def __init__(self, params: CrawlParams):
        self.params = params
        self.rejection: DurationOutOfBounds | None = None

    def __call__(self, info: Mapping[str, Any], *, incomplete: bool = False) -> str | None:
        duration = info.get("duration")
        if incomplete or duration is None or info.get("_type", "video") != "video":
            return None
        self.rejection = _duration_rejection(float(duration), self.params, "reported by the site")
        return None if self.rejection is None else str(self.rejection)


def _duration_rejection(duration_s: float, params: CrawlParams, how: str) -> DurationOutOfBounds | None:
    if params.min_duration_s is not None and duration_s < params.min_duration_s:
        return DurationOutOfBounds(
            "too_short",
            f"duration {duration_s:.1f} s ({how}) is under the minimum {params.min_duration_s} s",
        )
    if params.max_duration_s is not None and duration_s > params.max_duration_s:
        return DurationOutOfBounds(
            "too_long",
            f"duration {duration_s:.1f} s ({how}) is over the maximum {params.max_duration_s} s",
        )
    return None


def _mib(size_bytes: float) -> str:
    return f"{size_bytes / _MIB:.1f} MiB"


class _SizeCap:
    """yt-dlp progress hook that stops a download past the cap. yt-dlp's own ``max_filesize``
    refuses a plain HTTP download whose Content-Length is over it before reading the body, but
    lets a stream that announces no size (or only a chunk's) run to its end."""

    def __init__(self, cap_bytes: int):
        self.cap_bytes = cap_bytes

    def __call__(self, progress: Mapping[str, Any]) -> None:
        if progress.get("status") != "downloading":
            return
        received = int(progress.get("downloaded_bytes") or 0)
        announced = progress.get("total_bytes")
        if announced is not None and announced > self.cap_bytes:
            raise TooLarge(f"the server announces {_mib(announced)}, over the {_mib(self.cap_bytes)} cap "
                           "(max_download_mb)")
        if received > self.cap_bytes:
            raise TooLarge(f"stopped after {_mib(received)} received, over the {_mib(self.cap_bytes)} cap "
                           "(max_download_mb); the server announced "
                           + ("no size" if announced is None else _mib(announced)))


def _download_options(params: CrawlParams, workdir: Path, name: str) -> dict[str, Any]:
    options = _base_options(params) | {
        "format": params.audio_format,
        "outtmpl": {"default": str(workdir / f"{name}.%(ext)s")},
        "overwrites": True,
        "postprocessors": [{"key": "FFmpegExtractAudio", "preferredcodec": "wav"}],
        # Every input is re-encoded (wav with no codec given is never "already in target
        # format"), so these always apply: 44.1 kHz, and mono duplicated to two channels.
        "postprocessor_args": {"extractaudio": ["-ar", str(SAMPLE_RATE), "-ac", str(CHANNELS)]},
    }
    if params.max_download_mb is not None:
        cap_bytes = int(params.max_download_mb * _MIB)
        options |= {"max_filesize": cap_bytes, "progress_hooks": [_SizeCap(cap_bytes)]}
    return options


def _downloaded_video(info: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The video dict that has a finished download, in a result that may be a playlist."""
    if info is None:
        return None
    if any(download.get("filepath") for download in info.get("requested_downloads") or []):
        return info
    for child in info.get("entries") or []:
        found = _downloaded_video(child)
        if found is not None:
            return found
    return None


def _metadata(info: Mapping[str, Any], item_id: str, duration_s: float) -> dict[str, Any]:
    chapters, chapter_issues = clip_chapters(info.get("chapters") or [], duration_s)
    reported = info.get("duration")
    return {
        "item_id": item_id,
        "id": info.get("id"),
        "extractor": str(info.get("extractor_key") or info.get("extractor") or "").lower(),
        "title": info.get("title"),
        "uploader": info.get("uploader") or info.get("channel"),
        "duration_s": duration_s,
        "reported_duration_s": float(reported) if reported is not None else None,
        "upload_date": info.get("upload_date"),
        "license": info.get("license"),
        "webpage_url": info.get("webpage_url") or info.get("original_url"),
        "playlist": info.get("playlist_title") or info.get("playlist"),
        "playlist_index": info.get("playlist_index"),
        "chapters": [chapter.to_dict() for chapter in chapters],
        "chapters_clipped": bool(chapter_issues),
        "chapter_issues": chapter_issues,
        "sample_rate": SAMPLE_RATE,
        "channels": CHANNELS,
    }


def _check_download(path: Path, info: Mapping[str, Any], params: CrawlParams) -> float:
    """Probe the converted file; returns its duration in seconds."""
    try:
        probe = audio_info(path)
    except AudioFileError as error:
        raise DownloadFailed(f"the converted file {path.name} is not readable audio: {error}") from error
    if probe.frames == 0:
        raise NoAudio(f"the audio stream of {info.get('webpage_url') or path.name} is empty")
    if probe.sample_rate != SAMPLE_RATE or probe.channels != CHANNELS:
        raise DownloadFailed(
            f"conversion gave {probe.sample_rate} Hz, {probe.channels} channels; expected "
            f"{SAMPLE_RATE} Hz, {CHANNELS} channels",
            reason="conversion",
        )
    duration = probe.frames / float(probe.sample_rate)
    reported = info.get("duration")
    if reported is not None and duration < float(reported) - max(
        TRUNCATION_TOLERANCE_S, 0.02 * float(reported)
    ):
        raise TruncatedDownload(
            f"got {duration:.1f} s of audio where the site reports {float(reported):.1f} s"
        )
    rejection = _duration_rejection(duration, params, "measured on the download")
    if rejection is not None:
        raise rejection
    return duration


def _write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)


def _fetch(
    item_id: str,
    dest_dir: Path,
    params: CrawlParams,
    extra_options: Mapping[str, Any],
    run: Callable[[yt_dlp.YoutubeDL], Mapping[str, Any] | None],
) -> DownloadedItem:
    """One download attempt into a private work directory; only finished files are moved out."""
    if safe_name(item_id) != item_id:
        raise InvalidSource(f"item id {item_id!r} is not a safe file name; build entries with item_id_for")
    dest_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{item_id}-", dir=dest_dir))
    duration_filter = _DurationFilter(params)
    options = _download_options(params, workdir, item_id) | dict(extra_options)
    options["match_filter"] = duration_filter
    _wait_for_turn(params.sleep_between_downloads_s)
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            try:
                info = run(ydl)
            except DownloadError as error:
                raise _classify(error, workdir) from error
            info = ydl.sanitize_info(info)
        video = _downloaded_video(info)
        if video is None:
            if duration_filter.rejection is not None:
                raise duration_filter.rejection
            refused = options["logger"].refused_bytes
            if refused is not None:
                raise TooLarge(f"the server announces {_mib(refused)}, over the {_mib(options['max_filesize'])} "
                               "cap (max_download_mb); nothing was downloaded")
            raise NotMedia(f"yt-dlp downloaded nothing for {item_id}")
        converted = Path(next(d["filepath"] for d in video["requested_downloads"] if d.get("filepath")))
        duration = _check_download(converted, video, params)
        metadata = _metadata(video, item_id, duration)
        audio_path = dest_dir / f"{item_id}.wav"
        metadata_path = dest_dir / f"{item_id}.json"
        os.replace(converted, audio_path)
        _write_json_atomically(metadata_path, metadata)
        return DownloadedItem(item_id, audio_path, metadata_path, metadata)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        _mark_download_end()


def download_audio(entry: CrawlEntry, dest_dir: str | Path, params: CrawlParams) -> DownloadedItem:
    """Download one listed entry as ``<dest_dir>/<item_id>.wav`` (44.1 kHz stereo) + ``.json``.

    Raises a ``CrawlItemFailed`` subclass when the item cannot be had, after retrying
    transient failures.
    """
    extra: dict[str, Any] = {}
    if entry.playlist_index is not None:
        extra = {"noplaylist": False, "playlist_items": str(entry.playlist_index)}
    return _run_with_retries(
        params,
        f"downloading {entry.item_id}",
        lambda: _fetch(entry.item_id, Path(dest_dir), params, extra,
                       lambda ydl: ydl.extract_info(entry.url, download=True)),
    )


def download_info(info: Mapping[str, Any], dest_dir: str | Path, params: CrawlParams) -> DownloadedItem:
    """Download from an info dict yt-dlp (or a saved ``.info.json``) already describes.

    The dict goes through yt-dlp's own processing (format selection, chapters, match filter)
    exactly as an extracted one would; it needs at least ``id``, ``extractor_key`` and
    ``url`` or ``formats``.
    """
    for key in ("id", "extractor_key"):
        if not info.get(key):
            raise InvalidSource(f"info dict has no {key!r}: cannot name the item")
    if not info.get("url") and not info.get("formats"):
        raise InvalidSource(f"info dict for {info['id']!r} has neither 'url' nor 'formats'")
    item_id = item_id_for(str(info["extractor_key"]), str(info["id"]), info.get("webpage_url"))
    return _run_with_retries(
        params,
        f"downloading {item_id}",
        lambda: _fetch(item_id, Path(dest_dir), params, {},
                       lambda ydl: ydl.process_ie_result(copy.deepcopy(dict(info)), download=True)),
    )
