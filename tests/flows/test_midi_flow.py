"""The MIDI dataset flow under a real Prefect API: caching, incremental rebuilds, failures, artifacts."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)

from flows.midi_dataset import build_midi_dataset
from tasks.pipeline.batching import StageFailed
from tasks.pipeline.params import RunSettings
from tasks.pipeline.publishing import artifact_key
from tasks.render.core import render_midi
from tasks.render.params import RenderParams
from tasks.store import ArtifactStore
from tests.helpers import write_piano_midi


def _run(name: str, sources: list[Path], store: Path, **run_options):
    state = build_midi_dataset(
        name=name, sources=[str(s) for s in sources], run=RunSettings(store=str(store), **run_options),
        return_state=True,
    )
    return state


def _task_states(state) -> dict[str, list[str]]:
    """Task run state names of one flow run, grouped by task name."""
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    grouped: dict[str, list[str]] = {}
    for run in runs:
        grouped.setdefault(run.name.rsplit("-", 1)[0], []).append(run.state.name)
    return grouped


@pytest.fixture()
def midi_folder(tmp_path) -> Path:
    folder = tmp_path / "midi"
    for index in range(4):
        write_piano_midi(folder / f"piece-{index}.mid", seconds=3.0, seed=index)
    return folder


def test_rerun_is_cached_and_a_deleted_object_is_recomputed(midi_folder, tmp_path):
    store_root = tmp_path / "store"
    first = _run("cache-test", [midi_folder], store_root, batch_size=2)
    result = first.result()
    assert result["created"] and result["items"] == 4
    states = _task_states(first)
    assert set(states["render-batch"]) == {"Completed"}
    assert set(states["normalize-batch"]) == {"Completed"}

    second = _run("cache-test", [midi_folder], store_root, batch_size=2)
    assert second.result()["ref"] == result["ref"] and not second.result()["created"]
    assert second.result()["stages"]["render"] == {"computed": 0, "reused": 4, "failed": 0}
    states = _task_states(second)
    assert set(states["render-batch"]) == {"Cached"}
    assert set(states["normalize-batch"]) == {"Cached"}

    store = ArtifactStore(str(store_root))
    version = store.resolve("cache-test")
    victim = version.items[0].key
    store.delete_object(victim)
    assert not store.has(victim)
    third = _run("cache-test", [midi_folder], store_root, batch_size=2)
    assert third.result()["ref"] == result["ref"]
    assert third.result()["stages"]["normalize"] == {"computed": 1, "reused": 3, "failed": 0}
    assert store.has(victim)
    states = _task_states(third)
    assert "Completed" in states["normalize-batch"] and "Cached" in states["normalize-batch"]
    assert set(states["render-batch"]) == {"Cached"}


def test_adding_one_midi_file_recomputes_only_that_file(midi_folder, tmp_path):
    store_root = tmp_path / "store"
    _run("grow", [midi_folder], store_root, batch_size=2).result()
    write_piano_midi(midi_folder / "piece-new.mid", seconds=3.0, seed=99)
    grown = _run("grow", [midi_folder], store_root, batch_size=2).result()
    assert grown["created"] and grown["items"] == 5

    store = ArtifactStore(str(store_root))
    diff = store.diff("grow@1", "grow@2").to_dict()
    assert diff["added"] == ["midi/piece-new.mid"]
    assert diff["removed"] == [] and diff["changed"] == []
    assert grown["stages"]["render"] == {"computed": 1, "reused": 4, "failed": 0}
    assert grown["stages"]["normalize"] == {"computed": 1, "reused": 4, "failed": 0}


def test_outputs_are_normalized_and_provenance_is_kept(midi_folder, tmp_path):
    store_root = tmp_path / "store"
    result = build_midi_dataset(name="loud", sources=[str(midi_folder)], run=RunSettings(store=str(store_root)))
    store = ArtifactStore(str(store_root))
    version = store.resolve(result["ref"])
    for item in version.items:
        audio, rate = soundfile.read(store.local_path(item.key) / "audio.wav", dtype="float32")
        assert rate == 44100 and audio.ndim == 2 and audio.shape[1] == 2
        measured = pyloudnorm.Meter(rate).integrated_loudness(audio)
        assert abs(measured - (-20.0)) <= 0.5
        assert item.stats["lufs_after"] == pytest.approx(measured, abs=0.5)
        assert "lufs_before" in item.stats and "duration_s" in item.stats

    first = version.items[0]
    rendered_key = store.manifest(first.key).inputs[0]
    stored, _ = soundfile.read(store.local_path(rendered_key) / "audio.flac", dtype="float32")
    direct = render_midi(midi_folder / first.item_id.split("/", 1)[1])
    assert np.array_equal(stored, direct), "the render object holds FluidSynth's output losslessly"


def test_bad_midi_is_recorded_and_the_rest_is_published(midi_folder, tmp_path):
    (midi_folder / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    (midi_folder / "truncated.mid").write_bytes((midi_folder / "piece-0.mid").read_bytes()[:40])
    import pretty_midi

    empty = pretty_midi.PrettyMIDI()
    empty.instruments.append(pretty_midi.Instrument(program=0))
    empty.write(str(midi_folder / "empty.mid"))

    store_root = tmp_path / "store"
    result = build_midi_dataset(name="mixed", sources=[str(midi_folder)], run=RunSettings(store=str(store_root)))
    assert result["items"] == 4 and result["failures"] == 3
    version = ArtifactStore(str(store_root)).resolve("mixed")
    reasons = {failure.item_id: failure.reason for failure in version.failures}
    assert set(reasons) == {"midi/corrupt.mid", "midi/truncated.mid", "midi/empty.mid"}
    assert reasons["midi/empty.mid"].startswith("no_notes")

    again = _run("mixed", [midi_folder], store_root)
    assert not again.result()["created"]
    assert set(_task_states(again)["render-batch"]) == {"Cached"}


def _write_beat(path: Path, with_melody: bool = False) -> Path:
    """Twelve drum hits (channel 10), and a pitched note over them if `with_melody`."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    kit = pretty_midi.Instrument(program=0, is_drum=True)
    kit.notes.extend(pretty_midi.Note(100, 36 + index % 4, 0.25 * index, 0.25 * index + 0.1) for index in range(12))
    midi.instruments.append(kit)
    if with_melody:
        piano = pretty_midi.Instrument(program=0)
        piano.notes.append(pretty_midi.Note(90, 60, 0.0, 2.0))
        midi.instruments.append(piano)
    midi.write(str(path))
    return path


