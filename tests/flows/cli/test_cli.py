"""The CLI: the store-facing commands over a real store populated through the store API, a flag
for every field of the stages' Params models, one-line errors, a closed stdout."""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from cyclopts import App
from pydantic import BaseModel

from flows.cli.commands import app, is_user_error, main
from flows.cli.options import params
from musika_model.devices import gpu_visible
from tasks.download.params import CrawlParams
from tasks.normalize.params import LoudnessParams
from tasks.pipeline.params import RunSettings
from tasks.quality.params import QualityParams
from tasks.render.params import RenderParams
from tasks.segment.params import SegmentParams
from tasks.store import ArtifactStore
from tests.helpers import run_cli, write_piano_midi


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


def test_a_corrupt_object_is_refused_by_export_and_repaired_by_verify(store, tmp_path, capsys):
    [item] = [item for item in store.resolve("piano@2").items if item.item_id == "c"]
    audio = store.backend.path(f"objects/{item.key[:2]}/{item.key}/audio.wav")
    audio.write_bytes(b"THREE")  # same size, other bytes

    code, _, err = _run(capsys, store, "dataset", "export", "piano@2", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1 and "store verify --repair" in err
    assert not (tmp_path / "out").exists()

    code, out, _ = _run(capsys, store, "store", "verify")
    assert code == 1 and "checksum_mismatch" in out and "fix:" in out and "--repair" in out
    code, out, _ = _run(capsys, store, "store", "verify", "--repair")
    assert code == 1 and f"moved object {item.key} to " in out and "needed by piano@2" in out
    assert "next: " in out and not audio.exists()
    code, out, _ = _run(capsys, store, "store", "verify", "--json")
    assert code == 1 and [p["kind"] for p in json.loads(out)["problems"]] == ["dataset_missing_object"]


def test_an_unreadable_version_file_marks_only_its_dataset(store, capsys):
    _publish(store, "organ", {"x": b"pipes"})
    store.backend.path("datasets/piano/versions/000002.json").write_text('{"name": "pia')

    code, out, _ = _run(capsys, store, "dataset", "ls")
    assert code == 0 and out.startswith("organ") and "\npiano" in out and "\n  ! " in out
    code, _, err = _run(capsys, store, "dataset", "show", "piano@2")
    assert code == 2 and "000002.json" in err and err.count("\n") == 1
    ref = _publish(store, "piano", {"d": b"four"})
    code, out, _ = _run(capsys, store, "dataset", "show", ref)
    assert ref == "piano@3" and code == 0 and "note: version 2" in out


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
    assert err.startswith("musika-piano: ") and err.count("\n") == 1 and "Traceback" not in err


def test_human_output_of_diff_verify_and_gc(store, capsys):
    code, out, _ = _run(capsys, store, "dataset", "diff", "piano@1", "piano@2")
    assert "1 added, 1 removed, 0 changed, 1 unchanged" in out and "  + c" in out
    code, out, _ = _run(capsys, store, "store", "verify")
    assert code == 0 and "0 problems" in out
    code, out, _ = _run(capsys, store, "store", "gc", "--dry-run")
    assert code == 0 and out.startswith("would delete 0 objects")


def test_a_build_says_why_items_failed_per_stage_and_with_verbose_which(tmp_path):
    """`dataset midi` with a file of drums only and a corrupt one: reason counts per stage in
    --json and in the human output; the failed items themselves with --verbose."""
    import pretty_midi

    folder = tmp_path / "midi"
    for index in range(3):
        write_piano_midi(folder / f"piece-{index}.mid", seconds=3.0, seed=index)
    beat = pretty_midi.PrettyMIDI()
    beat.instruments.append(pretty_midi.Instrument(program=0, is_drum=True))
    beat.instruments[0].notes.extend(pretty_midi.Note(100, 36, 0.5 * i, 0.5 * i + 0.1) for i in range(4))
    beat.write(str(folder / "beat.mid"))
    (folder / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    build = ["--store", str(tmp_path / "store"), "dataset", "midi", str(folder), "--name", "why"]

    code, out, _ = run_cli(*build, "--json")
    result = json.loads(out)
    assert code == 0 and result["items"] == 3 and "failed_items" not in result
    assert result["failures_by_reason"] == {"render": {"corrupt_midi": 1, "no_pitched_notes": 1}}
    code, out, _ = run_cli(*build, "--json", "--verbose")
    failed = {item["item_id"]: item for item in json.loads(out)["failed_items"]}
    assert sorted(failed) == ["midi/beat.mid", "midi/corrupt.mid"]
    assert {item["stage"] for item in failed.values()} == {"render"}
    assert (failed["midi/beat.mid"]["reason"], failed["midi/corrupt.mid"]["reason"]) == ("no_pitched_notes",
                                                                                        "corrupt_midi")
    assert failed["midi/beat.mid"]["message"].startswith(f"{folder / 'beat.mid'}: only drum tracks")

    code, out, _ = run_cli(*build)
    assert code == 0 and out.splitlines()[2:] == ["  render failures: corrupt_midi 1, no_pitched_notes 1"]
    code, out, _ = run_cli(*build, "--verbose")
    assert out.splitlines()[2:] == [
        "  render failures: corrupt_midi 1, no_pitched_notes 1",
        f"    midi/beat.mid: no_pitched_notes: {failed['midi/beat.mid']['message']}",
        f"    midi/corrupt.mid: corrupt_midi: {failed['midi/corrupt.mid']['message']}",
    ]


def test_model_info_reports_the_official_parameter_counts(capsys):
    assert main(["model", "info", "--base-channels", "64", "--json"]) == 0
    networks = json.loads(capsys.readouterr().out)["networks"]
    # Figures from the official files' layout (docs/official-weights.md §4).
    assert networks["generator"]["parameters"] == 4_325_578
    assert networks["critic"]["parameters"] == 5_248_769
    assert networks["decoder1"]["parameters"] == 12_673_291


@pytest.mark.parametrize("module_name, name", [
    ("tasks.render.core", "RenderError"), ("musika_model.official", "OfficialWeightsError"),
    ("tasks.download.core", "InvalidSource"), ("tasks.pipeline.models", "NotAModelError"),
    ("tasks.train.config", "TrainingInputError"), ("tasks.train.autoencoder", "AutoencoderStageError"),
    ("tasks.train.autoencoder", "AutoencoderDivergedError"), ("musika_model.checkpoints", "CheckpointError"),
    ("musika_model.train_config", "TrainConfigError"), ("musika_model.training", "TrainingDiverged"),
    ("musika_model.training_data", "TrainingDataError"), ("musika_model.devices", "DeviceUnavailableError"),
    ("musika_model.audio", "AudioError"), ("musika_model.codec", "CodecError"),
    ("musika_model.generation", "GenerationError"), ("flows.app.listening", "ListeningError"),
])
def test_every_stage_input_error_is_a_one_line_user_error(module_name: str, name: str) -> None:
    """The stages' input errors reach the CLI through the stage registry (and the app's through
    its module): each prints one line and exits 2, never a traceback."""
    error_class = getattr(importlib.import_module(module_name), name)
    assert is_user_error(error_class.__new__(error_class))


def test_an_os_fault_is_not_a_user_error() -> None:
    assert not is_user_error(OSError(28, "No space left on device"))


def _commands(group: App, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], App]]:
    """Every runnable command under `group`, with its words."""
    for name in group:
        if not name.startswith("-"):
            command = group[name]
            if command.default_command is None:
                yield from _commands(command, (*path, name))
            else:
                yield (*path, name), command


