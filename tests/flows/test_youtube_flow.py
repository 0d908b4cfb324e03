"""The YouTube refresh flow under the Prefect harness, against a loopback HTTP server of synthetic
compilations: segments with provenance, per-source counts, incremental refreshes, broken videos,
permanent failures remembered across refreshes."""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.audio_dataset import segment_filter_normalize
from flows.youtube_dataset import _previous_lineage, refresh_youtube_dataset
from tasks.download.params import CrawlParams
from tasks.download.stage import (
    DOWNLOAD_STAGE,
    DOWNLOAD_STAGE_VERSION,
    METADATA_FILE,
    download_params,
    video_digest,
)
from tasks.normalize.params import LoudnessParams
from tasks.pipeline.batching import StageFailed
from tasks.pipeline.params import RunSettings
from tasks.pipeline.publishing import artifact_key
from tasks.quality.params import QualityParams
from tasks.segment import stage as segment
from tasks.segment.params import SegmentParams
from tasks.store import ArtifactStore, object_key
from tests.helpers import (
    audio_bytes,
    compilation,
    media_server,
    mp3_bytes,
    piano_like,
    slow_reply,
    truncated_reply,
)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the crawl stage needs ffmpeg")

RATE = 44100
PIECE_S = 26.0
GAP_S = 2.0
CRAWL = CrawlParams(min_duration_s=None, sleep_between_downloads_s=0.0, retries=0, socket_timeout_s=1.0)
SEGMENTS = SegmentParams(min_segment_s=24.0, max_segment_s=60.0)


@pytest.fixture(scope="module")
def pieces() -> list[np.ndarray]:
    return [piano_like(PIECE_S, seed) for seed in range(6)]


@pytest.fixture()
def server(pieces):
    with media_server() as served:
        for name, chosen in {"a": (0, 1), "b": (2, 3), "c": (4,), "new": (5,)}.items():
            served.files[f"/media/{name}.wav"] = (
                audio_bytes(compilation([pieces[i] for i in chosen], RATE, GAP_S), RATE), "audio/wav")
        yield served


def _refresh(name: str, sources: list[str], store: Path, **settings):
    return refresh_youtube_dataset(
        name=name, sources=sources, crawl_settings=settings.pop("crawl", CRAWL), segment_settings=SEGMENTS,
        run=RunSettings(store=str(store), **settings.pop("run", {})), **settings,
    )


def test_refresh_publishes_segments_then_fetches_only_the_new_video(server, tmp_path):
    server.add_page("/playlist.html", "Nocturnes / 夜想曲", ["/media/a.wav", "/media/b.wav"])
    server.add_page("/single.html", "One piece", ["/media/c.wav"])
    sources = [server.url("/playlist.html"), server.url("/single.html")]
    store_root = tmp_path / "store"

    first = _refresh("yt", sources, store_root)
    assert first["created"] and first["ref"] == "yt@1"
    assert first["items"] == 5 and first["failures"] == 0
    assert first["stages"]["download"] == {"computed": 3, "reused": 0, "failed": 0}
    store = ArtifactStore(str(store_root))
    version = store.resolve("yt@1")
    by_source = version.stats["sources"]
    assert by_source[sources[0]]["items"] == 4 and by_source[sources[0]]["recordings"] == 2
    assert by_source[sources[1]]["items"] == 1
    expected_hours = 5 * PIECE_S / 3600.0
    assert version.stats["hours"] == pytest.approx(expected_hours, abs=4 * GAP_S / 3600.0)

    parents = sorted({item.stats["parent_id"] for item in version.items})
    assert len(parents) == 3
    for item in version.items:
        stats = item.stats
        assert item.item_id == f"{stats['parent_id']}#{stats['index']:04d}"
        # Pieces start after a 2 s gap and are 28 s apart: cuts sit in the silences around them.
        piece_start = GAP_S + stats["index"] * (PIECE_S + GAP_S)
        assert stats["start_s"] <= piece_start + 0.05 and stats["start_s"] >= piece_start - GAP_S
        assert stats["end_s"] >= piece_start + PIECE_S - 0.05 and stats["end_s"] <= piece_start + PIECE_S + GAP_S
        assert stats["url"].startswith(server.base) and stats["source"] in sources
        assert stats["bandwidth_hz"] > 17000
        cut = store.local_path(store.manifest(item.key).inputs[0])
        assert sf.info(str(cut / "audio.flac")).subtype == "PCM_16"  # downloads are 16-bit: cut exactly
        audio, rate = sf.read(store.local_path(item.key) / "audio.wav", dtype="float32")
        info = sf.info(str(store.local_path(item.key) / "audio.wav"))
        assert (rate, audio.shape[1], info.subtype) == (RATE, 2, "FLOAT")
        assert pyloudnorm.Meter(rate).integrated_loudness(audio) == pytest.approx(-20.0, abs=0.5)
    titled = [item for item in version.items if sources[0] in item.stats["source"]]
    assert all(item.stats["title"] for item in titled)

    download_requests = {path: server.count(path) for path in ("/media/a.wav", "/media/b.wav", "/media/c.wav")}
    server.add_page("/playlist.html", "Nocturnes / 夜想曲", ["/media/a.wav", "/media/b.wav", "/media/new.wav"])
    second = _refresh("yt", sources, store_root)
    assert second["ref"] == "yt@2" and second["items"] == 6
    assert second["stages"]["download"] == {"computed": 1, "reused": 3, "failed": 0}
    assert second["stages"]["segment-plan"] == {"computed": 1, "reused": 3, "failed": 0}
    assert second["stages"]["segment"] == {"computed": 1, "reused": 5, "failed": 0}
    assert second["stages"]["normalize"] == {"computed": 1, "reused": 5, "failed": 0}
    assert {path: server.count(path) for path in download_requests} == download_requests
    assert server.count("/media/new.wav") >= 1
    diff = store.diff("yt@1", "yt@2").to_dict()
    assert len(diff["added"]) == 1 and diff["removed"] == [] and diff["changed"] == []
    assert diff["added"][0] not in {item.item_id for item in version.items}

    # The playlist cannot be listed this time: its videos are remembered from yt@2, nothing changes.
    del server.files["/playlist.html"]
    third = _refresh("yt", sources, store_root)
    assert third["ref"] == "yt@2" and not third["created"]
    assert third["stages"]["list"] == {"listed": 1, "failed": 1}
    assert third["stages"]["download"] == {"computed": 0, "reused": 4, "failed": 0}


