"""Every training setting is a CLI flag; a preset meant for a GPU is refused on a CPU before
Prefect starts; the device choice."""

from __future__ import annotations

import argparse

import pytest

import flows.train
from flows.cli.commands import build_parser, settings_from_args
from flows.params import AutoencoderTrainingSettings, TrainingSettings
from musika_model import devices
from musika_model.config import GanConfig
from musika_model.devices import DeviceUnavailableError, gpu_visible, select_device
from musika_model.train_config import TrainConfig, preset
from tasks.train import gan as training
from tests.helpers import run_cli

without_gpu = pytest.mark.skipif(gpu_visible(), reason="the refusals need a machine without a GPU")


def _command(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        [subcommands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
        parser = subcommands.choices[name]
    return parser


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


@pytest.mark.parametrize(
    ("command", "model"),
    [(("train", "pretrain"), TrainingSettings), (("train", "finetune"), TrainingSettings),
     (("train", "autoencoder"), AutoencoderTrainingSettings)],
)
def test_every_setting_has_a_flag_with_its_description_and_default(command, model):
    flags = _flags(_command(*command))
    missing = [name for name in model.model_fields if "--" + name.replace("_", "-") not in flags]
    assert not missing, f"musika-piano {' '.join(command)} has no flag for {model.__name__} fields {missing}"
    for name, field in model.model_fields.items():
        action = flags["--" + name.replace("_", "-")]
        assert action.dest == name
        assert field.description.removesuffix(".") in action.help and "default" in action.help, name


def test_the_flags_parse_into_the_settings():
    args = build_parser().parse_args([
        "train", "pretrain", "piano-latents", "--name", "gan", "--no-xla", "--mixed-precision",
        "--mixed-precision-dtype", "bfloat16", "--max-rollbacks", "5", "--small", "--device", "cpu", "--allow-cpu",
        "--lr-phases", "2@1e-4,3@5e-5", "--no-collapse-as-divergence", "--publish-every", "2",
    ])
    assert settings_from_args(TrainingSettings, args) == TrainingSettings(
        preset="piano_pretrain", xla=False, mixed_precision=True, mixed_precision_dtype="bfloat16", max_rollbacks=5,
        small=True, device="cpu", allow_cpu=True, lr_phases=[(2, 1e-4), (3, 5e-5)], collapse_as_divergence=False,
        publish_every=2,
    )
    # Flags not given leave every field at its default: the same settings as the deployment's.
    args = build_parser().parse_args(["train", "finetune", "piano-gan", "mozart-latents"])
    assert settings_from_args(TrainingSettings, args) == TrainingSettings(preset="finetune_recordings")
    args = build_parser().parse_args(["train", "autoencoder", "piano", "--width-divisor", "4", "--learning-rate",
                                      "1e-3", "--preset", "tiny"])
    assert settings_from_args(AutoencoderTrainingSettings, args) == AutoencoderTrainingSettings(
        preset="tiny", width_divisor=4, learning_rate=1e-3)


def test_config_settings_reach_the_train_config_and_execution_choices_do_not():
    chosen = {"preset": "tiny", "xla": False, "max_rollbacks": 5, "mixed_precision_dtype": "bfloat16", "small": False}
    config = flows.train.checked_config(TrainingSettings(**chosen, allow_cpu=True))
    assert (config.xla, config.max_rollbacks, config.mixed_precision_dtype, config.gan.small) == (
        False, 5, "bfloat16", False)
    assert config == flows.train.checked_config(TrainingSettings(**chosen))


def test_the_cpu_estimate_scales_with_batch_and_width():
    assert training.cpu_seconds_per_step(TrainConfig(gan=GanConfig(base_channels=128), batch_size=8)) == 1.0
    assert training.cpu_seconds_per_step(preset("piano_pretrain")) == 16.0  # 4x the batch, 2x the width
    assert [training.human_duration(s) for s in (40, 600, 3 * 3600, 25.8 * 86400, 491 * 86400)] == [
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
    assert flows.train.checked_config(TrainingSettings(preset="tiny")).gan.base_channels == 16
    assert flows.train.checked_config(TrainingSettings(allow_cpu=True)).total_steps == 2_653_125


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
