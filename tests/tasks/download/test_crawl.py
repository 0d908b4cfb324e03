"""Crawl stage against a loopback HTTP server started here: direct media files, HTML pages with
<audio>/<video> tags (one page with several is a playlist), and broken cases (404, not media,
truncated, slow, no audio stream, rate limited, oversized, a server that never answers).
Chapters go through yt-dlp's own info-dict path offline."""

from __future__ import annotations

import html
import http.server
import json
import re
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError
from yt_dlp.utils import DownloadError, ExtractorError

from tasks.download.core import (
    CrawlEntry,
    CrawlItemFailed,
    DownloadTimeout,
    DurationOutOfBounds,
    HttpStatusError,
    InvalidSource,
    NoAudio,
    NotMedia,
    TooLarge,
    TruncatedDownload,
    Unavailable,
    _classify,
    download_audio,
    download_info,
    expand_sources,
    is_remote_source,
    list_entries,
    new_entries,
    safe_name,
)
from tasks.download.params import CrawlParams, InvalidCrawlParams
from tasks.pipeline.batching import ItemFailed
from tests.helpers import MediaServer, Reply, media_server, slow_reply, truncated_reply

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="the crawl stage needs ffmpeg and ffprobe",
)

FAST = CrawlParams(
    min_duration_s=None,
    max_duration_s=None,
    sleep_between_downloads_s=0.0,
    retries=0,
    retry_backoff_s=0.01,
    socket_timeout_s=5.0,
)


def fast(**changes: object) -> CrawlParams:
    """FAST with `changes`, validated."""
    return CrawlParams.model_validate({**FAST.model_dump(), **changes})


SAFE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MIB = 1 << 20
UNSAFE_TITLE = 'Ballade "No. 1" / Op. 23 — ショパン & Liszt'


