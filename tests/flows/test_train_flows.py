"""Pretrain, fine-tune and generate flows under a real Prefect API on tiny models and data."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import re
import subprocess
import sys
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pytest
import soundfile
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId, ArtifactFilterKey
from pydantic import ValidationError

from flows.cli.commands import main
from flows.deployment_defaults import deployment_parameters, over_default
from flows.encode_dataset import encode_dataset
from flows.generate import generate_samples
from flows.midi_dataset import build_midi_dataset
from flows.train import dataset_refs, finetune, pretrain
from musika_model.checkpoints import latest_checkpoint, read_checkpoint_info
from musika_model.devices import gpu_visible
from musika_model.training import TrainingDiverged
from musika_model.training_data import LatentWidthError, SourceTooShortError
from tasks.checkpoint_import.stage import import_official_checkpoint
from tasks.generate.stage import SAMPLE_FILE
from tasks.pipeline.models import resolve_model
from tasks.pipeline.params import RunSettings
from tasks.pipeline.publishing import code_version
from tasks.store import ArtifactStore
from tasks.train import gan as training
from tasks.train.config import TrainingInputError, train_config
from tasks.train.params import GanTrainingParams
from tests.helpers import run_cli, write_official_tiny_model, write_piano_midi

TINY = GanTrainingParams(preset="tiny", publish_every=1)


@pytest.fixture(scope="module")
def latents_store(tmp_path_factory) -> ArtifactStore:
    """A tiny imported model `tiny` and two encoded MIDI datasets, `a-latents` and `b-latents`."""
    root = tmp_path_factory.mktemp("train")
    store = ArtifactStore(str(root / "store"))
    import_official_checkpoint(store, write_official_tiny_model(root / "official"), "tiny")
    run = RunSettings(store=store.root)
    for name, seed in (("a", 0), ("b", 10)):
        for index in range(2):
            write_piano_midi(root / name / f"p{index}.mid", seconds=14.0, seed=seed + index)
        build_midi_dataset(name=name, sources=[str(root / name)], run=run)
        encode_dataset(dataset=name, autoencoder="tiny", run=run)
    return store


@pytest.fixture(scope="module")
def pretrained(latents_store) -> dict:
    """The tiny GAN `gan` pretrained on a-latents (two epochs, a version per epoch)."""
    return pretrain(datasets=["a-latents"], name="gan", settings=TINY, run=RunSettings(store=latents_store.root))


def _artifacts(key: str) -> list:
    """Every version of the artifact `key`, oldest first."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return sorted(found, key=lambda artifact: artifact.created)


def _progress_description(artifact_id) -> str:
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[artifact_id])))
    return artifact.description


def test_pretrain_publishes_a_model_with_lineage_and_a_rerun_trains_nothing(latents_store, pretrained):
    store = latents_store
    run = RunSettings(store=store.root)
    result = pretrained
    assert result["trained"] and result["created"] and (result["step"], result["epoch"]) == (8, 2)
    assert result["published"] == ["gan@1", "gan@2"]  # one version per epoch (publish_every=1)

    model = resolve_model(store, "gan")
    assert model.ref == "gan@2" and model.version.stage == "checkpoint"
    assert model.autoencoder_key == resolve_model(store, "tiny").autoencoder_key
    lineage = model.version.lineage
    assert lineage.parents == ["a-latents@1"]
    assert lineage.extra["datasets"] == [{"ref": "a-latents@1", "weight": 1.0}]
    assert lineage.code_version == code_version()
    info = read_checkpoint_info(model.gan_dir)
    assert info.step == 8 and info.training.lineage["datasets"] == lineage.extra["datasets"]
    assert len(info.training.history) == 2
    assert all(np.isfinite(entry["generator"]) for entry in info.training.history)
    assert sorted(p.name for p in (model.gan_dir / "samples").iterdir()) == ["sample-1.npy", "sample-1.wav"]
    assert any((model.gan_dir / "tensorboard").iterdir())

    table = _artifacts("training-gan")
    assert table and "critic_real" in table[0].data
    # the fullest version of the table holds both epochs, each with the seconds it took
    epochs = [row for row in max((json.loads(a.data) for a in table), key=len) if not row["event"]]
    assert [row["epoch"] for row in epochs] == [1, 2]
    assert all(row["seconds"] > 0 for row in epochs)
    [progress] = _artifacts("training-progress-gan")
    assert progress.data == 100.0 and progress.description == "pretrain of **gan**: finished, step 8/8, epoch 2/2"

    again = pretrain(datasets=["a-latents"], name="gan", settings=TINY, run=run)
    assert not again["trained"] and not again["created"] and again["ref"] == "gan@2"
    assert store.version_numbers("gan") == [1, 2]