def test_broken_videos_are_recorded_with_reasons_and_the_rest_is_published(server, pieces, tmp_path):
    good = compilation([pieces[0], pieces[1]], RATE, GAP_S)
    # The same piece again, quieter and after a longer lead-in: kept once, across videos.
    repeat = compilation([pieces[1] * np.float32(0.4)], RATE, GAP_S + 0.37)
    eight = audio_bytes(piano_like(8.0, 9), RATE)
    server.files.update({
        "/media/good.wav": (audio_bytes(good, RATE), "audio/wav"),
        "/media/repeat.flac": (audio_bytes(repeat, RATE, "FLAC"), "audio/flac"),
        "/media/lossy.mp3": (mp3_bytes(compilation([pieces[4]], RATE, GAP_S), RATE), "audio/mpeg"),
        "/media/silence.wav": (audio_bytes(np.zeros((40 * RATE, 2), np.float32), RATE), "audio/wav"),
        "/media/garbage.wav": (b"this is not a wave file at all" * 50, "audio/wav"),
        "/media/truncated.wav": (eight, "audio/wav"),
        "/media/slow.wav": (eight, "audio/wav"),
    })
    server.special.update({"/media/truncated.wav": truncated_reply, "/media/slow.wav": slow_reply(2.0)})
    media = ["/media/good.wav", "/media/repeat.flac", "/media/lossy.mp3", "/media/silence.wav",
             "/media/missing.wav", "/media/garbage.wav", "/media/truncated.wav", "/media/slow.wav"]
    server.add_page("/mixed.html", "Mixed bag", media)
    sources = [server.url("/mixed.html"), server.url("/gone.html")]
    store_root = tmp_path / "store"

    name = f"mixed-{uuid.uuid4().hex[:6]}"  # artifact keys are per Prefect API, shared by every test
    result = _refresh(name, sources, store_root, run={"max_failure_ratio": 1.0})
    assert result["created"] and result["items"] == 2
    store = ArtifactStore(str(store_root))
    version = store.resolve(name)
    reasons = {failure.item_id: failure.reason for failure in version.failures}
    by_reason: dict[str, list[str]] = {}
    for item_id, reason in reasons.items():
        by_reason.setdefault(reason.split(":", 1)[0], []).append(item_id)
    assert reasons[server.url("/gone.html")].startswith("http_404")
    for reason in ("http_404", "not_media", "truncated", "timeout", "silent", "low_bandwidth", "duplicate"):
        assert reason in by_reason, f"no failure with reason {reason}: {reasons}"
    assert len(by_reason["http_404"]) == 2  # the dead source and the missing video
    (duplicate,) = by_reason["duplicate"]
    kept_copy = reasons[duplicate].split("duplicate_of ", 1)[1].split(":", 1)[0]
    assert kept_copy < duplicate, "the copy with the earliest item id is kept"
    assert kept_copy in {item.item_id for item in version.items}

    stats = version.stats
    assert stats["failure_reasons"]["duplicate"] == 1
    assert stats["sources"][sources[1]] == {"items": 0, "recordings": 0, "hours": 0.0, "failed": 1,
                                            "failure_reasons": {"http_404": 1}}
    assert stats["sources"][sources[0]]["items"] == 2
    assert stats["sources"][sources[0]]["failure_reasons"]["duplicate"] == 1

    # A dead video is remembered; a timeout or truncation is tried again by the next refresh.
    remembered = {
        failure.reason.split(":", 1)[0]: store.recorded_failure(object_key(
            DOWNLOAD_STAGE, DOWNLOAD_STAGE_VERSION, version.params["download"], [video_digest(failure.item_id)]))
        is not None
        for failure in version.failures if failure.stage == DOWNLOAD_STAGE
    }
    assert remembered == {"http_404": True, "not_media": True, "timeout": False, "truncated": False}

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(name)])), limit=1)
    table = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    rows = {row["statistic"]: row["value"] for row in table}
    assert rows["failure_reasons.low_bandwidth"] >= 1
    assert rows[f"sources.{sources[0]}.items"] == 2 and f"sources.{sources[0]}.hours" in rows


