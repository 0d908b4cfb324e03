"""The training stages' parameters: a preset plus any of its fields replaced, for the GAN
(`GanTrainingParams`) and the autoencoder (`AutoencoderTrainingParams`). One model each for the
flow's form and the CLI flags (every field is a flag, its description the help, so a field left
unset says its default in its description). Pydantic, the standard library and the
TensorFlow-free preset table only.

The presets' names come from their tables: the GAN's in `musika_model.train_config.PRESETS`, the
autoencoder's here (`AUTOENCODER_PRESETS`, read by `tasks.train.autoencoder`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from musika_model.train_config import PRESETS as GAN_PRESETS

AUTOENCODER_PRESETS: dict[str, dict[str, Any]] = {
    # A few steps for tests; the high stage-2 rate makes the latents vary within 4 steps.
    "tiny": {"stage1_steps": 2, "stage2_steps": 4, "batch_size": 2, "stage2_learning_rate": 1e-2},
    # `musika-piano demo` on the bundled demo datasets: 30-40 s of training on 2 cores.
    "demo": {
        "stage1_steps": 240,
        "stage2_steps": 120,
        "batch_size": 2,
        "stage2_learning_rate": 5e-4,
    },
    "full": {},
}
"""AeTrainingConfig fields per preset; "full" is the AeTrainingConfig defaults."""

GanPreset = Literal[tuple(GAN_PRESETS)]  # type: ignore[valid-type]
AutoencoderPreset = Literal[tuple(AUTOENCODER_PRESETS)]  # type: ignore[valid-type]

_GAN_CONFIG_FIELDS = frozenset({
    "base_channels", "small", "lr_phases", "batch_size", "iterations_per_epoch", "save_every", "keep_checkpoints",
    "seed", "max_rollbacks", "collapse_as_divergence", "mixed_precision", "mixed_precision_dtype", "xla",
})
_AUTOENCODER_TRAINING_FIELDS = frozenset({"stage1_steps", "stage2_steps", "batch_size", "learning_rate", "seed"})


class GanTrainingParams(BaseModel):
    """A GAN training configuration: a preset, and any of its fields replaced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: GanPreset = Field(
        default="piano_pretrain",
        description="piano_pretrain: base_channels 256, lr 2e-5, 283 epochs; finetune_recordings: 15 epochs at "
        "4e-5 then 85 at 1e-5; tiny: seconds on a CPU, for tests and the demo.",
    )
    base_channels: int | None = Field(
        default=None, ge=4, le=1024,
        description="Network width; default: the preset's (fine-tuning: the parent's).",
    )
    small: bool | None = Field(
        default=None,
        description="128-frame windows instead of 256; default: the preset's (fine-tuning: the parent's).",
    )
    lr_phases: list[tuple[int, float]] | None = Field(
        default=None, description="(epochs, learning rate) phases run in order: [[15, 4e-5], [135, 1e-5]], on "
        "the command line 15@4e-5,135@1e-5; default: the preset's.",
    )
    batch_size: int | None = Field(
        default=None, ge=1, le=1024, description="Windows per training step; default: the preset's.",
    )
    iterations_per_epoch: int | None = Field(
        default=None, ge=1, description="Steps per epoch; default: the preset's.",
    )
    save_every: int | None = Field(
        default=None, ge=1, description="Save a checkpoint every N epochs; default: the preset's.",
    )
    keep_checkpoints: int | None = Field(
        default=None, ge=1, description="Checkpoints kept in the run folder; default: the preset's.",
    )
    publish_every: int = Field(
        default=10, ge=1, description="Publish a model version every N epochs (and always the final checkpoint).",
    )
    seed: int | None = Field(
        default=None, ge=0, description="Seed of the data draws and the initial weights; default: the preset's.",
    )
    max_rollbacks: int | None = Field(
        default=None, ge=0, description="Divergence rollbacks (restore the last healthy epoch, halve the lr) "
        "before giving up; default: the preset's.",
    )
    collapse_as_divergence: bool | None = Field(
        default=None, description="Treat collapsed samples (silence, beeps) like a NaN: roll back, lower the lr; "
        "default: the preset's (a warning only).",
    )
    mixed_precision: bool | None = Field(
        default=None, description="Compute in a half type, keep float32 weights; default: on when a GPU is visible.",
    )
    mixed_precision_dtype: Literal["float16", "bfloat16"] | None = Field(
        default=None, description="Half type of mixed precision: float16 (with dynamic loss scaling; any CUDA GPU) "
        "or bfloat16 (no loss scaling; Ampere or newer GPUs, CPUs with AVX512-BF16); default: float16.",
    )
    xla: bool | None = Field(
        default=None, description="Compile the training step with XLA; default: on when a GPU is visible.",
    )
    device: Literal["auto", "gpu", "cpu"] = Field(
        default="auto", description="auto: a GPU when TensorFlow sees one, else the CPU; gpu: refuse to start "
        "without one; cpu: hide the GPUs from this run.",
    )
    backend: Literal["tensorflow", "jax"] | None = Field(
        default=None, description="Keras backend: tensorflow (the default install; trains on one device) or jax "
        "(data parallel over several GPUs; hosts with JAX but no TensorFlow; pip install -e '.[jax-cuda]'); "
        "default: $KERAS_BACKEND, else tensorflow.",
    )
    devices: Annotated[int, Field(ge=1)] | Literal["all"] = Field(
        default="all", description="JAX: how many devices of the --device kind split each batch (data parallel; "
        "the batch size must be a multiple), or all of them; TensorFlow trains on one.",
    )
    allow_cpu: bool = Field(
        default=False, description="Train a GPU-sized preset (piano_pretrain, finetune_recordings) without a GPU, "
        "which takes weeks; without it such a run is refused before it starts.",
    )
    runs_dir: str | None = Field(
        default=None, description="Where run folders (checkpoints, TensorBoard) live; default: "
        "$MUSIKA_PIANO_RUNS, else runs/ beside the store.",
    )
    concurrency_limit: str | None = Field(
        default=None, description="Prefect global concurrency limit held while training (the deployments use "
        "'gpu'; create it first: prefect gcl create gpu --limit 1); default: none.",
    )

    def config_overrides(self) -> dict[str, Any]:
        """The fields given that replace the preset's TrainConfig fields (and so enter the run
        key); backend, device, devices, allow_cpu, publishing, runs_dir and the concurrency limit say where and how
        a run goes, not what it computes."""
        return self.model_dump(include=set(_GAN_CONFIG_FIELDS), exclude_none=True)