def test_the_epoch_table_is_written_every_few_epochs_and_always_at_the_end(latents_store):
    # 21 one-step epochs: more than TABLE_VERSIONS_PER_RUN, and the last not a multiple of the cadence.
    epochs = 21
    settings = GanTrainingParams(preset="tiny", lr_phases=[(epochs, 1e-4)], iterations_per_epoch=1,
                                 save_every=epochs, publish_every=epochs)
    result = pretrain(datasets=["a-latents"], name="long", settings=settings, run=RunSettings(store=latents_store.root))
    assert result["trained"] and result["epoch"] == epochs

    every = training.table_every(epochs)
    assert every > 1 and epochs % every
    versions = [[row for row in json.loads(artifact.data) if not row["event"]] for artifact in _artifacts("training-long")]
    assert len(versions) <= training.TABLE_VERSIONS_PER_RUN
    # a version at each multiple of the cadence, holding every epoch so far, and one for the last epoch
    assert [[row["epoch"] for row in rows] for rows in versions] == [
        list(range(1, end + 1)) for end in [*range(every, epochs + 1, every), epochs]]
    assert all(row["seconds"] > 0 for row in versions[-1])


def test_the_progress_artifact_says_step_epoch_and_eta(latents_store, tmp_path):
    store = latents_store
    config = train_config("tiny", {"seed": 4})
    plan = training.plan_training(store, "described", config, [training.resolve_latents(store, "a-latents", 1.0)],
                                  code_version=code_version())
    described: dict[int, str] = {}

    @flow(name="described-training")
    def described_training() -> str:
        """The reporter on a real run, the progress artifact's description read after each step."""
        reporter = training.TrainingReporter(store, plan, publish_every=config.epochs, logger=get_run_logger())

        def report_and_read(progress) -> None:
            reporter(progress)
            if progress.kind == "step":
                described[progress.step] = _progress_description(reporter.progress_id)

        training.run_training(store, plan, training.run_dir_of(tmp_path, plan), on_progress=report_and_read)
        reporter.finish()
        return _progress_description(reporter.progress_id)

    finished = described_training()
    total = config.total_steps
    # The first step and the last always update the artifact (those between only every 10 s). The
    # first step's time includes the graph tracing, so its ETA may run to minutes.
    assert re.fullmatch(rf"pretrain of \*\*described\*\*: step 1/{total}, epoch 1/2, ETA [\d.]+ (seconds|minutes)",
                        described[1])
    assert described[total] == f"pretrain of **described**: step {total}/{total}, epoch 2/2, ETA 0 seconds"
    assert finished == f"pretrain of **described**: finished, step {total}/{total}, epoch 2/2"
    assert len(_artifacts("training-described")) == config.epochs  # finish() adds no copy of the last version


def test_a_run_that_diverges_keeps_its_table_and_says_where_it_stopped(latents_store):
    # An lr no network survives, and no rollback allowed: the run stops in its first epochs.
    settings = GanTrainingParams(preset="tiny", lr_phases=[(3, 1e30)], max_rollbacks=0, publish_every=3)
    with pytest.raises(TrainingDiverged):
        pretrain(datasets=["a-latents"], name="diverged", settings=settings, run=RunSettings(store=latents_store.root))
    rows = json.loads(_artifacts("training-diverged")[-1].data)
    [event] = [row for row in rows if row["event"]]
    assert event["event"].startswith("divergence: ")
    finished = [row["epoch"] for row in rows if not row["event"]]
    assert finished == list(range(1, len(finished) + 1))
    [progress] = _artifacts("training-progress-diverged")
    assert progress.description == (f"pretrain of **diverged**: stopped after epoch {len(finished)}/3 "
                                     f"(step {4 * len(finished)}): TrainingDiverged")