def test_nothing_is_published_when_every_video_fails(server, tmp_path):
    server.add_page("/dead.html", "Dead links", ["/media/missing-1.wav", "/media/missing-2.wav"])
    store_root = tmp_path / "store"
    name = f"dead-{uuid.uuid4().hex[:6]}"
    with pytest.raises(StageFailed, match="download: all 2 items failed"):
        _refresh(name, [server.url("/dead.html")], store_root)
    with pytest.raises(StageFailed, match="no video found"):
        _refresh(name, [server.url("/gone.html")], store_root)
    assert ArtifactStore(str(store_root)).list_datasets() == []

    # No version holds them, yet the store remembers both the dead videos and the dead source.
    requested = {path: server.count(path) for path in ("/media/missing-1.wav", "/media/missing-2.wav", "/gone.html")}
    with pytest.raises(StageFailed, match="download: all 2 items failed"):
        _refresh(name, [server.url("/dead.html")], store_root)
    with pytest.raises(StageFailed, match=r"no video found in 1 sources \(.*gone.html: http_404\)"):
        _refresh(name, [server.url("/gone.html")], store_root)
    assert {path: server.count(path) for path in requested} == requested


def test_permanent_failures_are_remembered_until_retry_failed(server, tmp_path, caplog):
    server.files["/media/garbage.wav"] = (b"this is not a wave file at all" * 50, "audio/wav")
    server.add_page("/notes.html", "Just text", [])
    dead = {"/media/missing.wav": "http_404", "/notes.html": "not_media", "/media/garbage.wav": "not_media"}
    sources = [server.url(path) for path in ("/media/a.wav", *dead)]
    store_root = tmp_path / "store"
    name = f"dead-links-{uuid.uuid4().hex[:6]}"
    tolerant = {"max_failure_ratio": 1.0}

    first = _refresh(name, sources, store_root, run=tolerant)
    assert first["created"] and first["items"] == 2
    version = ArtifactStore(str(store_root)).resolve(name)
    assert {(failure.item_id.split("-", 2)[1] if failure.stage == "download" else failure.item_id,
             failure.stage, failure.reason.split(":", 1)[0]) for failure in version.failures} == {
        (server.url("/media/missing.wav"), "list", "http_404"),
        (server.url("/notes.html"), "list", "not_media"),
        ("garbage", "download", "not_media"),
    }
    requested = {path: server.count(path) for path in dead}
    assert all(requested.values())

    # Listing and download failures alike: not one request to a dead link, nothing new to publish.
    with caplog.at_level(logging.INFO):
        second = _refresh(name, sources, store_root, run=tolerant)
    assert {path: server.count(path) for path in dead} == requested
    assert second["ref"] == first["ref"] and not second["created"]
    assert second["stages"]["list"] == {"listed": 2, "failed": 2}
    assert second["stages"]["download"] == {"computed": 0, "reused": 1, "failed": 1}
    summaries = [record.getMessage() for record in caplog.records if "remembered as permanent" in record.getMessage()]
    assert summaries == [("skipped 2 sources and 1 video remembered as permanent failures (not media x2, "
                          "404 Not Found); --retry-failed (run.retry_failed) tries them again")]

    third = _refresh(name, sources, store_root, run={**tolerant, "retry_failed": True})
    assert all(server.count(path) > requested[path] for path in dead)
    assert third["ref"] == first["ref"] and third["failures"] == 3