def tone(seconds: float, rate: int, channels: int, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    left = 0.3 * np.sin(2 * np.pi * frequency * t)
    if channels == 1:
        return left.astype(np.float32)
    return np.stack([left, 0.2 * np.sin(2 * np.pi * 1.5 * frequency * t)], axis=1).astype(np.float32)


def ffmpeg(*arguments: str) -> None:
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", *arguments], check=True)


def _media(root: Path) -> dict[str, tuple[bytes, str]]:
    sf.write(root / "mono.wav", tone(3.0, 22050, 1), 22050, subtype="PCM_16")
    sf.write(root / "stereo.ogg", tone(4.0, 48000, 2, 330.0), 48000, format="OGG")
    sf.write(root / "eight.wav", tone(8.0, 44100, 2, 262.0), 44100, subtype="PCM_16")
    ffmpeg("-i", str(root / "mono.wav"), "-c:a", "libmp3lame", "-b:a", "128k", str(root / "piece.mp3"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=duration=2:size=64x64:rate=10", "-f", "lavfi", "-i",
           "sine=frequency=500:duration=2", "-c:v", "mpeg4", "-c:a", "aac", "-shortest",
           str(root / "clip.mp4"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=duration=2:size=64x64:rate=10", "-c:v", "mpeg4",
           str(root / "silent-film.mp4"))
    types = {".wav": "audio/wav", ".ogg": "audio/ogg", ".mp3": "audio/mpeg", ".mp4": "video/mp4"}
    files = {f"/media/{p.name}": (p.read_bytes(), types[p.suffix]) for p in root.iterdir()}

    def page(title: str, body: str) -> tuple[bytes, str]:
        return f"<html><head><title>{title}</title></head><body>{body}</body></html>".encode(), "text/html; charset=utf-8"

    files["/page.html"] = page(html.escape(UNSAFE_TITLE, quote=False), '<audio controls src="/media/piece.mp3"></audio>')
    files["/playlist.html"] = page(
        "Three pieces",
        '<audio src="/media/mono.wav"></audio><video src="/media/clip.mp4"></video>'
        '<audio src="/media/stereo.ogg"></audio>',
    )
    files["/channel.html"] = page("Channel", '<audio src="/media/mono.wav"></audio><audio src="/media/stereo.ogg"></audio>')
    files["/notes.html"] = page("Just text", "<p>no media here</p>")
    files["/media/garbage.wav"] = (b"this is not a wave file at all" * 50, "audio/wav")
    return files


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaServer]:
    def rate_limited_once(handler: http.server.BaseHTTPRequestHandler, body: bytes, kind: str, count: int) -> bool:
        if count > 1:
            return False
        handler.send_response(429, "Too Many Requests")
        handler.send_header("Retry-After", "0")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True

    def always_forbidden(handler: http.server.BaseHTTPRequestHandler, body: bytes, kind: str, count: int) -> bool:
        handler.send_error(403, "Forbidden")
        return True

    with media_server() as state:
        state.files.update(_media(tmp_path_factory.mktemp("www")))
        for name in ("truncated", "slow", "flaky", "blocked"):
            state.files[f"/media/{name}.wav"] = state.files["/media/eight.wav"]
        state.special.update({
            "/media/truncated.wav": truncated_reply,
            "/media/slow.wav": slow_reply(2.0),
            "/media/flaky.wav": rate_limited_once,
            "/media/blocked.wav": always_forbidden,
        })
        yield state


@pytest.fixture()
def silent_server() -> Iterator[tuple[str, list[float]]]:
    """A server that accepts connections and never answers: a URL on it, and when each
    connection came."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[float] = []
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)
            accepted.append(time.monotonic())

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/media/piece.wav", accepted
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    for connection in held:
        connection.close()


def _hangs_up(connection: socket.socket, within_s: float) -> bool:
    """True when the client closes the connection within `within_s` (it sends nothing more)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        readable, _, _ = select.select([connection], [], [], 0.02)
        if readable and connection.recv(1, socket.MSG_PEEK) == b"":
            return True
    return False


def _stream(handler: http.server.BaseHTTPRequestHandler, size: int, sent: list[int]) -> None:
    """Send `size` zero bytes until the client hangs up, counting them in `sent[-1]`."""
    chunk = bytes(64 * 1024)
    try:
        while sent[-1] < size:
            handler.wfile.write(chunk)
            sent[-1] += len(chunk)
    except OSError:
        pass


def announces(size: int, sent: list[int]) -> Reply:
    """Announce `size` bytes, give the client 3 s to hang up, then send them; `sent` gets the body
    bytes sent per request (0 for a client that refused the announced size)."""

    def reply(handler: http.server.BaseHTTPRequestHandler, body: bytes, content_type: str, count: int) -> bool:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        handler.wfile.flush()
        sent.append(0)
        if not _hangs_up(handler.connection, 3.0):
            _stream(handler, size, sent)
        return True

    return reply


def unannounced(size: int, sent: list[int]) -> Reply:
    """Send `size` bytes with no Content-Length (the end of the connection ends the body)."""

    def reply(handler: http.server.BaseHTTPRequestHandler, body: bytes, content_type: str, count: int) -> bool:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.end_headers()
        handler.close_connection = True
        sent.append(0)
        _stream(handler, size, sent)
        return True

    return reply


def entry_for(server: MediaServer, path: str, params: CrawlParams = FAST) -> CrawlEntry:
    (entry,) = list_entries(server.url(path), params)
    return entry


def assert_cd_audio(path: Path) -> np.ndarray:
    info = sf.info(str(path))
    assert (info.samplerate, info.channels) == (44100, 2)
    audio, _ = sf.read(path, dtype="float32", always_2d=True)
    return audio


# --- listing ---------------------------------------------------------------------------------


def test_direct_media_files_are_single_entries(server: MediaServer) -> None:
    entries = [entry_for(server, p) for p in ("/media/mono.wav", "/media/stereo.ogg", "/media/piece.mp3")]
    assert [e.video_id for e in entries] == ["mono", "stereo", "piece"]
    assert all(e.extractor == "generic" and e.duration_s is None for e in entries)
    assert len({e.item_id for e in entries}) == 3
    assert all(SAFE_FILE.match(e.item_id) for e in entries)


def test_page_with_several_tags_is_a_playlist(server: MediaServer) -> None:
    entries = list_entries(server.url("/playlist.html"), FAST)
    assert [e.playlist_index for e in entries] == [1, 2, 3]
    assert {e.playlist for e in entries} == {"Three pieces"}
    assert all(e.url == server.url("/playlist.html") for e in entries)
    assert len(list_entries(server.url("/playlist.html"), fast(max_items=2))) == 2


def test_refresh_lists_only_new_videos(server: MediaServer) -> None:
    first = list_entries(server.url("/channel.html"), FAST)
    known = {e.item_id for e in first}
    assert new_entries(first, known) == []
    body, kind = server.files["/channel.html"]
    server.files["/channel.html"] = (body.replace(b"</body>", b'<audio src="/media/piece.mp3"></audio></body>'), kind)
    second = list_entries(server.url("/channel.html"), FAST)
    fresh = new_entries(second, known)
    assert [e.playlist_index for e in fresh] == [3]
    assert new_entries([*second, *second], ()) == second  # repeats collapse, order kept


def test_source_lists_expand_with_comments_and_nesting(server: MediaServer, tmp_path: Path) -> None:
    inner = tmp_path / "inner.txt"
    inner.write_text(f"{server.url('/media/stereo.ogg')}\n")
    outer = tmp_path / "sources.txt"
    outer.write_text(
        f"# piano sources\n\n{server.url('/media/mono.wav')}\n  ytsearch3:chopin nocturne  \n{inner}\n"
        f"{server.url('/media/mono.wav')}\n"
    )
    assert expand_sources([str(outer)]) == [server.url("/media/mono.wav"), "ytsearch3:chopin nocturne",
                                            server.url("/media/stereo.ogg")]
    only_local = tmp_path / "local.txt"
    only_local.write_text(f"{server.url('/media/mono.wav')}\n{inner}\n")
    assert [e.video_id for e in list_entries(str(only_local), FAST)] == ["mono", "stereo"]
    broken = tmp_path / "broken.txt"
    broken.write_text("https://example.invalid/ok\nnot a source\n")
    with pytest.raises(InvalidSource, match=r"broken.txt:2"):
        expand_sources([str(broken)])
    with pytest.raises(InvalidSource, match="not a URL"):
        expand_sources(["no-such-file.txt"])
    assert is_remote_source("ytsearch10:mozart sonata") and is_remote_source("ytsearchall:x")
    assert not is_remote_source("/tmp/list.txt")


# --- downloading -----------------------------------------------------------------------------


def test_download_converts_to_cd_audio_and_keeps_metadata(server: MediaServer, tmp_path: Path) -> None:
    mono = download_audio(entry_for(server, "/media/mono.wav"), tmp_path, FAST)
    audio = assert_cd_audio(mono.audio_path)
    np.testing.assert_array_equal(audio[:, 0], audio[:, 1])  # mono duplicated
    assert audio.shape[0] / 44100 == pytest.approx(3.0, abs=0.01)
    assert mono.metadata["duration_s"] == pytest.approx(3.0, abs=0.01)
    assert mono.metadata["webpage_url"] == server.url("/media/mono.wav")
    assert json.loads(mono.metadata_path.read_text()) == mono.metadata

    stereo = download_audio(entry_for(server, "/media/stereo.ogg"), tmp_path, FAST)
    audio = assert_cd_audio(stereo.audio_path)
    assert not np.allclose(audio[:, 0], audio[:, 1], atol=1e-3)  # real stereo stays stereo
    assert stereo.metadata["duration_s"] == pytest.approx(4.0, abs=0.02)

    video = download_audio(list_entries(server.url("/playlist.html"), FAST)[1], tmp_path, FAST)
    assert video.metadata["playlist_index"] == 2
    assert assert_cd_audio(video.audio_path).shape[0] / 44100 == pytest.approx(2.0, abs=0.1)
    leftovers = [p.name for p in tmp_path.iterdir() if p.suffix not in (".wav", ".json")]
    assert leftovers == []


def test_unsafe_titles_never_become_paths(server: MediaServer, tmp_path: Path) -> None:
    entry = entry_for(server, "/page.html")
    assert entry.title.startswith(UNSAFE_TITLE)
    item = download_audio(entry, tmp_path / "out", FAST)
    assert item.metadata["title"].startswith(UNSAFE_TITLE)
    names = [p.name for p in (tmp_path / "out").iterdir()]
    assert sorted(names) == sorted([f"{entry.item_id}.wav", f"{entry.item_id}.json"])
    assert all(SAFE_FILE.match(name) for name in names)
    for unsafe in ("../../etc/passwd", 'a"b\\c', "ショパン", ".hidden", "a/b"):
        name = safe_name(unsafe)
        assert SAFE_FILE.match(name) and "/" not in name
    assert safe_name("ショパン") != safe_name("モーツァルト")
    assert safe_name("youtube-dQw4w9WgXcQ") == "youtube-dQw4w9WgXcQ"
    forged = CrawlEntry(item_id="../escape", video_id="x", extractor="generic", url=server.url("/media/mono.wav"))
    with pytest.raises(InvalidSource, match="safe file name"):
        download_audio(forged, tmp_path / "out", FAST)


@pytest.mark.parametrize(
    ("path", "params", "error", "reason"),
    [
        ("/media/missing.wav", FAST, HttpStatusError, "http_404"),
        ("/notes.html", FAST, NotMedia, "not_media"),
        ("/media/garbage.wav", FAST, NotMedia, "not_media"),
        ("/media/silent-film.mp4", FAST, NoAudio, "no_audio"),
        ("/media/truncated.wav", FAST, TruncatedDownload, "truncated"),
        ("/media/slow.wav", fast(socket_timeout_s=0.5), DownloadTimeout, "timeout"),
        ("/media/mono.wav", fast(min_duration_s=10.0), DurationOutOfBounds, "too_short"),
    ],
)
def test_broken_items_fail_with_their_reason(
    server: MediaServer, tmp_path: Path, path: str, params: CrawlParams, error: type, reason: str
) -> None:
    entry = CrawlEntry(item_id="generic-broken", video_id="broken", extractor="generic", url=server.url(path))
    with pytest.raises(error) as failure:
        download_audio(entry, tmp_path, params)
    assert isinstance(failure.value, ItemFailed) and isinstance(failure.value, CrawlItemFailed)
    assert failure.value.reason == reason
    assert list(tmp_path.iterdir()) == []  # nothing partial is left behind


def test_listing_a_dead_link_fails_with_its_reason(server: MediaServer) -> None:
    with pytest.raises(HttpStatusError) as failure:
        list_entries(server.url("/gone.html"), FAST)
    assert failure.value.reason == "http_404" and not failure.value.transient


def test_transient_errors_are_retried_with_backoff(server: MediaServer, tmp_path: Path) -> None:
    params = fast(retries=2)
    flaky = CrawlEntry(item_id="generic-flaky", video_id="flaky", extractor="generic", url=server.url("/media/flaky.wav"))
    item = download_audio(flaky, tmp_path, params)
    assert item.metadata["duration_s"] == pytest.approx(8.0, abs=0.01)
    assert server.count("/media/flaky.wav") >= 2  # the 429, then the retry that worked
    blocked = CrawlEntry(item_id="generic-blocked", video_id="blocked", extractor="generic",
                         url=server.url("/media/blocked.wav"))
    before = server.count("/media/blocked.wav")
    with pytest.raises(HttpStatusError) as failure:
        download_audio(blocked, tmp_path, params)
    assert failure.value.reason == "http_403"
    assert server.count("/media/blocked.wav") - before == 3  # one try and two retries


def test_a_server_that_never_answers_costs_one_timeout_per_attempt(silent_server, tmp_path: Path) -> None:
    url, accepted = silent_server
    quick = fast(socket_timeout_s=2.0, retries=0)
    entry = CrawlEntry(item_id="generic-silent", video_id="silent", extractor="generic", url=url)
    timings = []
    for attempt in (lambda: list_entries(url, quick), lambda: download_audio(entry, tmp_path, quick)):
        started = time.monotonic()
        with pytest.raises(DownloadTimeout) as failure:
            attempt()
        timings.append(time.monotonic() - started)
        assert failure.value.reason == "timeout" and failure.value.transient
    assert all(1.9 < seconds < 5.0 for seconds in timings), timings
    assert len(accepted) == 2  # one request each: yt-dlp retries nothing on its own
    started = time.monotonic()
    with pytest.raises(DownloadTimeout):
        list_entries(url, fast(socket_timeout_s=1.0, retries=2, retry_backoff_s=0.1))
    assert len(accepted) == 5  # the listing, then its two retries
    assert 3.2 < time.monotonic() - started < 7.0  # three 1 s timeouts, 0.1 + 0.2 s of backoff
    assert list(tmp_path.iterdir()) == []


def test_an_announced_size_over_the_cap_is_refused_before_the_body(server: MediaServer, tmp_path: Path) -> None:
    sent: list[int] = []
    server.files["/media/huge.wav"] = (b"", "audio/wav")
    server.special["/media/huge.wav"] = announces(64 * MIB, sent)
    capped = fast(max_download_mb=1.0)
    entry = entry_for(server, "/media/huge.wav", capped)
    with pytest.raises(TooLarge) as failure:
        download_audio(entry, tmp_path, capped)
    assert failure.value.reason == "too_large" and not failure.value.transient
    assert "announces 64.0 MiB, over the 1.0 MiB cap" in str(failure.value)
    assert len(sent) == 3 and sum(sent) == 0  # listing, extraction, download: none read the body
    assert list(tmp_path.iterdir()) == []


def test_a_stream_past_the_cap_is_stopped_and_its_file_removed(server: MediaServer, tmp_path: Path) -> None:
    sent: list[int] = []
    server.files["/media/endless.wav"] = (b"", "audio/wav")
    server.special["/media/endless.wav"] = unannounced(256 * MIB, sent)
    capped = fast(max_download_mb=1.0)
    entry = entry_for(server, "/media/endless.wav", capped)
    with pytest.raises(TooLarge) as failure:
        download_audio(entry, tmp_path, capped)
    message = str(failure.value)
    assert failure.value.reason == "too_large" and "the server announced no size" in message
    received = float(re.search(r"stopped after ([\d.]+) MiB received, over the 1.0 MiB cap", message).group(1))
    assert 1.0 < received < 8.0  # stopped within a few read blocks of the cap
    assert max(sent) < 64 * MIB
    assert list(tmp_path.iterdir()) == []  # the partial file went with the work directory


def _extractor_failure(message: str) -> DownloadError:
    """The DownloadError yt-dlp raises when an extractor gives up with `message`."""
    try:
        raise ExtractorError(message, expected=True)
    except ExtractorError:
        return DownloadError(f"ERROR: [youtube] abc: {message}", sys.exc_info())


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("Private video. Sign in if you've been granted access to this video", "unavailable"),
        ("Video unavailable. This video has been removed by the uploader", "unavailable"),
        (("Video unavailable. This video is no longer available because the YouTube account associated with "
          "this video has been terminated."), "unavailable"),
        ("This playlist is private", "unavailable"),
        ("The channel/playlist does not exist and the URL redirected to youtube.com home page", "unavailable"),
        (("Video unavailable. This content isn't available, try again later. The current session has been "
          "rate-limited by YouTube for up to an hour."), "download_error"),
        ("Sign in to confirm you're not a bot. Use --cookies-from-browser or --cookies for the authentication.",
         "download_error"),
    ],
)
def test_gone_videos_are_unavailable_and_rate_limits_are_not(message: str, reason: str) -> None:
    failure = _classify(_extractor_failure(message), None)
    assert failure.reason == reason
    assert isinstance(failure, Unavailable) == (reason == "unavailable")


