"""A training run's TrainConfig and the refusals that come before anything starts: the preset with
the run's overrides (and a fine-tune parent's networks), the backend and devices applied and
checked, a GPU preset refused without a GPU. No Prefect here, so the CLI refuses bad training
settings in well under two seconds; the flows (flows/train.py) call the same `checked_config`
inside the run."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from musika_model.backends import use_backend
from musika_model.devices import select_device, training_devices
from tasks.pipeline.models import StoredModel, resolve_model

if TYPE_CHECKING:
    from musika_model.config import GanConfig
    from musika_model.train_config import TrainConfig
    from tasks.store import ArtifactStore
    from tasks.train.params import GanTrainingParams


class TrainingInputError(ValueError):
    """Training data, settings or a parent checkpoint that cannot be trained on (said precisely)."""


def checked_config(settings: GanTrainingParams, parent_gan: GanConfig | None = None) -> TrainConfig:
    """The run's TrainConfig, once `settings.backend` and `settings.device` are applied, the
    devices checked against the batch size, and a preset meant for a GPU refused when there is
    none (unless `settings.allow_cpu`). Runs before any network is built (and so before Keras is
    imported, which fixes the backend). Backend, devices and allow_cpu stay out of the config
    (and so out of the run key): they say where a run goes, not what it computes, and
    checkpoints move between backends."""
    config = train_config(settings.preset, settings.config_overrides(), parent_gan)
    use_backend(settings.backend)
    select_device(settings.device)
    training_devices(settings.device, settings.devices, config.batch_size)
    refuse_cpu_training(settings.preset, config, settings.allow_cpu)
    return config


def parent_networks(store: ArtifactStore, parent: str) -> tuple[StoredModel, GanConfig]:
    """The model `parent` (NAME or NAME@V) and the networks of its GAN checkpoint."""
    from musika_model.checkpoints import read_checkpoint_info

    model = resolve_model(store, parent)
    _, parent_dir = model.require_gan()
    return model, read_checkpoint_info(parent_dir, verify_hashes=False).gan


def train_config(preset_name: str, overrides: dict[str, Any], parent_gan=None) -> TrainConfig:
    """The preset with `overrides` (TrainConfig fields, plus base_channels/small for the GAN).

    Fine-tuning (`parent_gan` given) keeps the parent's networks unless base_channels or small
    is asked for explicitly; an explicit mismatch is refused later, with both values."""
    from musika_model.train_config import TrainConfigError, preset

    fields_ = dict(overrides)
    gan_fields = {name: fields_.pop(name) for name in ("base_channels", "small") if name in fields_}
    if "lr_phases" in fields_:
        fields_["lr_phases"] = tuple(tuple(phase) for phase in fields_["lr_phases"])
    try:
        config = preset(preset_name, **fields_)
        gan = parent_gan if parent_gan is not None else config.gan
        return replace(config, gan=replace(gan, **gan_fields))
    except (TypeError, ValueError) as error:
        if isinstance(error, TrainConfigError):
            raise TrainingInputError(str(error)) from error
        raise TrainingInputError(f"invalid training configuration: {error}") from error


GPU_PRESETS = frozenset({"piano_pretrain", "finetune_recordings"})
"""Presets sized for a GPU: without one they are refused unless allow_cpu."""
CPU_SECONDS_PER_STEP = 1.0
"""A rough figure measured on a 2-core x86 CPU: one fp32 step at base_channels 128, batch 8,
256-frame windows. A step's cost grows about linearly with the batch and the window length and
quadratically with base_channels (`cpu_seconds_per_step`)."""


def cpu_seconds_per_step(config: TrainConfig) -> float:
    """The rough seconds one step of `config` takes on a CPU (from CPU_SECONDS_PER_STEP)."""
    window = 0.5 if config.gan.small else 1.0
    return CPU_SECONDS_PER_STEP * config.batch_size / 8 * (config.gan.base_channels / 128) ** 2 * window


def human_duration(seconds: float) -> str:
    """`seconds` in the largest unit that keeps the number readable: "70.2 weeks", "25.8 days"."""
    for unit, size in (("weeks", 7 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= (8 if unit == "weeks" else 2) * size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.0f} seconds"


def refuse_cpu_training(preset_name: str, config: TrainConfig, allow_cpu: bool) -> None:
    """Refuse a preset meant for a GPU when the backend sees none (weeks of training on a CPU),
    with the estimated duration and the way to start anyway; `allow_cpu` lets it through."""
    if allow_cpu or preset_name not in GPU_PRESETS:
        return
    from musika_model.backends import active_backend
    from musika_model.devices import gpu_visible

    if gpu_visible():
        return
    seconds = config.total_steps * cpu_seconds_per_step(config)
    backend = {"tensorflow": "TensorFlow", "jax": "JAX"}.get(active_backend(), active_backend())
    raise TrainingInputError(
        f"preset {preset_name} is meant for a GPU and {backend} sees none: {config.total_steps:,} steps "
        f"at base_channels {config.gan.base_channels}, batch {config.batch_size} would take about "
        f"{human_duration(seconds)} on this CPU; train on a GPU worker, pick --preset tiny, or pass "
        "--allow-cpu (settings.allow_cpu) to start anyway"
    )