def test_every_field_of_every_params_model_a_command_takes_has_its_own_flag():
    """The flags come from the models: a field added to a model is a flag of every command that
    takes the model, with its description and default as help. A name two models share would
    silently reach only one of them (cyclopts binds the first), so no two flags share a name."""
    models_seen = set()
    for words, command in _commands(app):
        arguments = command.assemble_argument_collection(default_parameter=app.default_parameter)
        names = [name for argument in arguments if argument.parse and not argument.children
                 for name in argument.names]
        assert len(names) == len(set(names)), (words, sorted({n for n in names if names.count(n) > 1}))
        for argument in arguments:
            if argument.keys or not (isinstance(argument.hint, type) and issubclass(argument.hint, BaseModel)):
                continue
            model = argument.hint.__bases__[0]
            models_seen.add(model.__name__)
            for name, field in model.model_fields.items():
                [flag] = [child for child in argument.children if child.keys == (name,)]
                if model is RunSettings and name == "store":
                    assert not flag.parse  # the global --store
                    continue
                assert flag.parse and flag.show and flag.name.startswith("--"), (words, model.__name__, name)
                assert field.description and field.description in flag.parameter.help, (words, name)
                if field.default is not None and field.annotation is not bool:
                    assert flag.show_default, (words, name)
    assert models_seen == {"RenderParams", "LoudnessParams", "SegmentParams", "QualityParams", "CrawlParams",
                           "RunSettings", "GanTrainingParams", "AutoencoderTrainingParams", "GenerateParams",
                           "EvaluateParams"}


