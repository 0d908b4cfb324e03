"""Mixed precision in the GAN trainer: float16 with dynamic loss scaling, bfloat16, checkpoints
that hold float32 weights and the loss scale, and a divergence guard that tells a skipped
update from a real NaN."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from musika_model import official
from musika_model.checkpoints import LOSS_SCALE_FILE, CheckpointMismatchError, latest_checkpoint
from musika_model.train_config import TrainConfig, preset
from musika_model.training import Trainer, TrainingProgress
from musika_model.training_data import (
    LatentSource,
    NonFiniteTrainingLatentsError,
    SourceTooShortError,
)

MIXED = preset(
    "tiny", iterations_per_epoch=2, mixed_precision=True, xla=False, sample_count=0,
    lr_phases=((1, 1e-4), (1, 5e-5)),
)


def sources(seed: int) -> list[LatentSource]:
    rng = np.random.default_rng(seed)
    length = MIXED.gan.latent_length + 30
    return [LatentSource("s", [np.tanh(rng.standard_normal((length, 128))).astype(np.float32)])]


def h5_dtypes(path: Path) -> set[str]:
    found: set[str] = set()
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda _, node: found.add(str(node.dtype)) if isinstance(node, h5py.Dataset) else None
        )
    return found


def finite_weights(trainer: Trainer) -> bool:
    return all(
        np.isfinite(np.array(weight, dtype=np.float32)).all()
        for model in trainer.networks.as_dict().values()
        for weight in model.weights
    )


def compute_dtypes(model: keras.Model) -> set[str]:
    return {layer.compute_dtype for layer in model.layers if layer.weights}


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """One epoch (2 steps) of a tiny mixed_float16 run and its checkpoint."""
    run_dir = tmp_path_factory.mktemp("mixed")
    trainer = Trainer(MIXED, sources(0), run_dir)
    result = trainer.train(max_epochs=1)
    return trainer, result.last_checkpoint


def test_mixed_float16_computes_in_half_and_saves_float32_weights_and_the_loss_scale(mixed_run):
    trainer, checkpoint = mixed_run
    assert trainer.policy == "mixed_float16"
    assert compute_dtypes(trainer.networks.generator) == {"float16"}
    assert compute_dtypes(trainer.networks.critic) == {"float16"}
    assert isinstance(trainer.training.critic_optimizer, keras.optimizers.LossScaleOptimizer)
    for name in official.GAN_FILE_NAMES.values():
        assert h5_dtypes(checkpoint / name) == {"float32"}, name
    saved = json.loads((checkpoint / LOSS_SCALE_FILE).read_text())
    for role in ("generator", "critic"):
        optimizer = getattr(trainer.training, f"{role}_optimizer")
        assert saved[role] == {
            "scale": float(optimizer.dynamic_scale.numpy()),
            "good_steps": int(optimizer.step_counter.numpy()),
        }
    history = trainer.state.history[0]
    # Each of the 4 updates either applied or was skipped by the scaler, never both.
    applied = sum(int(getattr(trainer.training, f"{r}_optimizer").iterations) for r in ("generator", "critic"))
    assert applied + history["skipped_updates"] == 4
    assert np.isfinite(history["generator"]) and finite_weights(trainer)


def test_a_mixed_checkpoint_resumes_with_its_loss_scale_and_fine_tunes(mixed_run, tmp_path):
    trainer, checkpoint = mixed_run
    saved = json.loads((checkpoint / LOSS_SCALE_FILE).read_text())
    fresh = {"scale": 2.0**15, "good_steps": 0}  # a new LossScaleOptimizer's state
    assert saved["critic"] != fresh  # two steps moved it: either good steps or a lower scale
    copy = tmp_path / "resumed" / "checkpoints" / checkpoint.name
    shutil.copytree(checkpoint, copy)

    resumed = Trainer.resume(copy, sources(0))
    assert resumed.policy == "mixed_float16" and (resumed.step, resumed.epoch) == (2, 1)
    for role in ("generator", "critic"):
        optimizer = getattr(resumed.training, f"{role}_optimizer")
        assert float(optimizer.dynamic_scale.numpy()) == saved[role]["scale"]
        assert int(optimizer.step_counter.numpy()) == saved[role]["good_steps"]
    for role, model in resumed.networks.as_dict().items():
        for a, b in zip(model.weights, trainer.networks.as_dict()[role].weights, strict=True):
            np.testing.assert_array_equal(np.array(a), np.array(b))
    result = resumed.train()
    assert (result.step, result.epoch, result.finished) == (4, 2, True)
    assert finite_weights(resumed)

    config = TrainConfig.from_dict({**MIXED.to_dict(), "lr_phases": [[1, 4e-5]]})
    tuned = Trainer.finetune(result.last_checkpoint, config, sources(1), tmp_path / "tuned")
    assert tuned.policy == "mixed_float16" and tuned.step == 0
    assert float(tuned.training.critic_optimizer.dynamic_scale.numpy()) == float(
        resumed.training.critic_optimizer.dynamic_scale.numpy()
    )
    tuned_result = tuned.train()
    assert tuned_result.finished and tuned_result.events == [] and finite_weights(tuned)
    assert h5_dtypes(tuned_result.last_checkpoint / "gen_ema.h5") == {"float32"}


def test_updates_the_loss_scaler_skips_are_not_divergence(tmp_path):
    """A scale of 2^40 overflows every float16 gradient: the scaler skips the updates and halves
    the scale each time; the losses and weights stay finite, so the guard sees no divergence."""
    config = TrainConfig.from_dict({**MIXED.to_dict(), "iterations_per_epoch": 3, "log_every": 1})
    trainer = Trainer(config, sources(2), tmp_path)
    for optimizer in (trainer.training.generator_optimizer, trainer.training.critic_optimizer):
        optimizer.dynamic_scale.assign(2.0**40)
    before = [np.array(w) for w in trainer.networks.generator.trainable_weights]
    result = trainer.train(max_epochs=1)
    assert result.events == [] and trainer.state.rollbacks == 0
    assert result.history[0]["skipped_updates"] == 6
    assert int(trainer.training.generator_optimizer.iterations) == 0
    assert float(trainer.training.critic_optimizer.dynamic_scale.numpy()) == 2.0**37
    for a, b in zip(before, trainer.networks.generator.trainable_weights, strict=True):
        np.testing.assert_array_equal(a, np.array(b))
    assert finite_weights(trainer)


def test_a_real_nan_under_mixed_precision_rolls_back(tmp_path):
    config = TrainConfig.from_dict(
        {**MIXED.to_dict(), "iterations_per_epoch": 3, "lr_phases": [[1, 1e-4]], "log_every": 1}
    )
    poisoned: list[int] = []

    def poison_once(report: TrainingProgress) -> None:
        if report.kind == "step" and report.step == 2 and not poisoned:
            poisoned.append(report.step)
            weight = trainer.networks.critic.weights[0]
            weight.assign(np.full(weight.shape, np.nan, np.float32))

    trainer = Trainer(config, sources(3), tmp_path, on_progress=poison_once)
    result = trainer.train()
    (event,) = result.events
    assert (event.kind, event.step, event.restored_step) == ("divergence", 3, 0)
    assert "nan" in event.reason.lower()
    assert (event.lr, event.new_lr) == (1e-4, 5e-5)
    assert result.finished and finite_weights(trainer)
    assert latest_checkpoint(tmp_path) == result.last_checkpoint


def test_bfloat16_trains_without_loss_scaling(tmp_path):
    config = TrainConfig.from_dict(
        {**MIXED.to_dict(), "mixed_precision_dtype": "bfloat16", "lr_phases": [[1, 1e-4]]}
    )
    trainer = Trainer(config, sources(4), tmp_path)
    assert trainer.policy == "mixed_bfloat16"
    assert compute_dtypes(trainer.networks.generator) == {"bfloat16"}
    assert not isinstance(trainer.training.generator_optimizer, keras.optimizers.LossScaleOptimizer)
    result = trainer.train()
    assert result.finished and result.history[0]["skipped_updates"] == 0 and finite_weights(trainer)
    assert not (result.last_checkpoint / LOSS_SCALE_FILE).exists()
    assert h5_dtypes(result.last_checkpoint / "gen.h5") == {"float32"}


@pytest.mark.parametrize(
    "changes",
    [{"xla": True}, {"mixed_precision": True}, {"mixed_precision_dtype": "bfloat16", "xla": True}],
)
def test_bad_latents_are_refused_on_every_compiler_and_precision_path(changes, tmp_path):
    config = TrainConfig.from_dict({**MIXED.to_dict(), **changes})
    window = config.gan.latent_length
    short = [LatentSource("short", [np.zeros((window - 1, 128), np.float32)])]
    with pytest.raises(SourceTooShortError, match=str(window)):
        Trainer(config, short, tmp_path)
    poisoned = np.zeros((window + 10, 128), np.float32)
    poisoned[3, 7] = np.nan
    with pytest.raises(NonFiniteTrainingLatentsError, match="frame 3"):
        Trainer(config, [LatentSource("nan", [poisoned])], tmp_path)


def test_a_mixed_checkpoint_refuses_other_networks_on_resume(mixed_run):
    _, checkpoint = mixed_run
    wider = TrainConfig.from_dict({**MIXED.to_dict(), "gan": {**MIXED.gan.to_dict(), "base_channels": 32}})
    with pytest.raises(CheckpointMismatchError, match="base_channels=16.*base_channels=32"):
        Trainer.resume(checkpoint, sources(0), config=wider)
