"""The recordings flow under the Prefect harness: a folder of wav/flac/mp3/ogg at several rates,
mono and stereo, with a corrupt and a silent file; compilations that repeat each other's pieces;
and the `dataset audio` / `dataset youtube` CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from flows.audio_dataset import build_audio_dataset
from tasks.pipeline.params import RunSettings
from tasks.quality.params import QualityParams
from tasks.segment.params import SegmentParams
from tasks.store import ArtifactStore
from tests.helpers import audio_bytes, compilation, media_server, piano_like, run_cli

PIECE_S = 26.0
SEGMENTS = SegmentParams(min_segment_s=24.0, max_segment_s=60.0)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("rec") / "mozart"
    (folder / "sonatas").mkdir(parents=True)
    sf.write(folder / "sonatas" / "k331.flac", compilation([piano_like(PIECE_S, 1), piano_like(PIECE_S, 2)]), 44100,
             subtype="PCM_24")
    mono = compilation([piano_like(PIECE_S, 3, sample_rate=22050)], 22050)[:, 0]
    sf.write(folder / "old-mono.wav", mono, 22050, subtype="PCM_16")
    sf.write(folder / "k545.ogg", compilation([piano_like(PIECE_S, 4, sample_rate=48000)], 48000), 48000,
             format="OGG")
    sf.write(folder / "silent.wav", np.zeros((40 * 44100, 2), np.float32), 44100)
    (folder / "broken.mp3").write_bytes(b"ID3 but nothing else that a decoder could use" * 20)
    (folder / "notes.txt").write_text("not a recording: ignored")
    return folder


def test_recordings_folder_is_segmented_filtered_and_normalized(recordings, tmp_path):
    store_root = tmp_path / "store"
    # Band-limited old recordings are wanted here: the 22.05 kHz file stops at 11 kHz.
    result = build_audio_dataset(
        name="mozart", sources=[str(recordings)], segment_settings=SEGMENTS,
        quality_settings=QualityParams(min_bandwidth_hz=0.0), run=RunSettings(store=str(store_root)),
    )
    assert result["created"] and result["items"] == 4
    store = ArtifactStore(str(store_root))
    version = store.resolve("mozart")
    reasons = {failure.item_id: failure.reason.split(":", 1)[0] for failure in version.failures}
    assert reasons == {"mozart/broken.mp3": "not_audio", "mozart/silent.wav": "silent"}
    assert version.stats["sources"]["mozart"]["items"] == 4
    assert version.stats["sources"]["mozart"]["recordings"] == 3
    assert version.stats["failure_reasons"] == {"not_audio": 1, "silent": 1}

    by_parent: dict[str, list] = {}
    for item in version.items:
        by_parent.setdefault(item.stats["parent_id"], []).append(item)
        audio, rate = sf.read(store.local_path(item.key) / "audio.wav", dtype="float32")
        assert rate == 44100 and audio.shape[1] == 2
        assert pyloudnorm.Meter(rate).integrated_loudness(audio) == pytest.approx(-20.0, abs=0.5)
        assert item.stats["duration_s"] == pytest.approx(audio.shape[0] / rate, abs=1e-3)
    assert sorted(by_parent) == ["mozart/k545.ogg", "mozart/old-mono.wav", "mozart/sonatas/k331.flac"]
    assert [item.stats["index"] for item in by_parent["mozart/sonatas/k331.flac"]] == [0, 1]
    (mono,) = by_parent["mozart/old-mono.wav"]
    left_right, _ = sf.read(store.local_path(mono.key) / "audio.wav", dtype="float32")
    np.testing.assert_array_equal(left_right[:, 0], left_right[:, 1])
    assert mono.stats["bandwidth_hz"] < 11100 and mono.stats["start_s"] < 2.0 < mono.stats["start_s"] + 0.3

    # Default filters drop the band-limited file with its reason; everything else is reused.
    again = build_audio_dataset(name="mozart", sources=[str(recordings)], segment_settings=SEGMENTS,
                                run=RunSettings(store=str(store_root)))
    assert again["ref"] == "mozart@2" and again["items"] == 3
    assert again["stages"]["segment"] == {"computed": 0, "reused": 4, "failed": 0}
    assert again["stages"]["normalize"] == {"computed": 0, "reused": 3, "failed": 0}
    dropped = {f.item_id: f.reason for f in store.resolve("mozart@2").failures if f.stage == "quality"}
    assert list(dropped) == [f"{mono.stats['parent_id']}#0000"] and dropped[mono.item_id].startswith("low_bandwidth")


def test_repeats_are_cut_out_of_a_segment_and_the_new_piece_between_them_is_kept(tmp_path):
    """B holds A's two pieces (at -6 dB) with a new piece between them and no silence inside, so
    all three share one segment; C holds A's second piece alone."""
    rate, gap = 44100, np.zeros((2 * 44100, 2), np.float32)
    first, second, new = piano_like(40.0, 11), piano_like(40.0, 12), piano_like(35.0, 13)
    folder = tmp_path / "covers"
    folder.mkdir()
    sf.write(folder / "a.wav", compilation([first, second]), rate, subtype="PCM_16")
    b = np.concatenate([gap, first * np.float32(0.5), new, second * np.float32(0.5), gap])
    sf.write(folder / "b.wav", b, rate, subtype="PCM_16")
    sf.write(folder / "c.wav", compilation([second * np.float32(0.7)]), rate, subtype="PCM_16")
    store_root = tmp_path / "store"
    build = {"name": "covers", "sources": [str(folder)], "segment_settings": SegmentParams(),
             "run": RunSettings(store=str(store_root))}

    result = build_audio_dataset(**build)
    assert result["created"] and result["items"] == 3
    assert result["stages"]["dedupe"] == {"computed": 1, "reused": 0, "failed": 1}
    store = ArtifactStore(str(store_root))
    version = store.resolve("covers")
    (dropped,) = version.failures
    assert (dropped.item_id, dropped.stage) == ("covers/c.wav#0000", "dedupe")
    assert dropped.reason.startswith("duplicate: duplicate_of covers/a.wav#0001")

    items = {item.item_id: item for item in version.items}
    (piece_id,) = set(items) - {"covers/a.wav#0000", "covers/a.wav#0001"}
    piece = items[piece_id].stats
    assert piece_id.startswith("covers/b.wav#0000@") and piece["segment_id"] == "covers/b.wav#0000"
    assert [cut["duplicate_of"] for cut in piece["repeats_cut"]] == ["covers/a.wav#0000", "covers/a.wav#0001"]
    # The cuts sit at the edges of the new piece (42 s to 77 s into b.wav), within the 1 s that
    # tests/tasks/quality/test_quality.py's BOUNDARY_TOLERANCE_S explains.
    new_start_s = 2.0 + 40.0
    assert piece["start_s"] == pytest.approx(new_start_s, abs=1.0)
    assert piece["end_s"] == pytest.approx(new_start_s + 35.0, abs=1.0)
    assert piece["repeats_cut"][0]["end_s"] == piece["start_s"] and piece["repeats_cut"][1]["start_s"] == piece["end_s"]
    assert piece["duration_s"] == pytest.approx(piece["end_s"] - piece["start_s"], abs=0.01)
    audio, _ = sf.read(store.local_path(items[piece_id].key) / "audio.wav", dtype="float32")
    placed = np.zeros(b.shape[0], np.float32)
    placed[int(new_start_s * rate) : int(new_start_s * rate) + new.shape[0]] = new[:, 0]
    truth = placed[round(piece["start_s"] * rate) :][: audio.shape[0]]
    assert np.corrcoef(audio[: truth.shape[0], 0], truth)[0, 1] > 0.99

    # Normalize reads the dedupe object of the piece, and the segment itself for the others.
    made_from = store.manifest(store.manifest(items[piece_id].key).inputs[0])
    assert (made_from.stage, made_from.stage_version) == ("dedupe", 1)
    cut_from = store.manifest(made_from.inputs[0])
    assert cut_from.stage == "segment" and cut_from.item == "covers/b.wav#0000"
    assert cut_from.stats["start_s"] + made_from.params["start_s"] == pytest.approx(piece["start_s"], abs=1e-3)
    assert cut_from.stats["start_s"] + made_from.params["end_s"] == pytest.approx(piece["end_s"], abs=1e-3)
    for whole in ("covers/a.wav#0000", "covers/a.wav#0001"):
        assert "repeats_cut" not in items[whole].stats
        assert store.manifest(store.manifest(items[whole].key).inputs[0]).stage == "segment"

    # An unchanged re-run reuses every object and publishes nothing new.
    objects = set(store.object_keys())
    again = build_audio_dataset(**build)
    assert again["ref"] == "covers@1" and not again["created"]
    assert again["stages"]["dedupe"] == {"computed": 0, "reused": 1, "failed": 1}
    assert again["stages"]["normalize"] == {"computed": 0, "reused": 3, "failed": 0}
    assert set(store.object_keys()) == objects