def test_downloads_are_spaced_by_the_rate_limit(server: MediaServer, tmp_path: Path) -> None:
    params = fast(sleep_between_downloads_s=0.8)
    entry = entry_for(server, "/media/mono.wav")
    download_audio(entry, tmp_path, params)
    finished = time.monotonic()
    download_audio(entry, tmp_path, params)
    next_request = [r.time for r in server.requests if r.path == "/media/mono.wav" and r.time > finished]
    assert next_request and next_request[0] - finished >= 0.75


def test_cookies_and_proxy_are_used(server: MediaServer, tmp_path: Path) -> None:
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tpiano-42\n")
    params = fast(cookies_file=str(cookies))
    download_audio(entry_for(server, "/media/mono.wav", params), tmp_path / "c", params)
    assert any("session=piano-42" in r.headers.get("Cookie", "") for r in server.requests)
    # Nothing listens on 127.0.0.2 at this port: only a working proxy setting reaches the media.
    port = server.base.rsplit(":", 1)[1]
    proxied = fast(proxy=server.base)
    entries = list_entries(f"http://127.0.0.2:{port}/media/stereo.ogg", proxied)
    item = download_audio(entries[0], tmp_path / "p", proxied)
    assert item.metadata["duration_s"] == pytest.approx(4.0, abs=0.02)
    with pytest.raises(InvalidCrawlParams, match="cookies_file"):
        list_entries(server.url("/media/mono.wav"),
                     fast(cookies_file=str(tmp_path / "none.txt")))


