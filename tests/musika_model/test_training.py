"""The GAN trainer at tiny size: losses, checkpoints, resume, fine-tune, divergence guard, collapse check."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from musika_model import official
from musika_model.checkpoints import (
    MARKER_FILE,
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointWriteError,
    CorruptCheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_info,
)
from musika_model.collapse import collapse_report, latent_report, temporal_std
from musika_model.config import GanConfig
from musika_model.networks import build_gan
from musika_model.train_config import TrainConfig, TrainConfigError, preset
from musika_model.training import Trainer, TrainingDiverged, TrainingProgress
from musika_model.training_data import LatentSource

SR = 44100
TINY = preset("tiny", iterations_per_epoch=2)
WINDOW = TINY.gan.latent_length


def latent_items(seed: int, lengths=(WINDOW + 40, WINDOW + 5)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.tanh(rng.standard_normal((length, 128))).astype(np.float32) for length in lengths]


def weights_of(model) -> list[np.ndarray]:
    return [np.array(weight) for weight in model.weights]


def assert_same_weights(left, right) -> None:
    for a, b in zip(weights_of(left), weights_of(right), strict=True):
        np.testing.assert_array_equal(a, b)


@dataclass
class FirstRun:
    trainer: Trainer
    progress: list[TrainingProgress]
    sources: list[LatentSource]
    checkpoint: Path


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> FirstRun:
    """Two steps of a fresh tiny run, one checkpoint; every sample is judged static (warning)."""
    progress: list[TrainingProgress] = []
    sources = [LatentSource("piano", latent_items(0))]
    config = TrainConfig.from_dict({**TINY.to_dict(), "static_latent_ratio": 1e9})
    trainer = Trainer(
        config,
        sources,
        tmp_path_factory.mktemp("run"),
        lineage={"datasets": ["piano-latents@v1"], "code_version": "test"},
        on_progress=progress.append,
    )
    result = trainer.train(max_epochs=1)
    return FirstRun(trainer, progress, sources, result.last_checkpoint)


def copy_checkpoint(checkpoint: Path, run_dir: Path) -> Path:
    target = run_dir / "checkpoints" / checkpoint.name
    shutil.copytree(checkpoint, target)
    return target


# --- a first run -------------------------------------------------------------------------------


def test_two_steps_give_finite_losses_progress_and_a_checkpoint(first_run):
    trainer = first_run.trainer
    assert (trainer.step, trainer.epoch) == (2, 1)
    (epoch,) = trainer.state.history
    for key in ("critic_real", "critic_fake", "generator", "r1_penalty"):
        assert np.isfinite(epoch[key])
    assert epoch["lr"] == TINY.lr_phases[0][1]
    kinds = [p.kind for p in first_run.progress]
    assert kinds == ["step", "step", "collapse", "epoch", "checkpoint"]
    assert [p.step for p in first_run.progress[:2]] == [1, 2]
    assert first_run.progress[-1].checkpoint == first_run.checkpoint
    assert first_run.progress[0].seconds_per_step > 0
    assert first_run.progress[0].eta_seconds == pytest.approx(
        (TINY.total_steps - 1) * first_run.progress[0].seconds_per_step
    )


def test_collapse_warning_is_recorded_not_fatal(first_run):
    (event,) = first_run.trainer.state.events
    assert event.kind == "collapse" and event.new_lr is None
    assert "static latents" in event.reason
    assert first_run.trainer.state.history[0]["collapse"].startswith("collapse: static latents")


def test_checkpoint_folder_holds_everything_and_opens_as_official(first_run):
    folder = first_run.checkpoint
    assert folder.parent.name == "checkpoints" and not folder.name.startswith(".")
    marker = json.loads((folder / MARKER_FILE).read_text())
    expected = {"gen.h5", "gen_ema.h5", "critic.h5", "opt_dec.npy", "opt_disc.npy", "switch.npy",
                "training_state.json", "samples/sample-1.npy"}
    assert set(marker["files"]) == expected
    assert (marker["step"], marker["epoch"]) == (2, 1)
    state = json.loads((folder / "training_state.json").read_text())
    assert state["lineage"] == {"datasets": ["piano-latents@v1"], "code_version": "test"}
    assert TrainConfig.from_dict(state["config"]).gan == TINY.gan
    assert state["learning_rate"] == TINY.lr_phases[1][1]
    assert np.load(folder / "samples" / "sample-1.npy").shape[1] == 128

    imported = official.import_musika(folder)
    assert imported.gan.config == TINY.gan
    assert imported.switch == pytest.approx(float(first_run.trainer.training.switch.numpy()))
    assert imported.generator_optimizer.iterations == 2
    assert_same_weights(imported.gan.generator_ema, first_run.trainer.networks.generator_ema)


def test_tensorboard_scalars_are_written_beside_the_checkpoints(first_run):
    run_dir = first_run.checkpoint.parent.parent
    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    tags = {}
    for record in tf.data.TFRecordDataset([str(path) for path in events]):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            tags.setdefault(value.tag, []).append(event.step)
    assert tags["loss/generator"] == [1, 2]
    assert tags["loss/lr"] == [1, 2]
    assert tags["epoch/critic_real"] == [2]


# --- resume and fine-tune ----------------------------------------------------------------------


def test_resume_continues_the_step_counter_from_the_saved_weights(first_run, tmp_path):
    checkpoint = copy_checkpoint(first_run.checkpoint, tmp_path)
    resumed = Trainer.resume(checkpoint, first_run.sources)
    assert resumed.run_dir == tmp_path
    assert (resumed.step, resumed.epoch) == (2, 1)
    for role, model in resumed.networks.as_dict().items():
        assert_same_weights(model, first_run.trainer.networks.as_dict()[role])
    first_state = official.optimizer_state_from_keras(
        first_run.trainer.training.critic_optimizer, first_run.trainer.networks.critic.trainable_weights
    )
    resumed_state = official.optimizer_state_from_keras(
        resumed.training.critic_optimizer, resumed.networks.critic.trainable_weights
    )
    assert resumed_state.iterations == first_state.iterations == 2
    for a, b in zip(first_state.second_moments, resumed_state.second_moments):
        np.testing.assert_array_equal(a, b)
    assert float(resumed.training.switch.numpy()) == float(first_run.trainer.training.switch.numpy())

    result = resumed.train()
    assert (result.step, result.epoch, result.finished) == (4, 2, True)
    assert [entry["step"] for entry in result.history] == [2, 4]
    assert result.history[1]["lr"] == TINY.lr_phases[1][1]
    assert int(resumed.training.generator_optimizer.iterations) == 4
    assert latest_checkpoint(tmp_path) == result.last_checkpoint
    assert read_checkpoint_info(result.last_checkpoint).step == 4


def test_finetune_loads_the_parent_and_records_lineage(first_run, tmp_path):
    config = TrainConfig.from_dict({**TINY.to_dict(), "lr_phases": [[3, 4e-5], [2, 1e-5]]})
    sources = [
        LatentSource("recordings", latent_items(5), weight=0.7),
        LatentSource("replay", first_run.sources[0].items, weight=0.3),
    ]
    trainer = Trainer.finetune(
        first_run.checkpoint, config, sources, tmp_path / "finetune",
        lineage={"datasets": ["mozart@v2", "piano-latents@v1"]},
    )
    assert (trainer.step, trainer.epoch) == (0, 0)
    assert trainer.learning_rate == 4e-5
    for role, model in trainer.networks.as_dict().items():
        assert_same_weights(model, first_run.trainer.networks.as_dict()[role])
    assert int(trainer.training.critic_optimizer.iterations) == 2
    parent = trainer.state.lineage["parent_checkpoint"]
    assert parent["folder"] == str(first_run.checkpoint) and parent["kind"] == "musika-piano"
    assert parent["step"] == 2 and len(parent["marker_sha256"]) == 64
    assert trainer.state.lineage["datasets"] == ["mozart@v2", "piano-latents@v1"]
    assert trainer.state.events == [] and trainer.state.history == []


def test_finetune_from_an_official_folder(tmp_path):
    official_folder = tmp_path / "official"
    gan = build_gan(TINY.gan)
    official.save_gan_weights(official_folder, gan.generator, gan.generator_ema, gan.critic)
    official.write_switch(official_folder / official.SWITCH_FILE, -0.3)
    assert read_checkpoint_info(official_folder).kind == "official"
    trainer = Trainer.finetune(
        official_folder, TINY, [LatentSource("s", latent_items(1))], tmp_path / "run"
    )
    assert_same_weights(trainer.networks.generator, gan.generator)
    assert_same_weights(trainer.networks.critic, gan.critic)
    assert float(trainer.training.switch.numpy()) == pytest.approx(-0.3)
    assert int(trainer.training.generator_optimizer.iterations) == 0
    assert trainer.state.lineage["parent_checkpoint"]["kind"] == "official"


def test_finetune_from_an_official_folder_with_optimizer_state(first_run, tmp_path):
    folder = tmp_path / "official"
    shutil.copytree(first_run.checkpoint, folder)
    for name in (MARKER_FILE, "training_state.json"):
        (folder / name).unlink()
    shutil.rmtree(folder / "samples")
    assert read_checkpoint_info(folder).kind == "official"
    trainer = Trainer.finetune(folder, TINY, first_run.sources, tmp_path / "run")
    assert int(trainer.training.generator_optimizer.iterations) == 2
    assert_same_weights(trainer.networks.generator_ema, first_run.trainer.networks.generator_ema)


def test_resuming_an_official_folder_is_refused(tmp_path):
    gan = build_gan(TINY.gan)
    official.save_gan_weights(tmp_path, gan.generator, gan.generator_ema, gan.critic)
    with pytest.raises(CheckpointError, match="fine-tune from it"):
        Trainer.resume(tmp_path, [LatentSource("s", latent_items(1))])


def test_base_channels_mismatch_is_refused_with_both_values(first_run, tmp_path):
    wider = TrainConfig.from_dict({**TINY.to_dict(), "gan": {"base_channels": 32, "small": True}})
    with pytest.raises(CheckpointMismatchError, match=r"base_channels=16.*asks for base_channels=32"):
        Trainer.finetune(first_run.checkpoint, wider, first_run.sources, tmp_path)
    with pytest.raises(CheckpointMismatchError, match=r"base_channels=16.*asks for base_channels=32"):
        Trainer.resume(first_run.checkpoint, first_run.sources, tmp_path, config=wider)
    assert not any(tmp_path.iterdir())


# --- corrupted and interrupted checkpoints -----------------------------------------------------


def test_truncated_weight_file_is_named(first_run, tmp_path):
    checkpoint = copy_checkpoint(first_run.checkpoint, tmp_path)
    generator = checkpoint / "gen.h5"
    generator.write_bytes(generator.read_bytes()[:1000])
    with pytest.raises(CorruptCheckpointError, match=r"gen\.h5.*truncated"):
        load_checkpoint(checkpoint)


def test_altered_file_of_the_same_size_is_named(first_run, tmp_path):
    checkpoint = copy_checkpoint(first_run.checkpoint, tmp_path)
    data = bytearray((checkpoint / "opt_disc.npy").read_bytes())
    data[-5] ^= 0xFF
    (checkpoint / "opt_disc.npy").write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match=r"opt_disc\.npy.*sha256"):
        read_checkpoint_info(checkpoint)


def test_missing_marker_means_an_incomplete_checkpoint(first_run, tmp_path):
    checkpoint = copy_checkpoint(first_run.checkpoint, tmp_path)
    (checkpoint / MARKER_FILE).unlink()
    with pytest.raises(CorruptCheckpointError, match=r"checkpoint\.json is missing"):
        Trainer.resume(checkpoint, first_run.sources)
    assert list_checkpoints(tmp_path) == []


def test_truncated_official_weights_are_named(tmp_path):
    gan = build_gan(TINY.gan)
    official.save_gan_weights(tmp_path, gan.generator, gan.generator_ema, gan.critic)
    critic = tmp_path / "critic.h5"
    critic.write_bytes(critic.read_bytes()[:2000])
    with pytest.raises(CorruptCheckpointError, match=r"critic\.h5"):
        load_checkpoint(tmp_path)


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="not found"):
        read_checkpoint_info(tmp_path / "nowhere")
    with pytest.raises(CheckpointNotFoundError, match="holds no GAN checkpoint"):
        read_checkpoint_info(tmp_path)


def test_a_failing_write_keeps_the_previous_checkpoint(first_run, tmp_path):
    """A file-size limit stands in for a full disk: every write past 100 kB fails."""
    checkpoint = copy_checkpoint(first_run.checkpoint, tmp_path)
    trainer = Trainer.resume(checkpoint, first_run.sources)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
    try:
        with pytest.raises(CheckpointWriteError, match="File too large"):
            trainer.save_checkpoint(samples=([], []))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [checkpoint.name]
    assert latest_checkpoint(tmp_path) == checkpoint
    load_checkpoint(checkpoint)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from musika_model.training import Trainer
    from musika_model.training_data import LatentSource

    trainer = Trainer.resume(sys.argv[1], [LatentSource("s", [np.load(sys.argv[2])])])
    print("ready", flush=True)
    while True:
        trainer.save_checkpoint(samples=([], []))
    """
)


