"""Damage in the store: verify says what to do, a repair moves it to quarantine, the existence
check refuses damaged objects, a corrupt version file harms only its dataset, verify checks the
objects an object was made from, export refuses a corrupt file."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import fsspec
import pytest

import tasks.store as store_api
from tasks.pipeline.models import AUTOENCODER_ITEM, GAN_ITEM, list_models
from tasks.store import (
    MANIFEST_NAME,
    ArtifactStore,
    CorruptManifestError,
    DatasetItem,
    StoreError,
    VersionNotFoundError,
)
from tests.tasks.store.helpers.objects import flip_byte, object_dir, put

REPAIR = "musika-piano store verify --repair"
RAW_DIGEST = "sha256:" + "7" * 64


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


def two_stages(store: ArtifactStore) -> tuple[str, str]:
    """A render object made from a raw file, a normalize object made from it, and a dataset of
    each (``rendered`` lists the render object, ``normalized`` the normalize object)."""
    rendered = put(store, "render", bytes(range(256)) * 16, inputs=[RAW_DIGEST], item="song")
    normalized = put(store, "normalize", bytes(range(255, -1, -1)) * 16, inputs=[rendered], item="song")
    store.publish_dataset("rendered", stage="render", params={}, items=[DatasetItem("song", rendered)])
    store.publish_dataset(
        "normalized", stage="normalize", params={}, items=[DatasetItem("song", normalized)]
    )
    return rendered, normalized


def quarantine_dirs(store: ArtifactStore) -> list[Path]:
    folder = store.backend.path("quarantine")
    return sorted(folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------------- flipped bytes


def test_verify_reports_a_flipped_byte_and_says_to_repair_without_moving_anything(store):
    _, normalized = two_stages(store)
    flip_byte(object_dir(store, normalized) / "data.bin")

    report = store.verify()
    [problem] = report.problems
    assert (problem.kind, problem.subject, problem.path) == ("checksum_mismatch", normalized, "data.bin")
    assert REPAIR in problem.fix and "normalized (stage normalize)" in problem.fix
    assert REPAIR in report.next_steps[0] and "1 damaged object(s) to quarantine" in report.next_steps[0]
    assert any("re-run the build of dataset normalized" in step for step in report.next_steps)
    assert report.repairs == [] and report.quarantine is None
    assert quarantine_dirs(store) == [] and (object_dir(store, normalized) / "data.bin").exists()
    json.dumps(report.to_dict())


def test_repair_quarantines_a_damaged_object_and_names_the_versions_that_need_it(store):
    rendered, normalized = two_stages(store)
    flip_byte(object_dir(store, rendered) / "data.bin")

    report = store.verify(repair=True)
    assert [problem.kind for problem in report.problems] == ["checksum_mismatch"]
    [repair] = report.repairs
    assert (repair.kind, repair.subject, repair.stage, repair.item) == ("object", rendered, "render", "song")
    assert repair.referenced_by == ["normalized@1", "rendered@1"]  # directly, and through an input
    assert "re-run the build of dataset normalized (stage normalize), rendered (stage render)" in repair.rebuild
    assert "sha256" in repair.reason and repair.moved_to in report.problems[0].fix

    [folder] = quarantine_dirs(store)
    assert report.quarantine == folder.as_uri() and repair.moved_to == (folder / "objects" / rendered).as_uri()
    assert (folder / "objects" / rendered / "data.bin").read_bytes() != bytes(range(256)) * 16
    note = json.loads((folder / "repair.json").read_text())
    assert [entry["subject"] for entry in note["repairs"]] == [rendered]
    assert not object_dir(store, rendered).exists() and not store.has(rendered)

    after = store.verify()
    assert {(problem.kind, problem.subject) for problem in after.problems} == {
        ("dataset_missing_object", "rendered@1"),
        ("missing_input", normalized),
    }
    rebuilt = put(store, "render", bytes(range(256)) * 16, inputs=[RAW_DIGEST], item="song")
    assert rebuilt == rendered and store.verify().ok
    store.gc(min_age_seconds=0)
    assert quarantine_dirs(store) == [folder]  # gc never treats the quarantine as objects


@pytest.mark.parametrize("damage", ["truncate", "delete", "manifest", "flip"])
def test_the_existence_check_refuses_a_damaged_object_and_a_publish_replaces_it(store, damage):
    payload = bytes(range(256)) * 16
    key = put(store, "render", payload, params={"p": 1})
    folder = object_dir(store, key)
    if damage == "truncate":
        (folder / "data.bin").write_bytes(payload[:100])
    elif damage == "delete":
        (folder / "data.bin").unlink()
    elif damage == "manifest":
        (folder / MANIFEST_NAME).write_text('{"key": ')
    else:
        flip_byte(folder / "data.bin")

    if damage == "flip":  # same size: only a re-hash (verify, export) sees it, has() does not
        assert store.has(key) and store.damage(key) is None
        store.verify(repair=True)
    else:
        assert not store.has(key)
        assert key in store.damage(key) and "damaged" in store.damage(key)
        with pytest.raises(store_api.CorruptObjectError, match=REPAIR):
            store.local_path(key)
    assert not store.has(key)

    with store.publish_object("render", 1, {"p": 1}, []) as again:
        (again.dir / "data.bin").write_bytes(payload)
    assert again.key == key and not again.reused
    assert store.has(key) and store.verify([key]).ok
    assert (store.local_path(key) / "data.bin").read_bytes() == payload
    [quarantined] = quarantine_dirs(store)
    assert (quarantined / "objects" / key).is_dir() and (quarantined / "repair.json").exists()


def test_a_dataset_listing_a_damaged_object_is_not_published(store):
    key = put(store, "render", b"x" * 4096)
    (object_dir(store, key) / "data.bin").write_bytes(b"short")
    with pytest.raises(store_api.MissingObjectsError, match="damaged"):
        store.publish_dataset("set", stage="render", params={}, items=[DatasetItem("a", key)])


def test_repair_moves_only_stray_files_out_of_an_intact_object(store):
    key = put(store, "render", b"fine" * 100)
    store.publish_dataset("set", stage="render", params={}, items=[DatasetItem("a", key)])
    (object_dir(store, key) / "stray.txt").write_text("who put this here")
    [problem] = store.verify().problems
    assert problem.kind == "unexpected_file" and REPAIR in problem.fix

    [repair] = store.verify(repair=True).repairs
    assert (repair.kind, repair.subject) == ("stray_files", key)
    assert not (object_dir(store, key) / "stray.txt").exists() and store.has(key)
    [folder] = quarantine_dirs(store)
    assert (folder / "objects" / key / "stray.txt").read_text() == "who put this here"
    assert store.verify().ok


# ---------------------------------------------------------------------------- version files


def truncate_version(store: ArtifactStore, name: str, version: int) -> Path:
    path = store.backend.path(f"datasets/{name}/versions/{version:06d}.json")
    path.write_bytes(path.read_bytes()[:40])
    return path


def test_a_truncated_version_file_harms_only_its_dataset(store):
    key_a = put(store, "render", b"a" * 100)
    key_b = put(store, "render", b"b" * 100)
    store.publish_dataset("intact", stage="render", params={}, items=[DatasetItem("a", key_a)])
    store.publish_dataset("broken", stage="render", params={}, items=[DatasetItem("b", key_b)])
    path = truncate_version(store, "broken", 1)

    listed = {summary.name: summary for summary in store.list_datasets()}
    assert set(listed) == {"intact", "broken"}
    assert listed["intact"].problems == [] and listed["intact"].corrupt_versions == []
    assert listed["broken"].corrupt_versions == [1] and listed["broken"].created_at is None
    assert "version 1 is unreadable" in listed["broken"].problems[0]
    json.dumps([summary.to_dict() for summary in listed.values()])
    [line] = store.list_versions("broken")
    assert line.problem.startswith("unreadable") and line.items is None

    for call in (lambda: store.show("broken@1"), lambda: store.resolve("broken")):
        with pytest.raises(CorruptManifestError) as caught:
            call()
        assert str(path.as_uri()) in str(caught.value) and REPAIR in str(caught.value)
    with pytest.raises(store_api.CorruptVersionError):
        store.gc(min_age_seconds=0)  # which objects version 1 lists is unknown: delete nothing

    again = store.publish_dataset("broken", stage="render", params={}, items=[DatasetItem("b", key_b)])
    assert again.created and again.version == 2
    assert len(again.notes) == 1 and again.notes[0].startswith("version 1's file is unreadable")
    assert store.resolve("broken").notes == again.notes
    assert store.resolve("intact@1").notes == [] and "notes" not in json.loads(
        store.backend.path("datasets/intact/versions/000001.json").read_text()
    )


def test_list_models_leaves_out_an_unreadable_version_and_lists_the_others(store):
    autoencoder = put(store, "import", b"encoder" * 64, item=AUTOENCODER_ITEM)
    gan = put(store, "import", b"generator" * 64, item=GAN_ITEM)
    networks = [DatasetItem(AUTOENCODER_ITEM, autoencoder), DatasetItem(GAN_ITEM, gan)]
    store.publish_dataset("model-a", stage="import", params={"epoch": 1}, items=networks)
    store.publish_dataset("model-a", stage="import", params={"epoch": 2}, items=networks)
    store.publish_dataset("model-b", stage="import", params={}, items=[DatasetItem(GAN_ITEM, gan)])
    song = put(store, "render", b"song" * 64, item="song")
    store.publish_dataset("audio", stage="render", params={}, items=[DatasetItem("song", song)])
    truncate_version(store, "model-a", 2)

    listed = {model.ref: model for model in list_models(store)}
    assert list(listed) == ["model-a@1", "model-b@1"]  # model-a@2 unreadable, audio not a model
    assert (listed["model-a@1"].autoencoder_key, listed["model-a@1"].gan_key) == (autoencoder, gan)
    assert (listed["model-b@1"].autoencoder_key, listed["model-b@1"].gan_key) == (None, gan)


def test_verify_reports_a_corrupt_version_file_and_repair_moves_it_without_reusing_its_number(store):
    key = put(store, "render", b"c" * 100)
    other = put(store, "render", b"d" * 100)
    store.publish_dataset("set", stage="render", params={}, items=[DatasetItem("a", key)])
    store.publish_dataset("set", stage="render", params={}, items=[DatasetItem("a", other)])
    truncate_version(store, "set", 2)

    [problem] = store.verify().problems
    assert (problem.kind, problem.subject) == ("corrupt_dataset", "set@2")
    assert problem.path == "datasets/set/versions/000002.json" and REPAIR in problem.fix

    report = store.verify(repair=True)
    [repair] = report.repairs
    assert (repair.kind, repair.subject) == ("dataset_version", "set@2")
    assert store.version_numbers("set") == [1] and store.verify().ok
    with pytest.raises(VersionNotFoundError, match="quarantine"):
        store.show("set@2")

    third = store.publish_dataset("set", stage="render", params={}, items=[DatasetItem("a", other)])
    assert third.version == 3 and "version 2 was moved to quarantine" in third.notes[0]


# ---------------------------------------------------------------------------- inputs


def test_verify_reports_a_missing_intermediate_object(store):
    rendered = put(store, "render", b"rendered audio" * 50, inputs=[RAW_DIGEST], item="song")
    normalized = put(store, "normalize", b"normalized audio" * 50, inputs=[rendered], item="song")
    store.publish_dataset(
        "normalized", stage="normalize", params={}, items=[DatasetItem("song", normalized)]
    )
    assert store.verify().ok
    store.delete_object(rendered)

    for report in (store.verify(), store.verify([normalized])):
        [problem] = report.problems
        assert (problem.kind, problem.subject, problem.path) == ("missing_input", normalized, rendered)
        assert "normalize object" in problem.detail
        assert "re-run the build of dataset normalized" in problem.fix
    assert any("normalized" in step for step in store.verify().next_steps)


def test_a_source_digest_input_shaped_like_an_object_key_is_not_a_missing_input(store):
    # Render objects take the sha256 of their MIDI file and soundfont as inputs: 64 hex digits,
    # like an object key. Only inputs that were objects when the object was published count.
    source_digest = "ab" * 32
    rendered = put(store, "render", b"rendered audio" * 50, inputs=[source_digest], item="song")
    store.publish_dataset("rendered", stage="render", params={}, items=[DatasetItem("song", rendered)])
    assert store.manifest(rendered).input_objects == []
    assert store.verify().ok


# ---------------------------------------------------------------------------- export


def test_export_refuses_a_corrupt_file_and_leaves_nothing(store, tmp_path):
    good = put(store, "render", b"good audio " * 100, item="a")
    bad = put(store, "render", b"bad audio " * 100, item="b")
    store.publish_dataset(
        "set", stage="render", params={}, items=[DatasetItem("a", good), DatasetItem("b", bad)]
    )
    flip_byte(object_dir(store, bad) / "data.bin")

    dest = tmp_path / "out" / "deeper" / "piano"
    with pytest.raises(StoreError) as caught:
        store.export("set", dest)
    error = caught.value
    assert isinstance(error, store_api.CorruptObjectError)
    assert (error.key, error.item_id, error.path) == (bad, "b", "data.bin")
    assert error.expected != error.actual and error.expected.startswith("sha256:")
    assert REPAIR in str(error) and "'b'" in str(error) and "nothing was exported" in str(error)
    assert not (tmp_path / "out").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(store_api.CorruptObjectError):
        store.export("set@1", empty)
    assert list(empty.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["empty", "store"]


# ---------------------------------------------------------------------------- fsspec path


def test_repair_and_republish_on_a_memory_filesystem(tmp_path):
    root = f"memory://store-repair-{uuid.uuid4().hex}"
    store = ArtifactStore(root, cache_dir=tmp_path / "cache")
    fs = fsspec.filesystem("memory")
    key = put(store, "render", b"remote audio" * 10, params={"x": 1})
    store.publish_dataset("remote", stage="render", params={}, items=[DatasetItem("song", key)])
    fs.pipe(f"{store.object_uri(key)}/data.bin", b"short")
    assert not store.has(key)

    [repair] = store.verify(repair=True).repairs
    assert repair.referenced_by == ["remote@1"] and repair.moved_to.startswith("memory://")
    assert fs.cat(f"{repair.moved_to}/data.bin") == b"short"
    assert not fs.exists(store.object_uri(key))

    with store.publish_object("render", 1, {"x": 1}, []) as again:
        (again.dir / "data.bin").write_bytes(b"remote audio" * 10)
    assert again.key == key and not again.reused and store.verify().ok
    fs.rm(root, recursive=True)
