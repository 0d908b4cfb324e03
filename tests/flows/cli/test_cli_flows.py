"""`musika-piano dataset midi` end to end in-process, under the Prefect harness."""

from __future__ import annotations

import json

from tests.helpers import run_cli, write_piano_midi


def test_dataset_midi_publishes_then_reports_unchanged(tmp_path):
    folder = tmp_path / "midi"
    for index in range(2):
        write_piano_midi(folder / f"p{index}.mid", seconds=3.0, seed=index)
    argv = ["--store", str(tmp_path / "store"), "dataset", "midi", str(folder), "--name", "cli-midi"]
    code, out, _ = run_cli(*argv, "--json")
    first = json.loads(out)
    assert code == 0 and first["ref"] == "cli-midi@1" and first["created"] and first["items"] == 2

    code, out, _ = run_cli(*argv, "--target-lufs", "-20")
    assert code == 0 and out.startswith("unchanged cli-midi@1: 2 items")

    code, out, _ = run_cli(*argv, "--target-lufs", "-23")
    assert code == 0 and out.startswith("published cli-midi@2")


def test_missing_soundfont_is_named_in_a_one_line_error(tmp_path):
    folder = tmp_path / "midi"
    write_piano_midi(folder / "p.mid", seconds=2.0)
    missing = tmp_path / "nowhere" / "grand.sf2"
    code, _, err = run_cli("--store", str(tmp_path / "store"), "dataset", "midi", str(folder), "--name", "x",
                        "--soundfonts", str(missing))
    assert code == 2
    assert err.startswith("musika-piano: ") and str(missing) in err