def test_drum_only_midi_is_dropped_as_no_pitched_notes_unless_kept(midi_folder, tmp_path):
    drums = _write_beat(midi_folder / "drums.mid")
    _write_beat(midi_folder / "drums-and-piano.mid", with_melody=True)
    store_root = tmp_path / "store"
    result = build_midi_dataset(name="beats", sources=[str(midi_folder)], run=RunSettings(store=str(store_root)))
    assert result["items"] == 5 and result["failures_by_reason"] == {"render": {"no_pitched_notes": 1}}
    [failure] = ArtifactStore(str(store_root)).resolve("beats").failures
    assert (failure.item_id, failure.stage) == ("midi/drums.mid", "render")
    assert failure.reason == (f"no_pitched_notes: {drums}: only drum tracks (MIDI channel 10): 12 notes in 1 track "
                              "and no pitched note; --keep-unpitched (keep_unpitched) renders such files")

    kept = build_midi_dataset(name="beats", sources=[str(midi_folder)], render_settings=RenderParams(keep_unpitched=True),
                              run=RunSettings(store=str(store_root)))
    assert (kept["ref"], kept["items"], kept["failures_by_reason"]) == ("beats@2", 6, {})
    assert kept["stages"]["render"] == {"computed": 1, "reused": 5, "failed": 0}


def test_all_items_failing_fails_the_flow_and_publishes_nothing(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    for index in range(2):
        (folder / f"bad-{index}.mid").write_bytes(b"not a midi file at all" + bytes([index]))
    store_root = tmp_path / "store"
    with pytest.raises(StageFailed, match="all 2 items failed"):
        build_midi_dataset(name="bad", sources=[str(folder)], run=RunSettings(store=str(store_root)))
    assert ArtifactStore(str(store_root)).list_datasets() == []


def test_published_version_has_a_keyed_table_artifact(midi_folder, tmp_path):
    name = f"artifacts-{uuid.uuid4().hex[:6]}"
    build_midi_dataset(name=name, sources=[str(midi_folder)], run=RunSettings(store=str(tmp_path / "store")))
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(name)])))
    assert artifacts and artifacts[0].type == "table"
    assert f"{name}@1" in artifacts[0].description