def _bound(*argv: str) -> dict:
    """What `musika-piano ARGV` binds its command to (parsed, not run)."""
    _, bound, _ = app.parse_args(list(argv), exit_on_error=False, print_error=False)
    bound.apply_defaults()
    return bound.arguments


def test_a_partial_flag_set_keeps_the_models_defaults():
    given = _bound("dataset", "youtube", "ytsearch2:piano", "--name", "yt", "--target-lufs", "-23",
                   "--min-duration-s", "60", "--no-deduplicate", "--batch-size", "8")
    assert params(given["loudness"]) == LoudnessParams(target_lufs=-23.0)
    assert params(given["crawl"]) == CrawlParams(min_duration_s=60.0)
    assert params(given["quality"]) == QualityParams(deduplicate=False)
    assert params(given["segment"]) == SegmentParams()
    assert params(given["run"], store="s") == RunSettings(store="s", batch_size=8)
    # The old spellings are aliases; list fields take a repeated flag.
    given = _bound("dataset", "midi", "a.mid", "--name", "m", "--soundfont", "a.sf2", "--soundfonts", "b.sf2",
                   "--transpose", "-2", "--transpose", "3", "--force-piano", "--lufs", "-18", "--peak-ceiling", "-2")
    assert params(given["render"]) == RenderParams(soundfonts=["a.sf2", "b.sf2"], transpose=[-2, 3], force_piano=True)
    assert params(given["loudness"]) == LoudnessParams(target_lufs=-18.0, peak_ceiling_dbfs=-2.0)
    given = _bound("dataset", "audio", "rec", "--name", "r", "--min-segment", "40", "--max-segment", "90",
                   "--min-bandwidth", "0", "--keep-duplicates")
    assert params(given["segment"]) == SegmentParams(min_segment_s=40.0, max_segment_s=90.0)
    assert params(given["quality"]) == QualityParams(min_bandwidth_hz=0.0, deduplicate=False)


@pytest.mark.parametrize("argv", [
    ["dataset", "midi", "a.mid"],  # --name missing
    ["dataset", "midi", "a.mid", "--name", "m", "--bogus"],
    ["dataset", "midi", "a.mid", "--name", "m", "--velocity-scale", "loud"],
    ["dataset", "midi", "a.mid", "--name", "m", "--velocity-scale", "9"],  # above its bound
    ["dataset", "midi", "a.mid", "--name", "m", "--target-lufs", "-6", "--peak-ceiling-dbfs", "-8"],
    ["dataset", "nope"],
    ["store", "gc", "--min-age-seconds"],
    ["app", "--port", "70000"],
])
def test_a_bad_command_line_is_one_line_with_exit_code_2(argv, capsys, tmp_path):
    code = main(["--store", str(tmp_path / "store"), *argv])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith("musika-piano: ") and captured.err.count("\n") == 1
    assert "╭" not in captured.err and "Traceback" not in captured.err