class AutoencoderTrainingParams(BaseModel):
    """How long and how the autoencoder trains: a preset plus optional overrides."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: AutoencoderPreset = Field(
        default="full",
        description="full: 2000 + 1000 steps at batch 8 (the trainer's defaults); demo: 30-40 s "
        "of training on 2 CPU cores; tiny: a few steps, for tests.",
    )
    stage1_steps: int | None = Field(default=None, ge=0, description="Level-1 steps; default: the preset's.")
    stage2_steps: int | None = Field(default=None, ge=0, description="Level-2 steps; default: the preset's.")
    batch_size: int | None = Field(
        default=None, ge=1, le=256, description="Crops per step; default: the preset's."
    )
    learning_rate: float | None = Field(
        default=None, gt=0.0, description="Stage-1 Adam learning rate; default: the preset's."
    )
    seed: int | None = Field(
        default=None, ge=0, description="Seed of crops and initial weights; default: the preset's."
    )
    max_items: int | None = Field(
        default=None,
        ge=1,
        description="Train on at most this many items, spread evenly over the dataset (the training "
        "audio is held in memory); default: all.",
    )
    width_divisor: int = Field(
        default=16,
        ge=1,
        le=128,
        description="Every hidden width of the official autoencoder divided by this "
        "(1: the official widths, impractical on a CPU).",
    )

    def training_overrides(self) -> dict[str, Any]:
        """The fields given that replace the preset's AeTrainingConfig fields; the network widths
        (`width_divisor`) and the items (`max_items`) are the plan's other inputs."""
        return self.model_dump(include=set(_AUTOENCODER_TRAINING_FIELDS), exclude_none=True)