# --- the info-dict path: chapters, reported durations ----------------------------------------


def hand_built_info(server: MediaServer, **overrides: object) -> dict:
    info = {
        "id": "noct/urne:9",
        "extractor": "youtube",
        "extractor_key": "Youtube",
        "title": 'Chopin: "Nocturnes" / Op. 9 — 夜想曲',
        "url": server.url("/media/eight.wav"),
        "ext": "wav",
        "duration": 8.0,
        "uploader": "Pianist",
        "upload_date": "20240131",
        "license": "Creative Commons Attribution license (reuse allowed)",
        "webpage_url": server.url("/watch?v=noct"),
        "chapters": [
            {"start_time": 0.0, "end_time": 3.0, "title": "No. 1"},
            {"start_time": 3.0, "end_time": 7.0, "title": "No. 2"},
            {"start_time": 7.0, "end_time": 12.0, "title": "No. 3"},
            {"start_time": 12.0, "end_time": 20.0, "title": "Encore"},
        ],
    }
    info.update(overrides)
    return info


def test_chapters_through_ytdlp_info_dict_are_clipped_and_flagged(server: MediaServer, tmp_path: Path) -> None:
    item = download_info(hand_built_info(server), tmp_path, FAST)
    assert SAFE_FILE.match(item.audio_path.name) and item.item_id.startswith("youtube-noct_urne_9")
    assert_cd_audio(item.audio_path)
    meta = item.metadata
    assert meta["title"] == 'Chopin: "Nocturnes" / Op. 9 — 夜想曲'
    assert (meta["uploader"], meta["upload_date"]) == ("Pianist", "20240131")
    assert meta["license"].startswith("Creative Commons")
    assert meta["webpage_url"] == server.url("/watch?v=noct")
    assert meta["duration_s"] == pytest.approx(8.0, abs=0.01)
    assert [(c["title"], c["start_s"], c["end_s"]) for c in meta["chapters"]] == [
        ("No. 1", 0.0, 3.0), ("No. 2", 3.0, 7.0), ("No. 3", 7.0, pytest.approx(8.0, abs=0.01))]
    assert meta["chapters_clipped"] is True
    assert len(meta["chapter_issues"]) == 2  # "No. 3" clipped, "Encore" dropped


