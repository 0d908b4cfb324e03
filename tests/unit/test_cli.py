"""The store-facing CLI commands over a real store populated through the store API."""

from __future__ import annotations

import importlib
import json

import pytest

from flows.cli.commands import _STAGE_ERRORS, main
from tasks.store import ArtifactStore


def _publish(store: ArtifactStore, name: str, contents: dict[str, bytes]) -> str:
    items = []
    for item_id, payload in contents.items():
        with store.publish_object("toy", 1, {"n": len(payload)}, [], item=item_id + payload.hex()) as staged:
            (staged.dir / "audio.wav").write_bytes(payload)
            staged.stats["bytes"] = len(payload)
        items.append({"item_id": item_id, "key": staged.key, "stats": {"bytes": len(payload)}})
    return store.publish_dataset(name, stage="toy", params={}, items=items, stats={"items": len(items)}).ref


@pytest.fixture()
def store(tmp_path) -> ArtifactStore:
    store = ArtifactStore(str(tmp_path / "store"))
    _publish(store, "piano", {"a": b"one", "b": b"two"})
    _publish(store, "piano", {"a": b"one", "c": b"three"})
    return store


def _run(capsys, store: ArtifactStore, *argv: str) -> tuple[int, str, str]:
    code = main(["--store", store.root, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ls_show_and_diff(store, capsys):
    code, out, _ = _run(capsys, store, "dataset", "ls", "--json")
    assert code == 0
    [summary] = json.loads(out)
    assert summary["name"] == "piano" and summary["latest_version"] == 2

    code, out, _ = _run(capsys, store, "dataset", "show", "piano@1", "--json")
    shown = json.loads(out)
    assert shown["version"] == 1 and [item["item_id"] for item in shown["items"]] == ["a", "b"]

    code, out, _ = _run(capsys, store, "dataset", "show", "piano")
    assert code == 0 and out.startswith("piano@2")

    code, out, _ = _run(capsys, store, "dataset", "diff", "piano@1", "piano@2", "--json")
    diff = json.loads(out)
    assert diff["added"] == ["c"] and diff["removed"] == ["b"] and diff["unchanged"] == ["a"]


def test_tag_then_show_by_tag(store, capsys):
    code, out, _ = _run(capsys, store, "dataset", "tag", "piano@1", "baseline")
    assert code == 0 and "piano@1" in out
    code, out, _ = _run(capsys, store, "dataset", "show", "piano@baseline", "--json")
    assert json.loads(out)["version"] == 1


def test_export_writes_a_plain_folder(store, capsys, tmp_path):
    dest = tmp_path / "exported"
    code, out, _ = _run(capsys, store, "dataset", "export", "piano@2", str(dest), "--json")
    assert code == 0 and json.loads(out)["path"] == str(dest)
    wavs = sorted(p.read_bytes() for p in dest.rglob("audio.wav"))
    assert wavs == [b"one", b"three"]
    assert (dest / "dataset.json").exists()


def test_verify_reports_corruption_with_a_failing_exit_code(store, capsys):
    code, out, _ = _run(capsys, store, "store", "verify", "--json")
    assert code == 0 and json.loads(out)["problems"] == []
    version = store.resolve("piano@2")
    (store.local_path(version.items[0].key) / "audio.wav").write_bytes(b"tampered")
    code, out, _ = _run(capsys, store, "store", "verify", "--json")
    problems = json.loads(out)["problems"]
    assert code == 1 and [p["kind"] for p in problems] == ["size_mismatch"]


def test_gc_dry_run_lists_only_unreferenced_objects(store, capsys):
    with store.publish_object("toy", 1, {"orphan": True}, []) as staged:
        (staged.dir / "x").write_bytes(b"x")
    code, out, _ = _run(capsys, store, "store", "gc", "--dry-run", "--min-age-seconds", "0", "--json")
    report = json.loads(out)
    assert code == 0 and report["dry_run"] and report["deleted_objects"] == [staged.key]
    assert store.has(staged.key)


def test_unknown_dataset_is_a_clear_error(store, capsys):
    code, _, err = _run(capsys, store, "dataset", "show", "nope")
    assert code == 2 and "nope" in err


def test_human_output_of_diff_verify_and_gc(store, capsys):
    code, out, _ = _run(capsys, store, "dataset", "diff", "piano@1", "piano@2")
    assert "1 added, 1 removed, 0 changed, 1 unchanged" in out and "  + c" in out
    code, out, _ = _run(capsys, store, "store", "verify")
    assert code == 0 and "0 problems" in out
    code, out, _ = _run(capsys, store, "store", "gc", "--dry-run")
    assert code == 0 and out.startswith("would delete 0 objects")


def test_model_info_reports_the_official_parameter_counts(capsys):
    assert main(["model", "info", "--base-channels", "64", "--json"]) == 0
    networks = json.loads(capsys.readouterr().out)["networks"]
    # Figures from the official files' layout (docs/official-weights.md §4).
    assert networks["generator"]["parameters"] == 4_325_578
    assert networks["critic"]["parameters"] == 5_248_769
    assert networks["decoder1"]["parameters"] == 12_673_291


def test_stage_errors_name_the_modules_that_define_them() -> None:
    """`_STAGE_ERRORS` is keyed by module path strings: a moved module must move its key too, or its
    input errors would print as tracebacks."""
    for module_name, names in _STAGE_ERRORS.items():
        module = importlib.import_module(module_name)
        for name in names:
            assert getattr(module, name).__module__ == module_name, (module_name, name)
