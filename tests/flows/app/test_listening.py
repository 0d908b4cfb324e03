"""The generation app's logic (flows/app/listening.py, tasks/reports/spectrograms.py) on a real tiny model."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from flows.app import listening
from tasks.checkpoint_import.stage import import_official_checkpoint
from tasks.reports.spectrograms import mel_spectrogram_db, mel_spectrogram_png
from tasks.store import ArtifactStore
from tests.helpers import write_official_tiny_model

SAMPLE_RATE = 44100


@pytest.fixture(scope="module")
def model_store(tmp_path_factory) -> tuple[ArtifactStore, Path]:
    """A store with an imported tiny model, an autoencoder-only model, a fine-tuned-looking
    model (same networks, lineage to a dataset and a parent checkpoint) and a plain dataset."""
    root = tmp_path_factory.mktemp("listening")
    folder = write_official_tiny_model(root / "tiny")
    ae_only = write_official_tiny_model(root / "ae-only", gan=False)
    store = ArtifactStore(root / "store")
    imported = import_official_checkpoint(store, folder, "tiny")
    import_official_checkpoint(store, ae_only, "ae-only")
    with store.publish_object("toy", 1, {}, [], item="clip") as staged:
        (staged.dir / "clip.wav").write_bytes(b"not a model")
    store.publish_dataset("piano", stage="normalize", params={},
                          items=[{"item_id": "clip", "key": staged.key}])
    store.publish_dataset(
        "piano-finetune", stage="checkpoint", params={"kind": "finetune"},
        items=[{"item_id": item.item_id, "key": item.key} for item in imported.items],
        lineage={"parents": ["piano@1", "tiny@1"],
                 "datasets": [{"ref": "piano@1", "weight": 0.8}],
                 "parent_checkpoint": {"ref": "tiny@1", "epoch": 3, "step": 120}},
    )
    return store, folder


def test_choices_are_models_with_both_networks_with_kind_date_channels_and_lineage(model_store):
    store, _ = model_store
    choices = {choice.value: choice for choice in listening.store_model_choices(store)}
    assert sorted(choices) == ["piano-finetune@1", "tiny@1"]  # no plain dataset, no AE-only model
    imported, trained = choices["tiny@1"], choices["piano-finetune@1"]
    version = store.resolve("tiny@1")
    assert "imported" in imported.label and "base_channels 16" in imported.label
    assert version.created_at[:10] in imported.label
    assert "trained (finetune)" in trained.label and "base_channels 16" in trained.label
    assert "parent datasets: piano@1 (weight 0.8)\n" in trained.details
    assert "parent checkpoint: tiny@1, epoch 3, step 120" in trained.details


@pytest.mark.parametrize(
    ("seconds", "num_samples", "truncation", "seed", "device", "message"),
    [
        (0, 1, 2.0, 0, "cpu", "length must be more than 0 s, got 0 s"),
        (-3, 1, 2.0, 0, "cpu", "length must be more than 0 s, got -3 s"),
        (301, 1, 2.0, 0, "cpu", "length must be at most 300 s, got 301 s"),
        ("abc", 1, 2.0, 0, "cpu", "length must be a number, got 'abc'"),
        (float("nan"), 1, 2.0, 0, "cpu", "length must be a finite number"),
        (2, 0, 2.0, 0, "cpu", "number of samples must be 1 to 16, got 0"),
        (2, 1000, 2.0, 0, "cpu", "number of samples must be 1 to 16, got 1000"),
        (2, 1.5, 2.0, 0, "cpu", "number of samples must be a whole number, got 1.5"),
        (2, 1, 0.0, 0, "cpu", "truncation must be between 0.1 and 4, got 0"),
        (2, 1, 9.0, 0, "cpu", "truncation must be between 0.1 and 4, got 9"),
        (2, 1, 2.0, -1, "cpu", "seed must be between 0 and 4294967295, got -1"),
        (2, 1, 2.0, 0, "gpu:3", "device 'gpu:3' is not available (available: cpu)"),
    ],
)
def test_requests_out_of_bounds_are_refused_with_the_bound(
    seconds, num_samples, truncation, seed, device, message
):
    with pytest.raises(listening.ListeningError) as caught:
        listening.validate_request(seconds, num_samples, truncation, seed, device, ["cpu"])
    assert message in str(caught.value)


def test_a_valid_request_keeps_its_values():
    request = listening.validate_request("2.5", 3.0, 1.5, 7.0, "gpu:0", ["cpu", "gpu:0"])
    assert request == listening.GenerationRequest(2.5, 3, 1.5, 7, "gpu:0")


def test_unknown_or_missing_model_choice_says_so(model_store):
    choices = listening.store_model_choices(model_store[0])
    with pytest.raises(listening.UnknownModel, match="'gone@9' is not available"):
        listening.find_choice(choices, "gone@9")
    with pytest.raises(listening.UnknownModel, match="no model selected"):
        listening.find_choice(choices, None)


def test_folder_base_channels_mismatch_names_both_values(model_store):
    from musika_model.checkpoints import CheckpointMismatchError

    store, folder = model_store
    choice = listening.folder_model_choice(folder, None, store, base_channels=32)
    with pytest.raises(CheckpointMismatchError, match="base_channels=16.*base_channels=32"):
        listening.load_networks(choice)


def test_folder_without_autoencoder_needs_one_and_takes_a_store_model(model_store, tmp_path):
    store, folder = model_store
    gan_only = tmp_path / "gan-only"
    gan_only.mkdir()
    for name in ("gen.h5", "gen_ema.h5", "critic.h5"):
        shutil.copyfile(folder / name, gan_only / name)
    with pytest.raises(listening.UnknownModel, match="holds no autoencoder.*--autoencoder"):
        listening.folder_model_choice(gan_only, None, store)
    choice = listening.folder_model_choice(gan_only, "ae-only", store, base_channels=16)
    assert choice.autoencoder_folder == store.local_path(store.resolve("ae-only").items[0].key)
    assert choice.value == f"folder:{gan_only.resolve()}"
    assert "base_channels 16" in choice.label


def test_generated_clips_last_as_asked_and_repeat_with_the_seed(model_store, tmp_path):
    from PIL import Image

    store, _ = model_store
    stored = listening.find_choice(listening.store_model_choices(store), "tiny@1")
    request = listening.validate_request(2.5, 2, 2.0, 11)
    clips = listening.generate_clips(stored, request, tmp_path / "a")
    again = listening.generate_clips(stored, request, tmp_path / "b")
    other = listening.generate_clips(stored, listening.validate_request(2.5, 1, 2.0, 12), tmp_path)

    assert len(clips) == 2 and all(clip.seconds == 2.5 for clip in clips)
    audio = [sf.read(clip.wav_path, dtype="int16")[0] for clip in clips + again + other]
    info = sf.info(clips[0].wav_path)
    assert (info.samplerate, info.channels, info.frames) == (SAMPLE_RATE, 2, 110250)
    assert np.array_equal(audio[0], audio[2]) and np.array_equal(audio[1], audio[3])
    assert not np.array_equal(audio[0], audio[1]) and not np.array_equal(audio[0], audio[4])
    image = Image.open(io.BytesIO(clips[0].mel_png_path.read_bytes()))
    assert image.format == "PNG" and image.width > 200 and image.height > 100


def test_only_the_newest_generation_folders_are_kept(tmp_path):
    import os

    folders = [tmp_path / f"{listening.OUTPUT_PREFIX}{index}" for index in range(5)]
    for age, folder in enumerate(reversed(folders)):
        folder.mkdir()
        (folder / "clip.wav").write_bytes(b"x")
        os.utime(folder, ns=(10**18 - age * 10**9,) * 2)
    (tmp_path / "other").mkdir()
    removed = listening.remove_old_outputs(tmp_path, keep=2)
    assert sorted(removed) == folders[:3]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [folders[3].name, folders[4].name, "other"]
    )


def test_mel_spectrogram_of_a_tone_peaks_at_its_band_and_mixes_stereo_to_mono():
    import librosa

    time = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    left = 0.5 * np.sin(2 * np.pi * 1000 * time).astype(np.float32)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    mel = mel_spectrogram_db(stereo, SAMPLE_RATE, n_mels=64)
    assert mel.shape == (64, 1 + SAMPLE_RATE // 512)
    assert mel.max() == 0.0 and mel.min() >= -80.0
    centres = librosa.mel_frequencies(64 + 2, fmax=SAMPLE_RATE / 2)[1:-1]
    peak_band = int(np.argmax(mel[:, mel.shape[1] // 2]))
    assert abs(centres[peak_band] - 1000) < 150
    assert np.allclose(mel, mel_spectrogram_db(left / 2, SAMPLE_RATE, n_mels=64))
    with pytest.raises(ValueError, match="empty audio"):
        mel_spectrogram_db(np.zeros((0, 2)), SAMPLE_RATE)
    assert mel_spectrogram_png(stereo, SAMPLE_RATE, title="tone").startswith(b"\x89PNG")


def test_the_mel_image_shows_its_whole_title():
    """A long title (a 128-character model name is one word) wraps and shrinks to the image:
    no title ink reaches its left or right edge, and the title is there at its top."""
    from matplotlib.image import imread

    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    for title in ("m" * 128 + "@12 · seed 4294967295 · sample 16",
                  ("piano-pretrain-recordings-finetune@12 · seed 4294967295 · sample 16: "
                   "data/store/objects/ab/abcdef0123456789/samples/sample-16.wav")):
        image = imread(io.BytesIO(mel_spectrogram_png(tone, SAMPLE_RATE, title=title)))
        ink = (image[..., :3] < 0.5).any(axis=2)
        assert not ink[:, :3].any() and not ink[:, -3:].any(), title
        untitled = imread(io.BytesIO(mel_spectrogram_png(tone, SAMPLE_RATE)))
        assert ink[:12].any() and not (untitled[:12, :, :3] < 0.5).any()
