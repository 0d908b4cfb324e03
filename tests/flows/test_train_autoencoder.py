"""The train-autoencoder flow under a real Prefect API: the model version, encoding with it,
a re-run that trains nothing, and the inputs it refuses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.encode_dataset import encode_dataset
from flows.midi_dataset import build_midi_dataset
from flows.train_autoencoder import train_autoencoder_flow
from musika_model.codec import CONFIG_FILE
from tasks.encode.stage import LATENTS_FILE
from tasks.pipeline.models import AUTOENCODER_ITEM, resolve_model
from tasks.pipeline.params import RunSettings
from tasks.store import ArtifactStore, DatasetNotFoundError
from tasks.train.autoencoder import (
    HISTORY_FILE,
    MODEL_FORMAT,
    STAGE,
    AutoencoderDivergedError,
    AutoencoderStageError,
    CollapsedAutoencoderError,
)
from tasks.train.params import AutoencoderTrainingParams
from tests.helpers import publish_audio_dataset, publish_latents_dataset, write_piano_midi

TINY = AutoencoderTrainingParams(preset="tiny")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> ArtifactStore:
    """A store with `piano` (2 rendered MIDI pieces), `mixed` (two synthetic pieces and one
    0.4 s clip), `crumbs` (two clips under one crop) and `stored-latents` (an
    encode-stage dataset)."""
    root = tmp_path_factory.mktemp("train-ae")
    store = ArtifactStore(str(root / "store"))
    for index in range(2):
        write_piano_midi(root / "midi" / f"p{index}.mid", seconds=3.0, seed=index)
    build_midi_dataset(
        name="piano", sources=[str(root / "midi")], run=RunSettings(store=store.root)
    )
    publish_audio_dataset(store, "mixed", {"long-a": 2.0, "short": 0.4, "long-b": 1.5})
    publish_audio_dataset(store, "crumbs", {"a": 0.3, "b": 0.5})
    publish_latents_dataset(store, "stored-latents")
    return store


def _progress_artifacts(flow_run_id) -> list:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return [artifact for artifact in artifacts if artifact.type == "progress"]


def test_trains_a_model_that_encodes_and_a_rerun_trains_nothing(prepared):
    store, run = prepared, RunSettings(store=prepared.root)
    state = train_autoencoder_flow(dataset="piano", settings=TINY, run=run, return_state=True)
    first = state.result()
    assert first["ref"] == "piano-ae@1" and first["created"] and first["trained"]
    assert first["skipped_short"] == 0

    version = store.resolve("piano-ae")
    assert version.stage == "checkpoint"
    assert version.params["format"] == MODEL_FORMAT
    assert version.params["training"]["stage1_steps"] == 2
    assert [(item.item_id, item.key) for item in version.items] == [
        (AUTOENCODER_ITEM, first["key"])
    ]
    assert version.lineage.parents == ["piano@1"] and version.lineage.code_version
    manifest = store.manifest(first["key"])
    assert manifest.stage == STAGE
    assert sorted(manifest.inputs) == sorted(item.key for item in store.resolve("piano@1").items)

    stats = version.items[0].stats
    assert stats == first["stats"]
    assert stats["steps"] == 6 and stats["training_items"] == 2
    assert set(stats["final_losses"]) >= {"stage1/total", "stage2/total", "stage2/latent"}
    evaluation = stats["evaluation"]
    assert evaluation["evaluated_on"] == "training items" and evaluation["latent_verdict"] == "ok"
    assert len(evaluation["items"]) == 2
    assert evaluation["latent_temporal_std"] > 0.1 * evaluation["latent_reference_std"]
    for name in ("log_spectral_distance_db", "mr_stft", "latent_std"):
        assert math.isfinite(evaluation[name]) and evaluation[name] > 0
    folder = store.local_path(first["key"])
    assert (folder / CONFIG_FILE).is_file()
    history = json.loads((folder / HISTORY_FILE).read_text())
    assert [entry["step"] for entry in history] == [1, 2, 3, 4, 5, 6]
    (progress,) = _progress_artifacts(state.state_details.flow_run_id)
    assert progress.data == pytest.approx(100.0)

    assert resolve_model(store, "piano-ae").require_autoencoder()[0] == first["key"]
    encoded = encode_dataset(dataset="piano", autoencoder="piano-ae", run=run)
    assert encoded["items"] == 2
    for item in store.resolve(encoded["ref"]).items:
        latents = np.load(store.local_path(item.key) / LATENTS_FILE)
        assert latents.ndim == 2 and latents.shape[0] > 0 and latents.shape[1] == 128
        assert np.isfinite(latents).all() and latents.std(axis=0).mean() > 0.01

    again = train_autoencoder_flow(dataset="piano", settings=TINY, run=run, return_state=True)
    second = again.result()
    assert (second["ref"], second["key"], second["created"], second["trained"]) == (
        first["ref"],
        first["key"],
        False,
        False,
    )
    assert store.version_numbers("piano-ae") == [1]
    assert _progress_artifacts(again.state_details.flow_run_id) == []


def test_short_items_are_left_out_and_recorded(prepared):
    level2_only = AutoencoderTrainingParams(preset="tiny", stage1_steps=0)  # spares a trace
    result = train_autoencoder_flow(
        dataset="mixed",
        name="mixed-model",
        settings=level2_only,
        run=RunSettings(store=prepared.root),
    )
    assert result["skipped_short"] == 1 and result["stats"]["training_items"] == 2
    version = prepared.resolve(result["ref"])
    assert [(f.item_id, f.stage) for f in version.failures] == [("short", STAGE)]
    assert version.failures[0].reason.startswith("too_short")
    assert version.stats["failure_reasons"] == {"too_short": 1}


def test_refused_inputs_publish_nothing(prepared):
    run = RunSettings(store=prepared.root)
    with pytest.raises(DatasetNotFoundError, match="no dataset named 'nowhere'"):
        train_autoencoder_flow(dataset="nowhere", settings=TINY, run=run)
    with pytest.raises(
        AutoencoderStageError, match=r"stored-latents@1 \(stage 'encode'\) is not an audio dataset"
    ):
        train_autoencoder_flow(dataset="stored-latents", settings=TINY, run=run)
    with pytest.raises(AutoencoderStageError, match="crumbs@1: all 2 items are shorter than one"):
        train_autoencoder_flow(dataset="crumbs", settings=TINY, run=run)

    objects_before = set(prepared.object_keys())
    diverging = AutoencoderTrainingParams(preset="tiny", learning_rate=1e6)
    with pytest.raises(
        AutoencoderDivergedError,
        match=r"train-autoencoder on piano@1: stage1 step \d+: non-finite losses",
    ):
        train_autoencoder_flow(dataset="piano", name="nan-ae", settings=diverging, run=run)
    # Untrained networks: the level-2 latents of a fresh encoder barely move over time.
    static = AutoencoderTrainingParams(preset="tiny", stage1_steps=0, stage2_steps=0)
    with pytest.raises(CollapsedAutoencoderError, match="static latents"):
        train_autoencoder_flow(dataset="piano", name="static-ae", settings=static, run=run)
    assert set(prepared.object_keys()) == objects_before
    assert not {"nan-ae", "static-ae"} & set(prepared.dataset_names())
