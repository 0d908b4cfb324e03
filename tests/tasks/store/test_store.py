"""The artifact store: keys, atomic publish (also under SIGKILL and concurrent processes),
dataset versions, refs and tags, diff, verify, gc, export, and the fsspec (memory://) path."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import fsspec
import pytest

from tasks.store import (
    EXPORT_MANIFEST_NAME,
    MANIFEST_NAME,
    MARKER_NAME,
    ArtifactStore,
    CanonicalJSONError,
    DatasetItem,
    DatasetNotFoundError,
    DestinationNotEmptyError,
    DuplicateItemError,
    Failure,
    InvalidKeyError,
    InvalidLineageError,
    InvalidNameError,
    MissingObjectsError,
    ObjectNotFoundError,
    ReservedFileNameError,
    TagNotFoundError,
    VersionNotFoundError,
    default_store_root,
    file_digest,
    object_key,
    parse_ref,
)
from tests.tasks.store.helpers.objects import put

PROJECT_ROOT = Path(__file__).resolve().parents[3]
WORKER = Path(__file__).parent / "helpers" / "store_worker.py"


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


def object_dirs(store: ArtifactStore) -> list[Path]:
    return sorted(path for path in (store.backend.path("objects")).glob("*/*") if path.is_dir())


def worker(root: Path | str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(root), *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_together(processes_and_ready: list[tuple[subprocess.Popen, Path]], go_flag: Path) -> None:
    deadline = time.monotonic() + 60
    for process, ready in processes_and_ready:
        while not ready.exists():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "worker never became ready"
            time.sleep(0.01)
    go_flag.touch()


def finish(process: subprocess.Popen) -> object:
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    return json.loads(stdout)


# ---------------------------------------------------------------------------- keys


def test_object_key_is_the_sha256_of_the_canonical_json():
    expected_json = (
        '{"inputs":[],"params":{"a":1,"b":[0.5,"x"]},"stage":"render","stage_version":2}'
    )
    expected = hashlib.sha256(expected_json.encode()).hexdigest()
    assert object_key("render", 2, {"b": (0.5, "x"), "a": 1.0}, []) == expected


def test_object_key_is_stable_and_changes_with_every_part():
    digest_a = "sha256:" + "a" * 64
    digest_b = "sha256:" + "b" * 64
    params = {"lufs": -20.0, "nested": {"x": 1, "y": [1, 2]}, "name": "piano"}
    base = object_key("normalize", 1, params, [digest_a, digest_b])

    reordered = {"name": "piano", "nested": {"y": [1, 2], "x": 1}, "lufs": -20}
    assert object_key("normalize", 1, reordered, (digest_a, digest_b)) == base

    variants = [
        object_key("normalize2", 1, params, [digest_a, digest_b]),
        object_key("normalize", 2, params, [digest_a, digest_b]),
        object_key("normalize", 1, {**params, "lufs": -20.5}, [digest_a, digest_b]),
        object_key("normalize", 1, {**params, "extra": None}, [digest_a, digest_b]),
        object_key(
            "normalize", 1, {**params, "nested": {"x": 1, "y": [2, 1]}}, [digest_a, digest_b]
        ),
        object_key("normalize", 1, params, [digest_b, digest_a]),
        object_key("normalize", 1, params, [digest_a]),
        object_key("normalize", 1, params, [digest_a, "c" * 64]),
        object_key("normalize", 1, {**params, "lufs": -20.000000000001}, [digest_a, digest_b]),
    ]
    assert len({base, *variants}) == len(variants) + 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"gain": math.nan}, "params.gain is nan"),
        ({"peak": {"ceiling": -math.inf}}, "params.peak.ceiling is -inf"),
        ({"where": Path("/tmp")}, "params.where is a PosixPath"),
        ({"set": {1, 2}}, "params.set is a set"),
        ({"table": {1: "x"}}, "only string keys"),
    ],
)
def test_object_key_rejects_values_that_are_not_canonical_json(params, message):
    with pytest.raises(CanonicalJSONError, match=message):
        object_key("render", 1, params, [])


def test_object_key_rejects_bad_stage_version_and_inputs():
    with pytest.raises(InvalidNameError, match="stage name 'Render'"):
        object_key("Render", 1, {}, [])
    with pytest.raises(InvalidNameError, match="stage_version"):
        object_key("render", "1", {}, [])  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError, match="'/path/to/file.mid' is neither"):
        object_key("render", 1, {}, ["/path/to/file.mid"])
    with pytest.raises(InvalidKeyError, match="sequence"):
        object_key("render", 1, {}, "a" * 64)  # type: ignore[arg-type]


def test_file_digest_streams_a_file_larger_than_one_chunk(tmp_path):
    payload = os.urandom(3 * (1 << 20) + 5)
    path = tmp_path / "source.wav"
    path.write_bytes(payload)
    assert file_digest(path) == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert file_digest(str(path)) == file_digest(path)


def test_default_store_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MUSIKA_PIANO_DATA", str(tmp_path / "elsewhere"))
    assert default_store_root() == str(tmp_path / "elsewhere")
    assert ArtifactStore().root == (tmp_path / "elsewhere").as_uri()
    monkeypatch.delenv("MUSIKA_PIANO_DATA")
    assert Path(default_store_root()) == PROJECT_ROOT / "data" / "store"
    assert (PROJECT_ROOT / "pyproject.toml").exists()


# ---------------------------------------------------------------------------- objects


def test_publish_writes_files_manifest_and_marker(store):
    source = "sha256:" + "1" * 64
    with store.publish_object(
        "render", 3, {"rate": 44100}, [source], item="song-1", extra={"by": "t"}
    ) as obj:
        (obj.dir / "audio.wav").write_bytes(b"RIFF" + bytes(1000))
        (obj.dir / "meta").mkdir()
        (obj.dir / "meta" / "notes.txt").write_text("hello")
        obj.stats["duration_s"] = 12.5
        assert not store.has(obj.key)
    assert obj.key == object_key("render", 3, {"rate": 44100}, [source])
    assert store.has(obj.key) and not obj.reused

    manifest = store.manifest(obj.key)
    assert manifest == obj.manifest
    assert (manifest.stage, manifest.stage_version, manifest.item) == ("render", 3, "song-1")
    assert manifest.params == {"rate": 44100} and manifest.inputs == [source]
    assert manifest.stats == {"duration_s": 12.5} and manifest.extra == {"by": "t"}
    assert manifest.files["audio.wav"].size == 1004
    assert manifest.files["audio.wav"].sha256 == hashlib.sha256(b"RIFF" + bytes(1000)).hexdigest()
    assert manifest.files["meta/notes.txt"].size == 5
    assert set(manifest.files) == {"audio.wav", "meta/notes.txt"}
    created = datetime.fromisoformat(manifest.created_at)
    assert created.utcoffset() == timedelta(0) and abs(created.timestamp() - time.time()) < 60

    folder = store.local_path(obj.key)
    assert (folder / "meta" / "notes.txt").read_text() == "hello"
    assert {MANIFEST_NAME, MARKER_NAME} <= {path.name for path in folder.iterdir()}
    assert json.loads((folder / MANIFEST_NAME).read_text())["key"] == obj.key
    assert store.object_uri(obj.key) == folder.as_uri()
    assert list(store.backend.path("tmp").iterdir()) == []
    json.dumps(manifest.to_dict())


def test_exception_inside_publish_leaves_nothing(store):
    with (
        pytest.raises(RuntimeError, match="decoder exploded"),
        store.publish_object("render", 1, {}, [], item="bad") as obj,
    ):
        (obj.dir / "audio.wav").write_bytes(bytes(5000))
        raise RuntimeError("decoder exploded")
    assert not store.has(obj.key)
    assert object_dirs(store) == []
    assert list(store.backend.path("tmp").iterdir()) == []
    with pytest.raises(ObjectNotFoundError, match=obj.key):
        store.manifest(obj.key)
    with pytest.raises(ObjectNotFoundError):
        store.local_path(obj.key)


@pytest.mark.parametrize("reserved", [MANIFEST_NAME, MARKER_NAME])
def test_reserved_file_names_are_refused(store, reserved):
    with (
        pytest.raises(ReservedFileNameError, match=reserved),
        store.publish_object("render", 1, {}, []) as obj,
    ):
        (obj.dir / reserved).write_text("mine")
    assert not store.has(obj.key) and object_dirs(store) == []


def test_non_json_stats_are_refused_and_nothing_is_published(store):
    with (
        pytest.raises(CanonicalJSONError, match="loudness is -inf"),
        store.publish_object("normalize", 1, {}, []) as obj,
    ):
        (obj.dir / "audio.wav").write_bytes(b"x")
        obj.stats["loudness"] = -math.inf
    assert not store.has(obj.key) and object_dirs(store) == []


def test_killed_publisher_leaves_nothing_visible_and_the_key_can_be_published_again(
    store, tmp_path
):
    started = tmp_path / "started"
    process = worker(store.backend.root, "publish-slow", str(started))
    deadline = time.monotonic() + 60
    while not started.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL

    staging = Path(started.read_text())
    assert staging.parent == store.backend.path("tmp")
    assert (staging / "big.bin").stat().st_size >= 1 << 20  # it was killed in the middle of writing
    key = object_key("slow", 1, {"size": "large"}, [])
    assert not store.has(key)
    assert object_dirs(store) == []
    assert store.object_keys() == []

    with store.publish_object("slow", 1, {"size": "large"}, [], item="victim") as obj:
        (obj.dir / "big.bin").write_bytes(b"complete")
    assert obj.key == key and store.has(key) and not obj.reused
    assert (store.local_path(key) / "big.bin").read_bytes() == b"complete"
    assert store.verify().ok

    store.publish_dataset("kept", stage="slow", params={}, items=[DatasetItem("victim", key)])
    report = store.gc(min_age_seconds=0)
    assert report.removed_staging == 1 and report.garbage_bytes >= 1 << 20
    assert not staging.exists() and store.has(key)


def test_a_directory_without_marker_is_ignored_and_replaced(store):
    key = object_key("render", 1, {"n": 1}, [])
    leftover = store.backend.path(f"objects/{key[:2]}/{key}")
    leftover.mkdir(parents=True)
    (leftover / "audio.wav").write_bytes(b"half written")
    (leftover / "stray.tmp").write_bytes(b"junk")
    assert not store.has(key)
    assert store.object_keys() == []

    with store.publish_object("render", 1, {"n": 1}, []) as obj:
        (obj.dir / "audio.wav").write_bytes(b"the real thing")
    assert store.has(key) and not obj.reused
    assert (leftover / "audio.wav").read_bytes() == b"the real thing"
    assert not (leftover / "stray.tmp").exists()
    assert store.verify([key]).ok


def test_concurrent_publishers_of_the_same_key_keep_exactly_one_whole_object(store, tmp_path):
    rounds = 6
    go = tmp_path / "go"
    ready = [tmp_path / "ready-a", tmp_path / "ready-b"]
    processes = [
        worker(store.backend.root, "race", tag, str(rounds), str(flag), str(go))
        for tag, flag in zip("ab", ready, strict=True)
    ]
    start_together(list(zip(processes, ready, strict=True)), go)
    results_a, results_b = (finish(process) for process in processes)

    for round_a, round_b in zip(results_a, results_b, strict=True):
        key = round_a["key"]
        assert round_b["key"] == key
        assert sorted([round_a["reused"], round_b["reused"]]) == [False, True]
        assert round_a["manifest"] == round_b["manifest"] == store.manifest(key).to_dict()
        folder = store.local_path(key)
        owner = (folder / "owner.txt").read_text()
        winner = round_a if not round_a["reused"] else round_b
        assert winner["manifest"]["stats"]["owner"] == owner
        seed = hashlib.sha256(owner.encode()).digest()
        assert (folder / "big.bin").read_bytes() == seed * (4 * (1 << 20) // len(seed))
    assert len(store.object_keys()) == rounds
    report = store.verify()
    assert report.ok and report.objects_checked == rounds
    assert list(store.backend.path("tmp").iterdir()) == []


def test_publishing_an_existing_key_returns_the_existing_object(store):
    first = put(store, "render", b"first", params={"p": 1})
    with store.publish_object("render", 1, {"p": 1}, []) as obj:
        (obj.dir / "data.bin").write_bytes(b"second")
    assert obj.key == first and obj.reused
    assert obj.manifest == store.manifest(first)
    assert (store.local_path(first) / "data.bin").read_bytes() == b"first"


def test_delete_object(store):
    key = put(store, "render", b"doomed")
    assert store.delete_object(key)
    assert not store.has(key) and object_dirs(store) == []
    assert not store.delete_object(key)
    with pytest.raises(InvalidKeyError):
        store.has("not-a-key")


# ---------------------------------------------------------------------------- datasets


def test_dataset_versions_and_unchanged_republish(store):
    keys = [put(store, "render", f"item {index}".encode()) for index in range(3)]
    items = [
        DatasetItem(f"song-{index}", key, {"duration_s": 30 + index})
        for index, key in enumerate(keys)
    ]
    failure = Failure("song-9", "render", "MIDI without notes")

    first = store.publish_dataset(
        "piano-midi",
        stage="render",
        params={"lufs": -20},
        items=items,
        lineage={"sources": ["folder:a"]},
        stats={"hours": 0.025},
        failures=[failure],
    )
    assert first.created and first.version == 1 and first.ref == "piano-midi@1"
    assert [item.item_id for item in first.items] == ["song-0", "song-1", "song-2"]
    assert first.failures == [failure]
    assert first.totals["items"] == 3 and first.totals["failures"] == 1
    assert first.totals["bytes"] == sum(store.manifest(key).total_bytes for key in keys)

    again = store.publish_dataset(
        "piano-midi",
        stage="render",
        params={"lufs": -20.0},
        items=list(reversed(items)),
        lineage={"sources": ["folder:a"], "code_version": "abc123"},
        stats={"hours": 99},
        failures=[],
    )
    assert not again.created and again.version == 1 and again.content_digest == first.content_digest
    assert store.version_numbers("piano-midi") == [1]

    changed_key = put(store, "render", b"item 1, re-rendered")
    second = store.publish_dataset(
        "piano-midi",
        stage="render",
        params={"lufs": -20},
        items=[items[0], DatasetItem("song-1", changed_key), items[2]],
        lineage={"sources": ["folder:a"]},
    )
    assert second.created and second.version == 2
    third = store.publish_dataset(
        "piano-midi",
        stage="render",
        params={"lufs": -20},
        items=items,
        lineage={"sources": ["folder:b"]},
    )
    assert third.created and third.version == 3
    assert store.resolve("piano-midi").version == 3
    assert store.resolve("piano-midi@1") == replace(first, created=False)

    summaries = store.list_versions("piano-midi")
    assert [summary.version for summary in summaries] == [1, 2, 3]
    assert summaries[0].failures == 1 and summaries[1].items == 3
    [listed] = store.list_datasets()
    assert (listed.name, listed.versions, listed.latest_version) == ("piano-midi", 3, 3)
    assert listed.created_at == first.created_at and listed.latest_created_at == third.created_at
    for record in [first, *summaries, listed]:
        json.dumps(record.to_dict())


def test_publishing_a_dataset_with_missing_objects_is_refused(store):
    present = put(store, "render", b"here")
    absent_a, absent_b = "e" * 64, "f" * 64
    with pytest.raises(MissingObjectsError) as caught:
        store.publish_dataset(
            "broken",
            stage="render",
            params={},
            items=[
                DatasetItem("a", absent_a),
                DatasetItem("b", present),
                DatasetItem("c", absent_b),
            ],
        )
    assert caught.value.missing == [absent_a, absent_b]
    assert absent_a in str(caught.value) and "broken" in str(caught.value)
    assert store.list_datasets() == []
    with pytest.raises(DatasetNotFoundError, match="broken"):
        store.resolve("broken")


def test_dataset_input_validation(store):
    key = put(store, "render", b"x")
    with pytest.raises(InvalidNameError, match="'Piano Set'"):
        store.publish_dataset("Piano Set", stage="render", params={}, items=[])
    with pytest.raises(DuplicateItemError, match="'a' twice"):
        store.publish_dataset(
            "d", stage="render", params={}, items=[DatasetItem("a", key), DatasetItem("a", key)]
        )
    with pytest.raises(InvalidKeyError):
        store.publish_dataset(
            "d", stage="render", params={}, items=[{"item_id": "a", "key": "nope"}]
        )
    with pytest.raises(InvalidLineageError, match="parents"):
        store.publish_dataset(
            "d", stage="render", params={}, items=[], lineage={"parents": "other@1"}
        )
    with pytest.raises(DatasetNotFoundError, match="'ghost'"):
        store.publish_dataset(
            "d", stage="render", params={}, items=[], lineage={"parents": ["ghost@1"]}
        )
    with pytest.raises(CanonicalJSONError, match="stats of item 'a'"):
        store.publish_dataset(
            "d", stage="render", params={}, items=[DatasetItem("a", key, {"lufs": math.nan})]
        )
    assert store.list_datasets() == []


def test_concurrent_dataset_publishes_get_distinct_versions(store, tmp_path):
    key = put(store, "render", b"shared")
    count = 6
    go = tmp_path / "go"
    ready = [tmp_path / "ready-a", tmp_path / "ready-b"]
    processes = [
        worker(store.backend.root, "datasets", "mix", tag, str(count), key, str(flag), str(go))
        for tag, flag in zip("ab", ready, strict=True)
    ]
    start_together(list(zip(processes, ready, strict=True)), go)
    results = [finish(process) for process in processes]

    numbers = [entry["version"] for result in results for entry in result]
    assert all(entry["created"] for result in results for entry in result)
    assert sorted(numbers) == list(range(1, 2 * count + 1))
    for result in results:
        assert [entry["version"] for entry in result] == sorted(
            entry["version"] for entry in result
        )
    writers = {}
    for number in numbers:
        version = store.resolve(f"mix@{number}")
        writers[number] = (version.params["writer"], version.params["index"])
        assert [item.item_id for item in version.items] == [
            f"{version.params['writer']}-{version.params['index']}"
        ]
    assert sorted(writers.values()) == sorted(
        (tag, index) for tag in "ab" for index in range(count)
    )


def test_refs_and_tags(store):
    assert parse_ref("piano") == ("piano", "latest")
    assert parse_ref("piano@latest") == ("piano", "latest")
    assert parse_ref("piano@12") == ("piano", 12)
    assert parse_ref("piano.v2_x-y@best-run") == ("piano.v2_x-y", "best-run")
    for bad in ["", "@3", "Piano", "piano@", "piano@0", "piano@Best", "pi ano", "piano@a@b"]:
        with pytest.raises(InvalidNameError):
            parse_ref(bad)

    key_a, key_b = put(store, "render", b"a"), put(store, "render", b"b")
    store.publish_dataset("piano", stage="render", params={}, items=[DatasetItem("a", key_a)])
    store.publish_dataset("piano", stage="render", params={}, items=[DatasetItem("b", key_b)])

    store.tag("piano", 1, "golden")
    assert store.resolve("piano@golden").version == 1
    assert store.tags("piano") == {"golden": 1}
    store.tag("piano", 2, "golden")
    assert store.resolve("piano@golden").version == 2
    store.tag("piano", 1, "first")
    assert store.show("piano@1").tags == ["first"]
    assert store.list_datasets()[0].tags == {"golden": 2, "first": 1}
    assert [summary.tags for summary in store.list_versions("piano")] == [["first"], ["golden"]]

    for reserved in ["latest", "7"]:
        with pytest.raises(InvalidNameError, match="reserved"):
            store.tag("piano", 1, reserved)
    with pytest.raises(VersionNotFoundError, match="no version 5"):
        store.tag("piano", 5, "nope")
    with pytest.raises(VersionNotFoundError, match="versions: 1-2"):
        store.resolve("piano@3")
    with pytest.raises(DatasetNotFoundError):
        store.tag("other", 1, "x")

    store.untag("piano", "golden")
    with pytest.raises(TagNotFoundError, match="'golden'.*first"):
        store.resolve("piano@golden")
    with pytest.raises(TagNotFoundError):
        store.untag("piano", "golden")


def test_show_resolves_lineage_recursively(store):
    raw = store.publish_dataset(
        "raw",
        stage="render",
        params={},
        items=[DatasetItem("a", put(store, "render", b"r"))],
        lineage={"sources": [{"folder": "/midi", "digest": "sha256:" + "0" * 64}]},
    )
    normalized = store.publish_dataset(
        "normalized",
        stage="normalize",
        params={},
        items=[DatasetItem("a", put(store, "normalize", b"n"))],
        lineage={
            "parents": ["raw"],
            "code_version": "c0ffee",
            "soundfonts": ["sha256:" + "1" * 64],
        },
    )
    assert normalized.lineage.parents == ["raw@1"]
    assert normalized.lineage.extra == {"soundfonts": ["sha256:" + "1" * 64]}
    mixed = store.publish_dataset(
        "mixed",
        stage="mix",
        params={"weights": [0.8, 0.2]},
        items=[DatasetItem("a", put(store, "mix", b"m"))],
        lineage={"parents": ["normalized@latest", "raw@1"]},
    )
    assert mixed.lineage.parents == ["normalized@1", "raw@1"]
    store.tag("mixed", 1, "release")

    shown = store.show("mixed@release")
    assert shown.version.ref == "mixed@1" and shown.tags == ["release"]
    assert [node.ref for node in shown.lineage] == ["normalized@1", "raw@1"]
    [grandparent] = shown.lineage[0].parents
    assert grandparent.ref == "raw@1" and grandparent.sources == raw.lineage.sources
    assert shown.lineage[0].stage == "normalize" and shown.lineage[0].items == 1
    as_dict = shown.to_dict()
    json.dumps(as_dict)
    assert as_dict["name"] == "mixed" and as_dict["tags"] == ["release"]
    assert as_dict["lineage"]["parents"] == ["normalized@1", "raw@1"]
    assert as_dict["lineage_tree"][0]["parents"][0]["ref"] == "raw@1"


def test_diff(store):
    keys = {name: put(store, "render", name.encode()) for name in ["a", "b", "c", "c2", "d"]}
    store.publish_dataset(
        "set",
        stage="render",
        params={"lufs": -20, "render": {"rate": 44100, "gain": 1}},
        items=[
            DatasetItem("a", keys["a"]),
            DatasetItem("b", keys["b"]),
            DatasetItem("c", keys["c"]),
        ],
        stats={"hours": 1.5, "items": 3, "label": "x"},
    )
    store.publish_dataset(
        "set",
        stage="render",
        params={"lufs": -23, "render": {"rate": 44100}, "new": True},
        items=[
            DatasetItem("a", keys["a"]),
            DatasetItem("c", keys["c2"]),
            DatasetItem("d", keys["d"]),
        ],
        stats={"hours": 2.0, "items": 3, "label": "y"},
        failures=[Failure("e", "render", "timeout")],
    )
    diff = store.diff("set@1", "set@2")
    assert (diff.a, diff.b) == ("set@1", "set@2")
    assert diff.added == ["d"] and diff.removed == ["b"] and diff.unchanged == ["a"]
    assert [(change.item_id, change.key_a, change.key_b) for change in diff.changed] == [
        ("c", keys["c"], keys["c2"])
    ]
    stats = {change.path: change for change in diff.stats_deltas}
    assert stats["hours"].delta == pytest.approx(0.5) and stats["items"].delta == 0
    assert (stats["label"].a, stats["label"].b, stats["label"].delta) == ("x", "y", None)
    params = {change.path: (change.a, change.b) for change in diff.params_changes}
    assert params == {"lufs": (-20, -23), "render.gain": (1, None), "new": (None, True)}
    assert (diff.failures_a, diff.failures_b) == (0, 1)
    counts = diff.to_dict()["counts"]
    assert counts == {"added": 1, "removed": 1, "changed": 1, "unchanged": 1}
    json.dumps(diff.to_dict())
    assert store.diff("set@2", "set@2").identical_items


# ---------------------------------------------------------------------------- verify, gc, export


def test_verify_detects_corruption_truncation_deletion_and_strays(store):
    payloads = {
        name: os.urandom(4096)
        for name in ["corrupt", "truncate", "delete", "stray", "manifest", "fine"]
    }
    keys = {name: put(store, "render", payload) for name, payload in payloads.items()}
    store.publish_dataset(
        "set", stage="render", params={}, items=[DatasetItem(n, k) for n, k in keys.items()]
    )
    assert store.verify().ok

    def file_of(name: str) -> Path:
        return store.local_path(keys[name]) / "data.bin"

    flipped = bytearray(payloads["corrupt"])
    flipped[100] ^= 0xFF
    file_of("corrupt").write_bytes(bytes(flipped))
    file_of("truncate").write_bytes(payloads["truncate"][:1000])
    file_of("delete").unlink()
    (store.local_path(keys["stray"]) / "extra.txt").write_text("who put this here")
    (store.local_path(keys["manifest"]) / MANIFEST_NAME).unlink()
    gone = put(store, "render", b"soon gone")
    store.publish_dataset("other", stage="render", params={}, items=[DatasetItem("g", gone)])
    store.delete_object(gone)

    report = store.verify()
    assert not report.ok
    found = {(problem.kind, problem.subject, problem.path) for problem in report.problems}
    assert found == {
        ("checksum_mismatch", keys["corrupt"], "data.bin"),
        ("size_mismatch", keys["truncate"], "data.bin"),
        ("missing_file", keys["delete"], "data.bin"),
        ("unexpected_file", keys["stray"], "extra.txt"),
        ("missing_manifest", keys["manifest"], MANIFEST_NAME),
        ("dataset_missing_object", "other@1", "g"),
    }
    assert report.dataset_versions_checked == 2
    json.dumps(report.to_dict())

    only = store.verify([keys["fine"], keys["corrupt"], gone])
    assert {(problem.kind, problem.subject) for problem in only.problems} == {
        ("checksum_mismatch", keys["corrupt"]),
        ("missing_object", gone),
    }
    assert only.objects_checked == 2 and only.dataset_versions_checked == 0


def _age(path: Path, seconds: float) -> None:
    """Set the modification time of a tree ``seconds`` into the past."""
    past = time.time() - seconds
    for child in [path, *path.rglob("*")]:
        os.utime(child, (past, past))


def test_gc_keeps_reachable_objects_and_their_inputs_and_respects_min_age(store):
    source = put(store, "render", b"source audio " * 100)
    derived = put(store, "normalize", b"normalized", inputs=[source, "sha256:" + "9" * 64])
    orphan_old = put(store, "render", b"an abandoned run " * 50)
    store.publish_dataset("kept", stage="normalize", params={}, items=[DatasetItem("a", derived)])

    stale_staging = store.backend.new_staging_dir("obj-dead-")
    (stale_staging / "partial.wav").write_bytes(bytes(3000))
    _age(stale_staging, 7200)
    leftover_key = "d" * 64
    leftover = store.backend.path(f"objects/dd/{leftover_key}")
    leftover.mkdir(parents=True)
    (leftover / "half.wav").write_bytes(bytes(500))
    _age(leftover, 7200)

    time.sleep(1.2)
    orphan_young = put(store, "render", b"a running pipeline's fresh object")
    fresh_staging = store.backend.new_staging_dir("obj-live-")

    dry = store.gc(dry_run=True, min_age_seconds=1.0)
    assert dry.deleted_objects == [orphan_old]
    assert dry.deleted_bytes == store.manifest(orphan_old).total_bytes
    assert (dry.kept_young_objects, dry.removed_incomplete, dry.removed_staging) == (1, 1, 1)
    assert dry.garbage_bytes == 3500 and dry.reachable_objects == 2
    assert store.has(orphan_old) and stale_staging.exists() and leftover.exists()

    report = store.gc(min_age_seconds=1.0)
    assert report.deleted_objects == [orphan_old] and not report.dry_run
    assert report.bytes_freed == dry.bytes_freed
    assert not store.has(orphan_old)
    assert store.has(source) and store.has(derived) and store.has(orphan_young)
    assert not stale_staging.exists() and not leftover.exists() and fresh_staging.exists()
    assert store.verify().ok
    json.dumps(report.to_dict())

    assert store.gc(min_age_seconds=3600).deleted_objects == []
    assert store.has(orphan_young)


def test_export_writes_a_plain_folder(store, tmp_path):
    item_ids = ["Chopin/Nocturne op.9 no.2", "../escape", "a_b", "a b", ".hidden"]
    items = []
    for index, item_id in enumerate(item_ids):
        with store.publish_object("render", 1, {"i": index}, [], item=item_id) as obj:
            (obj.dir / "audio.wav").write_bytes(f"audio {index}".encode())
            (obj.dir / "sub").mkdir()
            (obj.dir / "sub" / "notes.txt").write_text(item_id)
        items.append(DatasetItem(item_id, obj.key))
    store.publish_dataset("export-me", stage="render", params={}, items=items)

    dest = tmp_path / "out" / "piano"
    assert store.export("export-me", dest) == dest
    document = json.loads((dest / EXPORT_MANIFEST_NAME).read_text())
    assert document["name"] == "export-me" and document["version"] == 1
    folders = document["export"]["folders"]
    assert set(folders) == set(item_ids)
    assert len({name.lower() for name in folders.values()}) == len(item_ids)
    for item_id, folder in folders.items():
        assert "/" not in folder and not folder.startswith(".") and folder
        assert (dest / folder / "sub" / "notes.txt").read_text() == item_id
        assert (dest / folder / "audio.wav").exists()
        assert not (dest / folder / MANIFEST_NAME).exists()
    assert folders["Chopin/Nocturne op.9 no.2"] == "Chopin_Nocturne_op.9_no.2"
    assert sorted(path.name for path in dest.iterdir()) == sorted(
        [*folders.values(), EXPORT_MANIFEST_NAME]
    )
    assert sorted(path.name for path in dest.parent.iterdir()) == ["piano"]

    with pytest.raises(DestinationNotEmptyError, match=str(dest)):
        store.export("export-me", dest)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (store.export("export-me@1", empty) / EXPORT_MANIFEST_NAME).exists()


# ---------------------------------------------------------------------------- fsspec path


def test_memory_filesystem_round_trip(tmp_path):
    root = f"memory://store-test-{uuid.uuid4().hex}"
    store = ArtifactStore(root, cache_dir=tmp_path / "cache")
    assert not store.is_local and store.root == root.replace("memory://", "memory:///")
    fs = fsspec.filesystem("memory")

    with pytest.raises(RuntimeError), store.publish_object("render", 1, {"x": 1}, []) as failed:
        (failed.dir / "audio.wav").write_bytes(b"never")
        raise RuntimeError("boom")
    assert not store.has(failed.key) and not failed.dir.exists()

    key = object_key("render", 1, {"x": 2}, [])
    fs.pipe(f"{store.object_uri(key)}/audio.wav", b"leftover from a killed upload")
    assert not store.has(key)

    with store.publish_object("render", 1, {"x": 2}, [], item="song") as obj:
        (obj.dir / "audio.wav").write_bytes(b"remote audio")
        (obj.dir / "deep").mkdir()
        (obj.dir / "deep" / "stats.json").write_text("{}")
        obj.stats["seconds"] = 1.25
    assert obj.key == key and store.has(key) and not obj.reused
    assert not obj.dir.exists()
    manifest = store.manifest(key)
    assert manifest.item == "song" and manifest.stats == {"seconds": 1.25}
    assert set(manifest.files) == {"audio.wav", "deep/stats.json"}
    assert fs.cat(f"{store.object_uri(key)}/audio.wav") == b"remote audio"

    local = store.local_path(key)
    assert local.is_relative_to(tmp_path / "cache")
    assert (local / "audio.wav").read_bytes() == b"remote audio"
    assert (local / "deep" / "stats.json").read_text() == "{}"
    assert store.local_path(key) == local

    with store.publish_object("render", 1, {"x": 2}, []) as again:
        (again.dir / "audio.wav").write_bytes(b"other")
    assert again.reused and again.manifest == manifest

    version = store.publish_dataset(
        "remote-set", stage="render", params={}, items=[DatasetItem("song", key)]
    )
    assert version.created and store.resolve("remote-set@latest") == store.resolve("remote-set@1")
    assert not store.publish_dataset(
        "remote-set", stage="render", params={}, items=[DatasetItem("song", key)]
    ).created
    store.tag("remote-set", 1, "best")
    assert store.resolve("remote-set@best").version == 1
    assert store.dataset_uri("remote-set", 1).startswith("memory://")

    assert store.verify().ok
    fs.pipe(f"{store.object_uri(key)}/audio.wav", b"remote AUDIO")
    report = store.verify()
    assert [(problem.kind, problem.path) for problem in report.problems] == [
        ("checksum_mismatch", "audio.wav")
    ]

    orphan = object_key("render", 1, {"x": 3}, [])
    with store.publish_object("render", 1, {"x": 3}, []) as obj:
        (obj.dir / "audio.wav").write_bytes(b"orphan")
    assert store.gc(min_age_seconds=0).deleted_objects == [orphan]
    assert not store.has(orphan) and store.has(key)
    fs.rm(root, recursive=True)
