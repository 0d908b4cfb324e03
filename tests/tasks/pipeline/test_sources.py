"""Source resolution: folders, globs, files, duplicates, name collisions, typos."""

from __future__ import annotations

import pytest

from tasks.pipeline.sources import MIDI_EXTENSIONS, SourceNotFound, resolve_sources


def test_folders_globs_and_files(tmp_path):
    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "a" / "one.mid").write_bytes(b"1")
    (tmp_path / "a" / "sub" / "two.MID").write_bytes(b"2")
    (tmp_path / "a" / "notes.txt").write_bytes(b"x")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "three.mid").write_bytes(b"3")
    resolved = resolve_sources([str(tmp_path / "a"), str(tmp_path / "b" / "*.mid")], MIDI_EXTENSIONS)
    assert [f.name for f in resolved.files] == ["a/one.mid", "a/sub/two.MID", "three.mid"]
    assert all(f.digest.startswith("sha256:") for f in resolved.files)


def test_duplicate_content_is_kept_once_and_recorded(tmp_path):
    (tmp_path / "x.mid").write_bytes(b"same")
    (tmp_path / "y.mid").write_bytes(b"same")
    resolved = resolve_sources([str(tmp_path / "x.mid"), str(tmp_path / "y.mid")], MIDI_EXTENSIONS)
    assert [f.name for f in resolved.files] == ["x.mid"]
    assert resolved.duplicates == [{"path": str(tmp_path / "y.mid"), "same_as": "x.mid"}]


def test_same_name_different_content_gets_a_unique_name(tmp_path):
    for folder, content in (("p", b"1"), ("q", b"2")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "song.mid").write_bytes(content)
    resolved = resolve_sources([str(tmp_path / "p" / "song.mid"), str(tmp_path / "q" / "song.mid")], MIDI_EXTENSIONS)
    names = [f.name for f in resolved.files]
    assert names[0] == "song.mid" and names[1].startswith("song.mid~") and len(set(names)) == 2


@pytest.mark.parametrize("spec", ["missing-folder", "nothing-*.mid"])
def test_a_source_naming_nothing_is_an_error(tmp_path, spec):
    with pytest.raises(SourceNotFound, match="does not exist|matches no file"):
        resolve_sources([str(tmp_path / spec)], MIDI_EXTENSIONS)


def test_a_folder_without_midi_is_an_error(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(SourceNotFound, match="holds no file"):
        resolve_sources([str(tmp_path)], MIDI_EXTENSIONS)