def test_reported_duration_bounds_skip_the_download(server: MediaServer, tmp_path: Path) -> None:
    before = server.count("/media/eight.wav")
    with pytest.raises(DurationOutOfBounds) as failure:
        download_info(hand_built_info(server), tmp_path, fast(max_duration_s=5.0))
    assert failure.value.reason == "too_long"
    assert server.count("/media/eight.wav") == before  # rejected before any byte was fetched


def test_audio_shorter_than_reported_is_truncated(server: MediaServer, tmp_path: Path) -> None:
    with pytest.raises(TruncatedDownload) as failure:
        download_info(hand_built_info(server, duration=60.0, chapters=[]), tmp_path, FAST)
    assert failure.value.reason == "truncated"


def test_params_are_validated() -> None:
    with pytest.raises(ValidationError, match="min_duration_s") as refused:
        CrawlParams(min_duration_s=100.0, max_duration_s=10.0)
    assert isinstance(refused.value.errors()[0]["ctx"]["error"], InvalidCrawlParams)
    with pytest.raises(ValidationError, match="retries"):
        CrawlParams(retries=-1)
    assert CrawlParams().backoff_s(0) == 5.0 and CrawlParams().backoff_s(10) == 120.0
    assert CrawlParams().backoff_s(0, retry_after_s=30.0) == 30.0
    assert CrawlParams().model_dump()["min_duration_s"] == 30.0
    assert CrawlParams().max_download_mb == 4096.0 and CrawlParams(max_download_mb=None).max_download_mb is None
    with pytest.raises(ValidationError, match="max_download_mb"):
        CrawlParams(max_download_mb=0)