def test_dataset_audio_cli_publishes_then_reports_unchanged(recordings, tmp_path):
    argv = ["--store", str(tmp_path / "store"), "dataset", "audio", str(recordings / "sonatas"), "--name", "cli-rec",
            "--min-segment-s", "24", "--max-segment-s", "60"]
    code, out, _ = run_cli(*argv, "--json")
    first = json.loads(out)
    assert code == 0 and first["ref"] == "cli-rec@1" and first["items"] == 2 and first["failures"] == 0
    code, out, _ = run_cli(*argv)
    assert code == 0 and out.startswith("unchanged cli-rec@1: 2 segments, 0 dropped")

    code, _, err = run_cli(*argv[:-4], "--min-segment-s", "10")
    assert code == 2 and err.startswith("musika-piano: ") and "GAN window" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "noise.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    code, _, err = run_cli("--store", str(tmp_path / "store"), "dataset", "audio", str(empty), "--name", "nothing")
    assert code == 2 and "all 1 items failed" in err and "not_audio" in err


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the crawl stage needs ffmpeg")
def test_dataset_youtube_cli_publishes_a_direct_media_url(tmp_path):
    with media_server() as server:
        server.files["/media/piece.wav"] = (audio_bytes(compilation([piano_like(PIECE_S, 7)]), 44100), "audio/wav")
        argv = ["--store", str(tmp_path / "store"), "dataset", "youtube", server.url("/media/piece.wav"),
                "--name", "cli-yt", "--min-segment-s", "24", "--max-segment-s", "60",
                "--sleep-between-downloads-s", "0", "--retries", "0", "--max-items", "5"]
        code, out, err = run_cli(*argv, "--json")
        assert code == 0, err
        result = json.loads(out)
        assert result["ref"] == "cli-yt@1" and result["items"] == 1
        assert result["stages"]["download"] == {"computed": 1, "reused": 0, "failed": 0}
        code, _, err = run_cli(*argv[:4], "not-a-source", "--name", "cli-yt")
        assert code == 2 and "not-a-source" in err
