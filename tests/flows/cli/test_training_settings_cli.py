"""The training flags parse into the settings (--lr-phases as EPOCHS@LR pairs; that every field
has a flag is tests/flows/cli/test_cli.py's); a preset meant for a GPU is refused on a CPU before
Prefect starts; the device choice."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import flows.train
from flows.cli.commands import app
from flows.cli.options import params
from musika_model import devices
from musika_model.config import GanConfig
from musika_model.devices import DeviceUnavailableError, gpu_visible, select_device
from musika_model.train_config import TrainConfig, preset
from tasks.train.config import checked_config, cpu_seconds_per_step, human_duration
from tasks.train.params import AutoencoderTrainingParams, GanTrainingParams
from tests.helpers import run_cli

without_gpu = pytest.mark.skipif(gpu_visible(), reason="the refusals need a machine without a GPU")


def _settings(*argv: str) -> GanTrainingParams | AutoencoderTrainingParams:
    """The settings `musika-piano ARGV` would train with (the command is parsed, not run)."""
    _, bound, _ = app.parse_args(list(argv), exit_on_error=False, print_error=False)
    bound.apply_defaults()
    return params(bound.arguments["settings"])


def test_the_flags_parse_into_the_settings():
    assert _settings(
        "train", "pretrain", "piano-latents", "--name", "gan", "--no-xla", "--mixed-precision",
        "--mixed-precision-dtype", "bfloat16", "--max-rollbacks", "5", "--small", "--device", "cpu", "--allow-cpu",
        "--lr-phases", "2@1e-4,3@5e-5", "--no-collapse-as-divergence", "--publish-every", "2",
    ) == GanTrainingParams(
        preset="piano_pretrain", xla=False, mixed_precision=True, mixed_precision_dtype="bfloat16", max_rollbacks=5,
        small=True, device="cpu", allow_cpu=True, lr_phases=[(2, 1e-4), (3, 5e-5)], collapse_as_divergence=False,
        publish_every=2,
    )
    # Flags not given leave every field at its default: the same settings as the deployment's.
    assert _settings("train", "finetune", "piano-gan", "mozart-latents") == GanTrainingParams(
        preset="finetune_recordings")
    # ... also when some are given: fine-tuning keeps its own preset.
    assert _settings("train", "finetune", "piano-gan", "mozart-latents", "--seed", "3") == GanTrainingParams(
        preset="finetune_recordings", seed=3)
    assert _settings("train", "autoencoder", "piano", "--width-divisor", "4", "--learning-rate", "1e-3",
                     "--preset", "tiny") == AutoencoderTrainingParams(preset="tiny", width_divisor=4,
                                                                      learning_rate=1e-3)


@pytest.mark.parametrize(("flags", "phases"), [
    (["--lr-phases", "15@4e-5,135@1e-5"], [(15, 4e-5), (135, 1e-5)]),
    (["--lr-phases", "15@4e-5", "--lr-phases", "135@1e-5"], [(15, 4e-5), (135, 1e-5)]),
    (["--lr-phases", "7@0.001"], [(7, 1e-3)]),
    ([], None),
])
def test_lr_phases_are_epochs_at_rate_pairs(flags, phases):
    assert _settings("train", "pretrain", "piano-latents", "--name", "gan", *flags).lr_phases == phases


@pytest.mark.parametrize("text", ["15", "15@", "@4e-5", "15@fast", "1.5@4e-5", "15@4e-5,"])
def test_a_malformed_lr_phase_is_a_one_line_error(text, tmp_path):
    code, out, err = run_cli("--store", str(tmp_path / "store"), "train", "pretrain", "piano-latents",
                             "--name", "gan", "--lr-phases", text)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("musika-piano: --lr-phases: ") and "is not EPOCHS@LR (e.g. 15@4e-5,135@1e-5)" in err


def test_config_settings_reach_the_train_config_and_execution_choices_do_not():
    chosen = {"preset": "tiny", "xla": False, "max_rollbacks": 5, "mixed_precision_dtype": "bfloat16", "small": False}
    config = checked_config(GanTrainingParams(**chosen, allow_cpu=True))
    assert (config.xla, config.max_rollbacks, config.mixed_precision_dtype, config.gan.small) == (
        False, 5, "bfloat16", False)
    assert config == checked_config(GanTrainingParams(**chosen))


def test_the_cpu_estimate_scales_with_batch_and_width():
    assert cpu_seconds_per_step(TrainConfig(gan=GanConfig(base_channels=128), batch_size=8)) == 1.0
    assert cpu_seconds_per_step(preset("piano_pretrain")) == 16.0  # 4x the batch, 2x the width
    assert [human_duration(s) for s in (40, 600, 3 * 3600, 25.8 * 86400, 491 * 86400)] == [
        "40 seconds", "10.0 minutes", "3.0 hours", "25.8 days", "70.1 weeks"]


@without_gpu
def test_a_gpu_preset_is_refused_on_a_cpu_before_prefect_starts(monkeypatch, tmp_path):
    def no_flow(**_: object) -> dict:
        raise AssertionError("the flow started")

    monkeypatch.setattr(flows.train, "pretrain", no_flow)
    code, out, err = run_cli("--store", str(tmp_path / "store"), "train", "pretrain", "piano-latents",
                             "--name", "piano-gan")
    assert code == 2 and out == ""
    assert err.startswith("musika-piano: preset piano_pretrain is meant for a GPU")
    assert "2,653,125 steps at base_channels 256, batch 32 would take about 70.2 weeks on this CPU" in err
    assert "--preset tiny" in err and "--allow-cpu (settings.allow_cpu)" in err
    # tiny is meant for a CPU; allow_cpu starts a GPU preset anyway.
    assert checked_config(GanTrainingParams(preset="tiny")).gan.base_channels == 16
    assert checked_config(GanTrainingParams(allow_cpu=True)).total_steps == 2_653_125


@without_gpu
def test_device_gpu_is_refused_without_one(monkeypatch, tmp_path):
    monkeypatch.setattr(flows.train, "pretrain", lambda **_: pytest.fail("the flow started"))
    code, _, err = run_cli("--store", str(tmp_path / "store"), "train", "pretrain", "piano-latents", "--name", "g",
                           "--preset", "tiny", "--device", "gpu")
    assert code == 2 and "--device gpu: TensorFlow sees no GPU" in err
    assert "--device auto" in err and "--device cpu" in err
    # The same answers from TensorFlow itself, as on a machine with GPU drivers.
    monkeypatch.setattr(devices, "_without_gpu_drivers", lambda: False)
    assert not gpu_visible()
    select_device("cpu")
    with pytest.raises(DeviceUnavailableError, match="--device auto"):
        select_device("gpu")
    with pytest.raises(ValueError, match="auto, gpu, cpu"):
        select_device("tpu")


def test_backend_and_devices_parse_and_bad_ones_are_one_line_before_prefect():
    assert _settings("train", "pretrain", "x", "--name", "g", "--backend", "jax", "--devices", "2") == GanTrainingParams(
        backend="jax", devices=2)
    assert _settings("train", "pretrain", "x", "--name", "g").devices == "all"
    code, _, err = run_cli("train", "pretrain", "x", "--name", "g", "--preset", "tiny", "--backend", "torch")
    assert code == 2 and "--backend" in err and "'tensorflow' or 'jax'" in err
    code, _, err = run_cli("train", "pretrain", "x", "--name", "g", "--preset", "tiny", "--devices", "2")
    assert code == 2 and "--devices 2: data parallel training needs the JAX backend" in err


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
@pytest.mark.parametrize("flags, message", [
    (("--devices", "3"), "--devices 3: JAX sees 1 CPU device(s) here"),
    (("--device", "gpu"), "--device gpu: JAX has no GPU backend here"),
    (("--devices", "2", "--batch-size", "3"), "batch size 3 does not split evenly over 2 devices"),
])
def test_jax_device_requests_that_cannot_be_met_are_one_line_before_any_network(flags, message, tmp_path):
    """In a fresh process, since Keras fixes its backend at import (this one runs TensorFlow)."""
    env = {key: value for key, value in os.environ.items() if key not in ("KERAS_BACKEND", "XLA_FLAGS")}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2" if "2" in flags else "")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "musika-piano"), "--store", str(tmp_path / "store"), "train", "pretrain",
         "x", "--name", "g", "--preset", "tiny", "--backend", "jax", *flags],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1