def test_a_killed_run_resumes_from_its_last_checkpoint_with_its_step(latents_store, tmp_path, caplog):
    store = latents_store
    settings = GanTrainingParams(preset="tiny", publish_every=1, seed=3, runs_dir=str(tmp_path))
    mixture = [training.resolve_latents(store, "a-latents", 1.0)]
    config = train_config("tiny", {"seed": 3})
    plan = training.plan_training(store, "resumed", config, mixture, code_version=code_version())
    run_dir = training.run_dir_of(tmp_path, plan)
    # What a run killed after its first epoch leaves: one checkpoint in its run folder.
    training.run_training(store, plan, run_dir, max_epochs=1)
    assert read_checkpoint_info(latest_checkpoint(run_dir)).step == 4

    with caplog.at_level(logging.INFO, logger="prefect"):
        result = pretrain(datasets=["a-latents"], name="resumed", settings=settings,
                          run=RunSettings(store=store.root))
    assert result["trained"] and result["step"] == 8 and result["run_dir"] == str(run_dir)
    # Once per run start, after the first steps (the very first report, with the graph tracing, is
    # passed over): the measured speed and when the run will end.
    [speed] = [record.getMessage() for record in caplog.records if record.getMessage().startswith("measured ")]
    assert " s/step at step 6: 2 steps left, about " in speed and speed.endswith(" UTC")
    assert "finishing around 20" in speed
    history = read_checkpoint_info(resolve_model(store, "resumed").gan_dir).training.history
    assert [entry["step"] for entry in history] == [4, 8]


def test_finetune_starts_from_the_parent_with_replay(latents_store, pretrained):
    store = latents_store
    run = RunSettings(store=store.root)
    # One ref as a plain string, as the deployment's trigger passes it.
    result = finetune(parent="gan", datasets="b-latents", replay=0.25, settings=TINY, run=run)
    model = resolve_model(store, result["ref"])
    assert model.version.name == "gan-ft"
    lineage = model.version.lineage
    assert lineage.extra["datasets"] == [{"ref": "b-latents@1", "weight": 0.75},
                                         {"ref": "a-latents@1", "weight": 0.25}]
    assert lineage.extra["parent_checkpoint"]["ref"] == "gan@2"
    assert set(lineage.parents) == {"a-latents@1", "b-latents@1", "gan@2"}
    state = read_checkpoint_info(model.gan_dir).training
    assert state.step == 8 and state.lineage["parent_checkpoint"]["ref"] == "gan@2"


def test_finetune_from_an_imported_model_and_a_width_mismatch_is_refused_first(latents_store):
    store = latents_store
    run = RunSettings(store=store.root)
    with pytest.raises(TrainingInputError, match="base_channels=16.*base_channels=32"):
        finetune(parent="tiny", datasets=["b-latents"], settings=GanTrainingParams(preset="tiny", base_channels=32),
                 run=run)
    assert "tiny-ft" not in {summary.name for summary in store.list_datasets()}
    result = finetune(parent="tiny", datasets=["b-latents"], replay=0.5, settings=TINY, run=run)
    assert result["trained"] and result["ref"] == "tiny-ft@2"
    # The imported model records no training data: nothing to replay, the new data has all the weight.
    assert resolve_model(store, "tiny-ft").version.lineage.extra["datasets"] == [
        {"ref": "b-latents@1", "weight": 1.0}]