def test_a_refusal_by_the_size_cap_is_remembered_under_that_cap(server, tmp_path):
    sources = [server.url("/media/a.wav"), server.url("/media/c.wav")]  # about 10 and 5 MiB
    store_root = tmp_path / "store"
    name = f"capped-{uuid.uuid4().hex[:6]}"
    capped = CRAWL.model_copy(update={"max_download_mb": 8.0})

    first = _refresh(name, sources, store_root, crawl=capped, run={"max_failure_ratio": 1.0})
    (failure,) = ArtifactStore(str(store_root)).resolve(name).failures
    assert failure.item_id.startswith("generic-a-")
    assert failure.reason.startswith("too_large: the server announces 9.8 MiB, over the 8.0 MiB cap")
    requested = server.count("/media/a.wav")

    again = _refresh(name, sources, store_root, crawl=capped, run={"max_failure_ratio": 1.0})
    assert server.count("/media/a.wav") == requested and again["ref"] == first["ref"]

    uncapped = _refresh(name, sources, store_root)  # another cap: the refusal no longer applies
    assert server.count("/media/a.wav") > requested
    assert uncapped["created"] and uncapped["stages"]["download"] == {"computed": 1, "reused": 1, "failed": 0}


def test_chapters_of_a_download_decide_its_segments(pieces, tmp_path):
    """A download object with chapter marks (one past the end) through the segment path."""
    store = ArtifactStore(str(tmp_path / "store"))
    audio = compilation(pieces[:3], RATE, GAP_S)
    duration = audio.shape[0] / RATE
    titles = ["Prélude / No. 1", 'Fugue "2"', "夜想曲"]
    marks = [0.0, GAP_S + PIECE_S + 1.0, 2 * (GAP_S + PIECE_S) + 1.0, duration + 30.0]
    chapters = [{"title": title, "start_s": start, "end_s": end}
                for title, start, end in zip([*titles, "Encore"], marks, [*marks[1:3], duration, duration + 60.0])]
    video = "youtube-chapters"
    inputs = [video_digest(video)]
    with store.publish_object(DOWNLOAD_STAGE, DOWNLOAD_STAGE_VERSION, download_params(CrawlParams()), inputs,
                              item=video) as staged:
        sf.write(staged.dir / "audio.flac", audio, RATE, subtype="PCM_16")
        (staged.dir / METADATA_FILE).write_text(json.dumps(
            {"title": "Bach / Chopin", "uploader": "Pianist", "webpage_url": "https://example.org/watch?v=chapters",
             "chapters": chapters}), encoding="utf-8")

    @flow
    def segment_one_download():
        plan_items = segment.plan_recording_items([(video, staged.key, {"metadata": METADATA_FILE, "source": "s"})],
                                                  SEGMENTS)
        return segment_filter_normalize(store, [(plan_items, None)], QualityParams(), LoudnessParams(),
                                        RunSettings(store=store.root))

    outcomes = segment_one_download()
    assert [o.stats["chapter_issues"] for o in outcomes.plans] == [1]  # "Encore" starts after the end
    kept = sorted(outcomes.normalized, key=lambda o: o.item_id)
    assert [o.stats["chapter"] for o in kept] == titles
    assert {o.stats["method"] for o in kept} == {"chapter"}
    assert {(o.stats["title"], o.stats["uploader"]) for o in kept} == {("Bach / Chopin", "Pianist")}
    for number, outcome in enumerate(kept):
        piece_start = GAP_S + number * (PIECE_S + GAP_S)
        assert abs(outcome.stats["start_s"] - piece_start) <= 0.5
        assert abs(outcome.stats["end_s"] - (piece_start + PIECE_S)) <= 0.5
        assert "/" not in outcome.item_id.removeprefix(video)


def test_a_refresh_remembers_the_newest_readable_version_past_an_unreadable_one(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    assert _previous_lineage(store, "tube") == []
    for number, source in enumerate(["first-listing", "second-listing", "third-listing"], start=1):
        with store.publish_object("toy", 1, {"n": number}, [], item=f"i{number}") as staged:
            (staged.dir / "x.bin").write_bytes(b"x" * number)
        store.publish_dataset("tube", stage="toy", params={}, items=[{"item_id": "i", "key": staged.key}],
                              lineage={"sources": [source]})
    store.backend.path("datasets/tube/versions/000003.json").write_text("{")
    assert _previous_lineage(store, "tube") == ["second-listing"]
