"""The encode flow under a real Prefect API: latents shapes, caching, bad model refs, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.encode_dataset import encode_dataset
from flows.midi_dataset import build_midi_dataset
from musika_model.codec import FRAME_OVERLAP, SAMPLES_PER_LATENT
from musika_model.config import AutoencoderConfig
from musika_model.networks import build_autoencoder
from musika_model.official import save_autoencoder_weights
from tasks.checkpoint_import.stage import import_official_checkpoint
from tasks.encode.stage import LATENTS_FILE
from tasks.pipeline.audio_io import single_audio_file
from tasks.pipeline.models import NotAModelError
from tasks.pipeline.params import RunSettings
from tasks.store import ArtifactStore
from tests.helpers import run_cli, write_piano_midi


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> ArtifactStore:
    """A store holding a tiny official-layout autoencoder (`tiny-ae`) and a 2-item MIDI dataset."""
    root = tmp_path_factory.mktemp("encode")
    ae_folder = root / "official"
    save_autoencoder_weights(ae_folder, build_autoencoder(AutoencoderConfig.tiny()))
    store = ArtifactStore(str(root / "store"))
    import_official_checkpoint(store, ae_folder, "tiny-ae")
    midi = root / "midi"
    for index in range(2):
        write_piano_midi(midi / f"p{index}.mid", seconds=3.0, seed=index)
    build_midi_dataset(name="piano", sources=[str(midi)], run=RunSettings(store=store.root))
    return store


def test_encode_publishes_latents_then_a_rerun_is_cached(prepared):
    store = prepared
    run = RunSettings(store=store.root)
    first = encode_dataset(dataset="piano", autoencoder="tiny-ae", run=run)
    assert first["created"] and first["ref"] == "piano-latents@1" and first["items"] == 2
    assert first["stages"]["encode"] == {"computed": 2, "reused": 0, "failed": 0}

    source = store.resolve("piano@1")
    latents_version = store.resolve("piano-latents")
    assert latents_version.stage == "encode"
    assert latents_version.lineage.parents == ["piano@1"]
    ae_key = next(item.key for item in store.resolve("tiny-ae").items if item.item_id == "autoencoder")
    assert latents_version.params == {"autoencoder": ae_key}
    upstream = {item.item_id: item.key for item in source.items}
    for item in latents_version.items:
        audio_samples = soundfile.info(str(single_audio_file(store.local_path(upstream[item.item_id])))).frames
        latents = np.load(store.local_path(item.key) / LATENTS_FILE)
        assert latents.dtype == np.float32
        assert latents.shape == (math.ceil((audio_samples - FRAME_OVERLAP) / SAMPLES_PER_LATENT), 128)
        assert np.isfinite(latents).all()
        assert item.stats["latent_frames"] == latents.shape[0]

    second = encode_dataset(dataset="piano", autoencoder="tiny-ae", run=run, return_state=True)
    assert second.result()["ref"] == first["ref"] and not second.result()["created"]
    assert second.result()["stages"]["encode"]["computed"] == 0
    assert store.version_numbers("piano-latents") == [1]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[second.state_details.flow_run_id])))
    assert {run.state.name for run in runs if run.name.startswith("encode-batch")} == {"Cached"}


def test_a_model_without_an_autoencoder_is_refused(prepared):
    with pytest.raises(NotAModelError, match="piano@1 .*is not a model.*no 'autoencoder' or 'gan' item"):
        encode_dataset(dataset="piano", autoencoder="piano", run=RunSettings(store=prepared.root))
    code, _, err = run_cli("--store", prepared.root, "encode", "piano", "--autoencoder", "piano")
    assert code == 2 and "is not a model" in err


def test_cli_encode_json(prepared):
    argv = ["--store", prepared.root, "encode", "piano@1", "--autoencoder", "tiny-ae@1", "--name", "cli-latents"]
    code, out, _ = run_cli(*argv, "--json")
    result = json.loads(out)
    assert code == 0 and result["ref"] == "cli-latents@1" and result["items"] == 2
    assert result["stages"]["encode"]["failed"] == 0