def test_no_datasets_are_refused_before_anything_is_opened(latents_store):
    run = RunSettings(store=latents_store.root)
    # The parent does not exist: the refusal comes before the store is read.
    with pytest.raises(TrainingInputError, match=r"^no datasets given: name at least one latents"):
        finetune(parent="no-such-model", datasets=[], settings=TINY, run=run)
    with pytest.raises(TrainingInputError, match=r"^no datasets given"):
        pretrain(datasets=[], name="nothing", settings=TINY, run=run)
    assert "nothing" not in {summary.name for summary in latents_store.list_datasets()}
    code, _, err = run_cli("--store", latents_store.root, "train", "finetune", "gan")
    assert code == 2 and "DATASETS requires an argument" in err


def test_datasets_take_one_ref_as_a_string_for_the_trigger():
    assert dataset_refs("b-latents@2") == ["b-latents@2"]
    assert dataset_refs(["a-latents", "b-latents:2"]) == ["a-latents", "b-latents:2"]
    assert finetune.validate_parameters({"parent": "gan", "datasets": "b-latents@2"})["datasets"] == "b-latents@2"


def test_a_partial_model_parameter_keeps_the_deployment_values_it_leaves_out():
    # What Prefect hands the flow for a run's `settings: {"preset": "tiny", "seed": 3}`: the
    # validated model knows which fields were given.
    given = pretrain.validate_parameters({"datasets": ["a-latents"], "name": "x",
                                          "settings": {"preset": "tiny", "seed": 3}})["settings"]
    assert given.model_fields_set == {"preset", "seed"}
    deployment_default = {"preset": "piano_pretrain", "concurrency_limit": "gpu", "seed": 1, "publish_every": 5}
    assert over_default(given, deployment_default) == GanTrainingParams(preset="tiny", seed=3, concurrency_limit="gpu",
                                                                        publish_every=5)
    everything = GanTrainingParams.model_validate(TINY.model_dump())  # a full form: every field the caller's
    assert over_default(everything, deployment_default) == TINY
    assert over_default(given, None) is given
    assert over_default(RunSettings(), {"store": "/s", "batch_size": 4}) == RunSettings(store="/s", batch_size=4)
    assert deployment_parameters() == {}  # not a deployment run


def _fake_latents(store: ArtifactStore, name: str, arrays: list[np.ndarray]) -> None:
    ae_key = resolve_model(store, "tiny").autoencoder_key
    items = []
    for index, array in enumerate(arrays):
        with store.publish_object("encode", 1, {"fake": name, "index": index}, [ae_key]) as staged:
            np.save(staged.dir / "latents.npy", array)
        items.append({"item_id": f"i{index}", "key": staged.key})
    store.publish_dataset(name, stage="encode", params={"autoencoder": ae_key}, items=items)


@pytest.mark.parametrize(
    ("name", "arrays", "error", "message"),
    [
        ("narrow", [np.zeros((300, 64), np.float32)], LatentWidthError, r"\(T, 128\).*\(300, 64\)"),
        ("short", [np.zeros((50, 128), np.float32)], SourceTooShortError, "50"),
        ("empty", [], TrainingInputError, "empty@1 has no items to train on"),
    ],
)
def test_unusable_latents_fail_before_anything_is_published(latents_store, name, arrays, error, message):
    store = latents_store
    _fake_latents(store, name, arrays)
    with pytest.raises(error, match=message):
        pretrain(datasets=[name], name=f"{name}-gan", settings=TINY, run=RunSettings(store=store.root))
    assert f"{name}-gan" not in {summary.name for summary in store.list_datasets()}


def test_datasets_that_are_not_latents_are_refused_with_the_fix(latents_store):
    code, _, err = run_cli("--store", latents_store.root, "train", "pretrain", "a", "--name", "x", "--preset", "tiny")
    assert code == 2 and "a@1 is a" in err and "not latents; encode it first" in err
    code, _, err = run_cli("--store", latents_store.root, "train", "pretrain", "a-latents:0", "--name", "x",
                           "--preset", "tiny")
    assert code == 2 and "weight must be a positive number" in err