def test_a_refused_value_names_its_flag(capsys, tmp_path):
    assert main(["--store", str(tmp_path), "dataset", "audio", "rec", "--name", "r", "--batch-size", "0"]) == 2
    assert capsys.readouterr().err == (
        "musika-piano: --batch-size: Input should be greater than or equal to 1 (got '0')\n")


def test_a_closed_stdout_ends_quietly(store, monkeypatch):
    """`musika-piano dataset show X | head -3`: the reader goes away, the command ends without a
    BrokenPipeError, now or when Python flushes stdout at exit."""
    reader, writer = os.pipe()
    os.close(reader)
    closed = os.fdopen(writer, "w")
    errors = io.StringIO()
    monkeypatch.setattr(sys, "stdout", closed)
    monkeypatch.setattr(sys, "stderr", errors)
    try:
        assert main(["--store", store.root, "dataset", "show", "piano", "--json"]) == 1
    finally:
        closed.close()  # flushes what is left, into /dev/null by now
    assert errors.getvalue() == ""


def test_help_and_store_commands_load_no_prefect_tensorflow_or_numpy(tmp_path):
    script = (
        "import sys\n"
        "from flows.cli import main\n"
        "assert main(['--help']) == 0\n"
        "assert main(['dataset', 'midi', '--help']) == 0\n"
        f"assert main(['--store', {str(tmp_path)!r}, 'store', 'verify']) == 0\n"
        "print(sorted(m for m in ('prefect', 'tensorflow', 'numpy', 'scipy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "[]"


def test_input_errors_of_the_flow_commands_come_before_prefect(store, tmp_path):
    """A wrong ref, name, source, soundfont or training setting: exit 2 and one line, before
    Prefect is imported."""
    midi = write_piano_midi(tmp_path / "song.mid", seconds=1.0)
    missing = tmp_path / "missing"
    cases = [
        (["encode", "nosuch", "--autoencoder", "piano"], "no dataset named 'nosuch'"),
        (["encode", "piano", "--autoencoder", "piano"], "piano@2"),
        (["encode", "piano", "--autoencoder", "piano", "--name", "Bad!"], "dataset name 'Bad!' is invalid"),
        (["dataset", "midi", f"{missing}.mid", "--name", "ok"], "does not exist"),
        (["dataset", "midi", str(midi), "--name", "Bad!"], "dataset name 'Bad!' is invalid"),
        (["dataset", "midi", str(midi), "--name", "ok", "--soundfont", f"{missing}.sf2"], "soundfont not found"),
        (["dataset", "audio", str(missing), "--name", "ok"], "does not exist"),
        (["dataset", "youtube", f"{missing}.txt", "--name", "ok"], "existing list file"),
        (["train", "pretrain", "piano:0.5", "--name", "Bad!"], "dataset name 'Bad!' is invalid"),
        (["train", "finetune", "piano", "piano", "--name", "m"], "piano@2"),
        (["generate", "nosuch"], "no dataset named 'nosuch'"),
        (["evaluate", "piano", "--reference", "piano"], "piano@2"),
        (["evaluate", "piano", "--reference", "nosuch"], "no dataset named 'nosuch'"),
        (["report", "nosuch@1"], "no dataset named 'nosuch'"),
        (["train", "pretrain", "piano", "--name", "m", "--preset", "tiny", "--devices", "2"],
         "data parallel training needs the JAX backend"),
    ]
    if not gpu_visible():
        cases.append((["train", "pretrain", "piano", "--name", "m"], "preset piano_pretrain is meant for a GPU"))
    script = (
        "import contextlib, io, json, sys\n"
        "from flows.cli import main\n"
        "results = []\n"
        f"for argv in {[argv for argv, _ in cases]!r}:\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        f"        code = main(['--store', {store.root!r}, *argv])\n"
        "    results.append([code, err.getvalue()])\n"
        "print(json.dumps([results, 'prefect.flows' in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    results, prefect_loaded = json.loads(done.stdout.splitlines()[-1])
    for (argv, expected), (code, err) in zip(cases, results, strict=True):
        assert code == 2 and err.count("\n") == 1 and err.startswith("musika-piano: "), (argv, err)
        assert expected in err, (argv, err)
    assert not prefect_loaded
