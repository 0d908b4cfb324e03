"""The evaluate flow under a real Prefect API: the published contract, re-runs that recompute
nothing, several checkpoints in one table, bad inputs refused, the CLI (`flows.cli.commands.main`)."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.evaluate import evaluate
from flows.midi_dataset import build_midi_dataset
from musika_model.checkpoints import CheckpointMismatchError
from musika_model.official import AE_FILE_NAMES
from tasks.checkpoint_import.stage import import_official_checkpoint
from tasks.evaluate.metrics import CLIP_METRICS, METRICS, measure_clip
from tasks.evaluate.params import EvaluateParams
from tasks.evaluate.stage import (
    EMBEDDING_FILE,
    METRICS_FILE,
    NoUsableReference,
    load_crops,
    measure_reference,
)
from tasks.pipeline.models import NotAModelError
from tasks.pipeline.params import RunSettings
from tasks.store import ArtifactStore, DatasetItem
from tests.helpers import run_cli, write_official_tiny_model, write_piano_midi

SMALL = EvaluateParams(samples=2, seconds=3.0, reference_items=2, segment_lengths=[2.0])
SMALL_FLAGS = ("--samples", "2", "--seconds", "3", "--reference-items", "2", "--segment-lengths", "2")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> ArtifactStore:
    """Tiny models `tiny` and `tiny-b` (GAN base_channels 16 + AE), `tiny-ae` (the AE of `tiny`
    alone) and a 2-item rendered MIDI dataset `piano`."""
    root = tmp_path_factory.mktemp("evaluate")
    store = ArtifactStore(str(root / "store"))
    import_official_checkpoint(store, write_official_tiny_model(root / "a", seed=0), "tiny")
    import_official_checkpoint(store, write_official_tiny_model(root / "b", seed=1), "tiny-b")
    (root / "c").mkdir()
    for file in AE_FILE_NAMES.values():
        shutil.copyfile(root / "a" / file, root / "c" / file)
    import_official_checkpoint(store, root / "c", "tiny-ae")
    for index in range(2):
        write_piano_midi(root / "midi" / f"p{index}.mid", seconds=3.0, seed=index)
    build_midi_dataset(name="piano", sources=[str(root / "midi")], run=RunSettings(store=store.root))
    return store


def _metrics(store: ArtifactStore, key: str) -> dict:
    return json.loads((store.local_path(key) / METRICS_FILE).read_text())


def _artifact(key: str):
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return found[-1] if found else None


def test_evaluation_follows_the_contract_and_a_rerun_recomputes_nothing(prepared):
    store = prepared
    result = evaluate(checkpoints=["tiny"], reference="piano", settings=SMALL, run=RunSettings(store=store.root))
    assert result["ref"] == "eval-piano@1" and result["created"]
    assert result["subjects"] == {"piano@1": "computed", "tiny@1": "computed"}
    report = Path(result["report"].removeprefix("file://"))
    assert report.suffix == ".html" and "tiny@1" in report.read_text()

    version = store.resolve("eval-piano@1")
    assert version.stage == "evaluate"
    assert version.params == {"checkpoints": ["tiny@1"], "reference": "piano@1", "settings": SMALL.model_dump()}
    assert sorted(version.lineage.parents) == ["piano@1", "tiny@1"]
    assert version.stats["metrics"] == METRICS
    keys = {item.item_id: item.key for item in version.items}
    assert set(keys) == {"reference", "tiny@1"}

    reference = _metrics(store, keys["reference"])
    assert reference["subject"] == "piano@1" and reference["kind"] == "reference"
    assert [clip["item_id"] for clip in reference["clips"]] == sorted(i.item_id for i in store.resolve("piano").items)
    assert all(clip["file"] is None and clip["seed"] is None for clip in reference["clips"])
    assert reference["clips"][0]["seconds"] == pytest.approx(3.0, abs=0.01)
    assert "reconstruction" not in reference

    model = _metrics(store, keys["tiny@1"])
    assert model["subject"] == "tiny@1" and model["kind"] == "model"
    assert [clip["seed"] for clip in model["clips"]] == [0, 1]
    folder = store.local_path(keys["tiny@1"])
    for clip in model["clips"]:
        assert set(CLIP_METRICS) | {"file", "seed", "flags"} <= set(clip)
        info = soundfile.info(str(folder / clip["file"]))
        assert (info.subtype, info.samplerate, info.channels, info.frames) == ("PCM_16", 44100, 2, 3 * 44100)
        audio, _ = soundfile.read(str(folder / clip["file"]), dtype="float32")
        again = measure_clip(audio)
        assert again["flags"] == clip["flags"]
        if clip["loudness_lufs"] is not None:
            assert again["loudness_lufs"] == pytest.approx(clip["loudness_lufs"], abs=0.2)
    assert [clip["file"] for clip in model["clips"]] == ["samples/sample-00.wav", "samples/sample-01.wav"]
    assert set(model["summary"]) == set(METRICS) - {"reconstruction_lsd_db"}
    (point,) = model["reconstruction"]
    assert point["seconds"] == 2.0 and point["clips"] == 2 and math.isfinite(point["lsd_db"]) and point["lsd_db"] > 0
    with np.load(folder / EMBEDDING_FILE) as stats:
        assert stats["mean"].shape == (128,) and stats["cov"].shape == (128, 128)

    reference_row, model_row = version.stats["table"]
    assert reference_row["subject"] == "piano@1" and reference_row["frechet_distance"] == 0.0
    assert model_row["subject"] == "tiny@1" and model_row["kind"] == "model"
    assert model_row["frechet_distance"] > 0
    assert model_row["reconstruction_lsd_db"] == pytest.approx(point["lsd_db"], rel=1e-5)
    assert model_row["loudness_lufs"] == pytest.approx(model["summary"]["loudness_lufs"], abs=1e-5) or (
        model_row["loudness_lufs"] is None and model["summary"]["loudness_lufs"] is None)
    table = _artifact("evaluation-eval-piano")
    assert table is not None and table.type == "table" and "tiny@1" in json.dumps(table.data)
    flags = [f"{doc['subject']}: {flag}" for doc in (reference, model) for flag in doc["flags"]]
    markdown = _artifact("evaluation-eval-piano-flags")
    assert markdown.type == "markdown"
    assert all(line in markdown.data for line in flags) and (flags or "No flags" in markdown.data)

    code, out, _ = run_cli("--store", store.root, "evaluate", "tiny@1", "--reference", "piano@1", *SMALL_FLAGS, "--json")
    again = json.loads(out)
    assert code == 0 and not again["created"] and again["ref"] == "eval-piano@1"
    assert again["subjects"] == {"piano@1": "reused", "tiny@1": "reused"}
    assert again["stats"] == version.stats
    assert store.version_numbers("eval-piano") == [1]


def test_two_checkpoints_and_an_autoencoder_give_one_table(prepared):
    store = prepared
    code, out, _ = run_cli("--store", store.root, "evaluate", "tiny", "tiny-b", "tiny-ae", "tiny@1", "--reference",
                        "piano", "--name", "eval-three", *SMALL_FLAGS)
    lines = out.splitlines()
    assert code == 0 and re.fullmatch(r"published eval-three@1 \([0-4] of 4 subjects computed\)", lines[0])
    assert lines[1].split()[:3] == ["subject", "kind", "LUFS"]
    assert [line.split()[:2] for line in lines[3:]] == [
        ["piano@1", "reference"], ["tiny@1", "model"], ["tiny-b@1", "model"], ["tiny-ae@1", "model"]]
    assert len({len(line) for line in lines[1:]}) == 1

    version = store.resolve("eval-three@1")
    assert version.params["checkpoints"] == ["tiny@1", "tiny-b@1", "tiny-ae@1"]
    rows = version.stats["table"]
    assert [row["subject"] for row in rows] == ["piano@1", "tiny@1", "tiny-b@1", "tiny-ae@1"]
    assert all(set(METRICS) | {"subject", "kind", "frechet_distance"} == set(row) for row in rows)
    assert rows[1]["frechet_distance"] != rows[2]["frechet_distance"]
    ae_row = rows[3]
    assert ae_row["frechet_distance"] is None and ae_row["loudness_lufs"] is None
    assert ae_row["reconstruction_lsd_db"] > 0
    assert lines[-1].split()[-1] == "-"
    ae_only = _metrics(store, next(i.key for i in version.items if i.item_id == "tiny-ae@1"))
    assert ae_only["clips"] == [] and len(ae_only["reconstruction"]) == 1
    assert sorted(version.lineage.parents) == ["piano@1", "tiny-ae@1", "tiny-b@1", "tiny@1"]


def test_bad_inputs_are_refused_before_anything_is_published(prepared):
    store = prepared
    run = RunSettings(store=store.root)
    with pytest.raises(CheckpointMismatchError, match=r"base_channels=16.*base_channels=32"):
        evaluate(checkpoints=["tiny"], reference="piano", name="eval-bad", settings=SMALL.model_copy(
            update={"base_channels": 32}), run=run)
    with pytest.raises(NotAModelError, match="piano@1 .*is not a model"):
        evaluate(checkpoints=["piano"], reference="piano", name="eval-bad", settings=SMALL, run=run)
    with pytest.raises(NoUsableReference, match="tiny-ae@1: none of its 1 items could be read"):
        evaluate(checkpoints=["tiny"], reference="tiny-ae", name="eval-bad", settings=SMALL, run=run)
    code, out, err = run_cli("--store", store.root, "evaluate", "tiny", "--reference", "piano", "--name", "eval-bad",
                          "--base-channels", "64", *SMALL_FLAGS)
    assert code == 2 and out == "" and "base_channels=16" in err and "base_channels=64" in err
    code, _, err = run_cli("--store", store.root, "evaluate", "tiny", "--reference", "piano", "--samples", "65")
    assert code == 2 and "samples" in err and "less than or equal to 64" in err
    assert store.version_numbers("eval-bad") == []


def test_unreadable_reference_items_are_skipped_and_flagged(prepared):
    store = prepared
    with store.publish_object("test-corrupt", 1, {}, []) as staged:
        (staged.dir / "audio.wav").write_bytes(b"RIFF\x00\x00not a wave file")
    items = [*store.resolve("piano").items, DatasetItem("corrupt", staged.key)]
    crops, skipped = load_crops(store, items, seconds=2.0)
    assert [crop.item_id for crop in crops] == [item.item_id for item in items[:2]]
    assert all(crop.audio.shape == (2 * 44100, 2) and crop.offset_s > 0 for crop in crops)
    assert [entry["item_id"] for entry in skipped] == ["corrupt"]
    result, frames = measure_reference(crops, skipped, "mixed@1")
    assert len(result["clips"]) == len(frames) == 2
    assert any(flag.startswith("item corrupt unreadable: AudioFileError") for flag in result["flags"])
    longer, _ = load_crops(store, items[:2], seconds=60.0, min_seconds=60.0)
    assert longer == []