@pytest.mark.skipif(gpu_visible(), reason="the refusal needs a machine without a GPU")
def test_gpu_presets_are_refused_on_a_cpu_before_anything_is_built(latents_store, pretrained):
    store = latents_store
    run = RunSettings(store=store.root)
    with pytest.raises(TrainingInputError, match=r"preset piano_pretrain is meant for a GPU.*--allow-cpu"):
        pretrain(datasets=["a-latents"], name="big", run=run)
    # Fine-tuning keeps the parent's width (16 here), and the estimate is of that width.
    with pytest.raises(TrainingInputError, match=r"937,500 steps at base_channels 16, batch 32"):
        finetune(parent="gan", datasets=["b-latents"], name="big-ft", run=run)
    code, _, err = run_cli("--store", store.root, "train", "finetune", "gan", "b-latents", "--name", "big-ft")
    assert code == 2 and "preset finetune_recordings is meant for a GPU" in err and "base_channels 16" in err
    assert not {"big", "big-ft"} & {summary.name for summary in store.list_datasets()}


def test_generate_publishes_seeded_samples_and_reuses_them(latents_store, tmp_path):
    store = latents_store
    run = RunSettings(store=store.root)
    first = generate_samples(model="tiny", seconds=2.0, count=2, seed=5, output=str(tmp_path / "out"), run=run)
    assert first["created"] and first["stages"]["generate"] == {"computed": 2, "reused": 0, "failed": 0}
    audio, rate = soundfile.read(first["files"][0])
    assert rate == 44100 and audio.shape == (88200, 2) and np.abs(audio).max() > 0
    more = generate_samples(model="tiny", seconds=2.0, count=3, seed=5, run=run)
    assert more["stages"]["generate"] == {"computed": 1, "reused": 2, "failed": 0}
    version = store.resolve(more["ref"])
    assert version.lineage.parents == ["tiny@1"]
    first_again = np.asarray(soundfile.read(store.local_path(version.items[0].key) / SAMPLE_FILE)[0])
    assert np.array_equal(first_again, audio)
    with pytest.raises(ValidationError, match="seconds"):
        generate_samples(model="tiny", seconds=0.0, run=run)


def test_cli_train_and_generate_print_where_things_are(latents_store, pretrained):
    root = latents_store.root
    code, out, _ = run_cli("--store", root, "train", "pretrain", "a-latents", "--name", "gan", "--preset", "tiny",
                        "--publish-every", "1", "--json")
    assert code == 0 and json.loads(out)["ref"] == "gan@2"
    code, out, _ = run_cli("--store", root, "train", "pretrain", "a-latents", "--name", "gan", "--preset", "tiny",
                        "--publish-every", "1")
    assert code == 0 and "already trained, nothing recomputed" in out and "tensorboard --logdir" in out
    code, out, err = run_cli("--store", root, "generate", "gan", "--seconds", "1", "--count", "1", "--base-channels", "32")
    assert code == 2 and "base_channels=16" in err and "base_channels=32" in err
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["--store", root, "train", "pretrain", "a-latents", "--name", "y", "--lr-phases", "1@x"]) == 2
    assert "'1@x' is not EPOCHS@LR" in err.getvalue()


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax (pip install -e '.[jax]')")
def test_cli_trains_on_the_jax_backend_and_tensorflow_generates_from_the_model(latents_store, tmp_path):
    """`--backend jax` in a fresh process (Keras fixes its backend at import): the model is
    published like any other, without audio samples (decoding needs TensorFlow), and this
    TensorFlow process generates from it. Its own seed: the same training on TensorFlow (the
    backend is not part of a run's key) would be found finished and not run again."""
    env = {**os.environ, "MUSIKA_PIANO_RUNS": str(tmp_path / "runs")}
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "musika-piano"), "--store", latents_store.root, "train", "pretrain",
         "a-latents", "--name", "gan-jax", "--preset", "tiny", "--seed", "101", "--backend", "jax", "--json"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["ref"] == "gan-jax@1" and result["trained"]
    checkpoint = Path(result["checkpoint"])
    assert list((checkpoint / "samples").glob("*.npy")) and not list((checkpoint / "samples").glob("*.wav"))
    run = RunSettings(store=latents_store.root)
    generated = generate_samples(model="gan-jax", seconds=1.0, count=1, run=run)
    assert generated["created"]