def test_a_process_killed_while_saving_leaves_a_loadable_checkpoint(first_run, tmp_path):
    checkpoint = copy_checkpoint(first_run.checkpoint, tmp_path)
    np.save(tmp_path / "latents.npy", first_run.sources[0].items[0])
    process = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(checkpoint), str(tmp_path / "latents.npy")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "ready"
        checkpoints = tmp_path / "checkpoints"
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(".tmp-") for p in checkpoints.iterdir()):
            assert time.monotonic() < deadline, "no save started within 60 s"
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    complete = list_checkpoints(tmp_path)
    assert complete, "no complete checkpoint survived"
    state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state.info.step == 2
    assert_same_weights(state.networks.generator, first_run.trainer.networks.generator)
    for folder in complete:
        read_checkpoint_info(folder)
    Trainer.resume(latest_checkpoint(tmp_path), first_run.sources).save_checkpoint(samples=([], []))
    assert not [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]


# --- the divergence guard ----------------------------------------------------------------------


def test_nan_rolls_back_halves_the_lr_and_gives_up_after_the_limit(tmp_path):
    config = TrainConfig.from_dict(
        {**TINY.to_dict(), "iterations_per_epoch": 3, "lr_phases": [[3, 1e-4]],
         "max_rollbacks": 1, "sample_count": 0}
    )
    poison = {"at_steps": {2}}
    progress: list[TrainingProgress] = []

    def poison_a_weight(report: TrainingProgress) -> None:
        progress.append(report)
        if report.kind == "step" and (report.step in poison["at_steps"] or poison.get("always")):
            poison["at_steps"].discard(report.step)
            weight = trainer.networks.generator.weights[0]
            weight.assign(np.full(weight.shape, np.nan, np.float32))

    trainer = Trainer(config, [LatentSource("s", latent_items(2))], tmp_path, on_progress=poison_a_weight)
    healthy = weights_of(trainer.networks.generator)
    result = trainer.train(max_epochs=1)

    (event,) = result.events
    assert (event.kind, event.step, event.epoch, event.restored_step) == ("divergence", 3, 0, 0)
    assert "is nan at step 3" in event.reason
    assert (event.lr, event.new_lr) == (1e-4, 5e-5)
    assert "divergence" in [p.kind for p in progress]
    assert (result.step, result.epoch) == (3, 1)
    assert all(np.isfinite(result.history[0][key]) for key in ("generator", "critic_real"))
    assert float(trainer.training.generator_optimizer.learning_rate) == pytest.approx(5e-5)
    assert float(trainer.training.critic_optimizer.learning_rate) == pytest.approx(5e-5)
    assert result.history[0]["lr"] == pytest.approx(5e-5)
    assert not np.array_equal(weights_of(trainer.networks.generator)[1], healthy[1])
    saved = json.loads((result.last_checkpoint / "training_state.json").read_text())
    assert saved["rollbacks"] == 1 and saved["events"][0]["new_lr"] == 5e-5

    poison["always"] = True
    before = weights_of(trainer.networks.generator)
    with pytest.raises(TrainingDiverged, match="after 1 rollback") as raised:
        trainer.train(max_epochs=1)
    assert [e.kind for e in raised.value.events] == ["divergence", "divergence"]
    assert raised.value.events[-1].new_lr is None
    assert trainer.step == 3
    for a, b in zip(weights_of(trainer.networks.generator), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_collapse_can_be_treated_as_divergence(tmp_path):
    config = TrainConfig.from_dict(
        {**TINY.to_dict(), "static_latent_ratio": 1e9, "collapse_as_divergence": True,
         "max_rollbacks": 0}
    )
    trainer = Trainer(config, [LatentSource("s", latent_items(3))], tmp_path)
    with pytest.raises(TrainingDiverged, match="collapse: static latents"):
        trainer.train()
    assert trainer.step == 0 and latest_checkpoint(tmp_path) is None


@pytest.mark.slow
def test_with_an_autoencoder_samples_are_wav_and_judged_as_audio(tmp_path):
    from musika_model.codec import Autoencoder
    from musika_model.config import AutoencoderConfig

    progress: list[TrainingProgress] = []
    config = TrainConfig.from_dict({**TINY.to_dict(), "iterations_per_epoch": 1})
    trainer = Trainer(
        config, [LatentSource("s", latent_items(4))], tmp_path,
        autoencoder=Autoencoder.build(AutoencoderConfig.tiny()), on_progress=progress.append,
    )
    result = trainer.train(max_epochs=1)
    marker = json.loads((result.last_checkpoint / MARKER_FILE).read_text())
    assert {"samples/sample-1.wav", "samples/sample-1.npy"} <= set(marker["files"])
    verdict = result.history[0]["collapse"]
    assert verdict == "ok" or "dBFS" in verdict or "beep" in verdict


# --- collapse checks ---------------------------------------------------------------------------


def seconds(duration: float) -> np.ndarray:
    return np.arange(int(duration * SR)) / SR


def stereo(mono: np.ndarray) -> np.ndarray:
    return np.stack([mono, mono], axis=1).astype(np.float32)


def piano_like(duration: float = 6.0, seed: int = 0) -> np.ndarray:
    """Chords of three decaying notes with 1/k partials, a new chord every half second, plus noise."""
    rng = np.random.default_rng(seed)
    t = seconds(duration)
    audio = np.zeros_like(t)
    chord_length = 0.5
    for start in np.arange(0, duration, chord_length):
        root = 48 + int(rng.integers(0, 12))
        local = t[(t >= start) & (t < start + 2.0)] - start
        index = slice(int(start * SR), int(start * SR) + len(local))
        for interval in (0, 4, 7):
            frequency = 440.0 * 2 ** ((root + interval - 69) / 12)
            for partial in range(1, 7):
                audio[index] += np.sin(2 * np.pi * frequency * partial * local) / partial * np.exp(-3 * local)
    audio = 0.2 * audio / np.abs(audio).max()
    return stereo(audio + 0.003 * rng.standard_normal(len(t)))


def test_pure_tone_is_a_beep():
    report = collapse_report(stereo(0.3 * np.sin(2 * np.pi * 440 * seconds(4))), SR)
    assert report.tonal and not report.silent and report.collapsed
    assert report.peak_frequency_hz == pytest.approx(440, abs=11)
    assert report.peak_band_ratio > 0.9
    assert "beep" in report.reason


def test_tone_under_a_little_noise_is_still_a_beep():
    rng = np.random.default_rng(0)
    audio = 0.3 * np.sin(2 * np.pi * 1000 * seconds(4)) + 0.01 * rng.standard_normal(4 * SR)
    assert collapse_report(stereo(audio), SR).tonal


@pytest.mark.parametrize("level", [0.0, 1e-5])
def test_silence_is_flagged(level):
    rng = np.random.default_rng(1)
    report = collapse_report(stereo(level * rng.standard_normal(3 * SR)), SR)
    assert report.silent and report.collapsed and not report.tonal
    assert "near-silence" in report.reason


def test_piano_like_music_passes():
    report = collapse_report(piano_like(), SR)
    assert not report.collapsed, report
    tone = collapse_report(stereo(0.2 * np.sin(2 * np.pi * 262 * seconds(6))), SR)
    assert report.peak_band_ratio < tone.peak_band_ratio / 2
    assert report.rms_dbfs > -40


def test_noise_and_music_mix_passes():
    rng = np.random.default_rng(2)
    mix = piano_like(seed=3) + stereo(0.05 * rng.standard_normal(6 * SR))
    report = collapse_report(mix, SR)
    assert not report.collapsed
    assert report.spectral_flatness > collapse_report(piano_like(seed=3), SR).spectral_flatness


def test_collapse_report_refuses_bad_audio():
    with pytest.raises(ValueError, match="NaN"):
        collapse_report(np.array([0.0, np.nan]), SR)
    with pytest.raises(ValueError, match="n >= 1"):
        collapse_report(np.zeros((0, 2)), SR)


def test_latent_report_flags_static_and_non_finite_latents():
    rng = np.random.default_rng(0)
    real = np.tanh(rng.standard_normal((64, 128)))
    reference = temporal_std(real)
    assert not latent_report(np.tanh(rng.standard_normal((64, 128))), reference).collapsed
    constant = np.tile(real[:1], (64, 1)) + 1e-4 * rng.standard_normal((64, 128))
    static = latent_report(constant, reference)
    assert static.static and "static latents" in static.reason
    broken = real.copy()
    broken[3, 3] = np.inf
    assert latent_report(broken, reference).reason == "non-finite generated latents"


# --- configuration -----------------------------------------------------------------------------


def test_config_round_trips_through_json():
    config = preset("finetune_recordings", seed=7, mixed_precision=False)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_presets_hold_the_recipes():
    pretrain = preset("piano_pretrain")
    assert pretrain.gan.base_channels == 256 and pretrain.lr_phases == ((283, 2e-5),)
    finetune = preset("finetune_recordings")
    assert finetune.epochs == 100 and finetune.lr_phases[0] == (15, 4e-5)
    assert finetune.gan == pretrain.gan
    small = preset("tiny")
    assert small.gan.base_channels <= 32 and small.batch_size <= 4
    assert small.mixed_precision is None and small.xla is None


def test_phases_give_the_lr_of_each_epoch():
    config = preset("finetune_recordings")
    assert [config.phase_at(e) for e in (0, 14, 15, 99, 120)] == [
        (0, 4e-5), (0, 4e-5), (1, 1e-5), (1, 1e-5), (1, 1e-5)
    ]
    assert config.total_steps == 100 * config.iterations_per_epoch


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lr_phases": []}, "lr_phases is empty"),
        ({"lr_phases": [[10, -1e-4]]}, "positive learning rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"rollback_lr_factor": 1.5}, "rollback_lr_factor"),
        ({"colour": "blue"}, "unknown TrainConfig field"),
    ],
)
def test_bad_configs_are_refused(change, message):
    with pytest.raises(TrainConfigError, match=message):
        TrainConfig.from_dict({**TrainConfig().to_dict(), **change})


def test_unknown_preset_lists_the_names():
    with pytest.raises(TrainConfigError, match="piano_pretrain, finetune_recordings, tiny"):
        preset("huge")


def test_gan_config_of_a_checkpoint_is_read_without_networks(first_run):
    info = read_checkpoint_info(first_run.checkpoint)
    assert info.kind == "musika-piano" and info.gan == GanConfig(base_channels=16, small=True)
    assert info.training.lineage["code_version"] == "test"
