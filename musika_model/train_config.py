"""GAN training configuration: `TrainConfig`, the presets, and the Keras precision policy a run
trains under (mixed float16/bfloat16 or float32, with a probe for bfloat16 kernels).

TensorFlow/Keras are imported only when a policy is checked or applied.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .backends import active_backend
from .config import GanConfig
from .devices import gpu_visible

MIXED_PRECISION_DTYPES = ("float16", "bfloat16")


class TrainConfigError(ValueError):
    """A training configuration value out of range."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a GAN training run is parameterised by."""

    gan: GanConfig = field(default_factory=GanConfig)
    batch_size: int = 32
    iterations_per_epoch: int = 9375
    """The original's epoch: 300000 windows / batch 32."""
    lr_phases: tuple[tuple[int, float], ...] = ((250, 1e-4),)
    """(epochs, learning rate) pairs run in order; the run lasts their total epochs."""
    save_every: int = 1
    """Save a checkpoint every N epochs (and always after the last epoch of a `train` call)."""
    keep_checkpoints: int = 3
    seed: int = 0
    r1_max_weight: float = 10.0
    ema_decay: float = 0.999
    mixed_precision: bool | None = None
    """None: on when a GPU is visible (fp32 on CPU)."""
    mixed_precision_dtype: str = "float16"
    """The half type of mixed precision: "float16" (dynamic loss scaling) or "bfloat16" (float32's
    exponent range, no loss scaling; needs hardware with bfloat16 kernels)."""
    xla: bool | None = None
    """None: on when a GPU is visible. TensorFlow only: JAX always compiles the step."""
    log_every: int = 20
    """Steps between loss checks, TensorBoard scalars and "step" progress reports."""
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5
    collapse_check: bool = True
    collapse_as_divergence: bool = False
    sample_count: int = 2
    """Samples (one GAN window each) per epoch for the collapse check and each checkpoint."""
    sample_truncation: float = 2.0
    silence_dbfs: float = -50.0
    tonal_peak_ratio: float = 0.5
    static_latent_ratio: float = 0.1

    def __post_init__(self) -> None:
        phases = tuple((int(epochs), float(lr)) for epochs, lr in self.lr_phases)
        object.__setattr__(self, "lr_phases", phases)
        positive = {
            "batch_size": self.batch_size,
            "iterations_per_epoch": self.iterations_per_epoch,
            "save_every": self.save_every,
            "keep_checkpoints": self.keep_checkpoints,
            "log_every": self.log_every,
        }
        for name, value in positive.items():
            if int(value) != value or value < 1:
                raise TrainConfigError(f"{name} must be a positive integer, got {value!r}")
        if not phases:
            raise TrainConfigError("lr_phases is empty: give at least one (epochs, lr) phase")
        for epochs, lr in phases:
            if epochs < 1 or not (math.isfinite(lr) and lr > 0):
                raise TrainConfigError(
                    f"lr phase ({epochs}, {lr}) needs epochs >= 1 and a positive learning rate"
                )
        if not 0.0 < self.rollback_lr_factor < 1.0:
            raise TrainConfigError(
                f"rollback_lr_factor must be in (0, 1), got {self.rollback_lr_factor}"
            )
        if self.max_rollbacks < 0 or self.sample_count < 0:
            raise TrainConfigError("max_rollbacks and sample_count must not be negative")
        if self.mixed_precision_dtype not in MIXED_PRECISION_DTYPES:
            raise TrainConfigError(
                f"mixed_precision_dtype must be one of {', '.join(MIXED_PRECISION_DTYPES)}, "
                f"got {self.mixed_precision_dtype!r}"
            )
        if not 0.0 <= self.ema_decay < 1.0 or self.r1_max_weight < 0:
            raise TrainConfigError(
                f"ema_decay must be in [0, 1) and r1_max_weight >= 0, got {self.ema_decay}, "
                f"{self.r1_max_weight}"
            )

    @property
    def epochs(self) -> int:
        return sum(epochs for epochs, _ in self.lr_phases)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.iterations_per_epoch

    def phase_at(self, epoch: int) -> tuple[int, float]:
        """(phase index, learning rate) of the 0-based `epoch`; past the end, the last phase."""
        end = 0
        for index, (epochs, lr) in enumerate(self.lr_phases):
            end += epochs
            if epoch < end:
                return index, lr
        return len(self.lr_phases) - 1, self.lr_phases[-1][1]

    def to_dict(self) -> dict:
        """Plain data; fields added after the first release are left out at their defaults,
        so the run keys of configurations that do not use them stay what they were."""
        data = asdict(self)
        data["gan"] = self.gan.to_dict()
        data["lr_phases"] = [[epochs, lr] for epochs, lr in self.lr_phases]
        for name, default in _LATER_FIELD_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainConfigError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        values = dict(data)
        if "gan" in values:
            values["gan"] = GanConfig.from_dict(values["gan"])
        if "lr_phases" in values:
            values["lr_phases"] = tuple(tuple(phase) for phase in values["lr_phases"])
        return cls(**values)


_LATER_FIELD_DEFAULTS = {"mixed_precision_dtype": "float16"}


def piano_pretrain() -> TrainConfig:
    """The recipe that worked best: rendered piano MIDI, base_channels 256, lr 2e-5, ~283 epochs."""
    return TrainConfig(gan=GanConfig(base_channels=256), lr_phases=((283, 2e-5),))


def finetune_recordings() -> TrainConfig:
    """Fine-tune a `piano_pretrain` model on recordings: 15 epochs at 4e-5, then 85 at 1e-5."""
    return TrainConfig(gan=GanConfig(base_channels=256), lr_phases=((15, 4e-5), (85, 1e-5)))


def tiny() -> TrainConfig:
    """Seconds-long CPU runs for tests and the demo: base_channels 16, small windows, batch 2."""
    return TrainConfig(
        gan=GanConfig(base_channels=16, small=True),
        batch_size=2,
        iterations_per_epoch=4,
        lr_phases=((1, 1e-4), (1, 5e-5)),
        log_every=1,
        keep_checkpoints=2,
        sample_count=1,
    )


PRESETS: dict[str, Callable[[], TrainConfig]] = {
    "piano_pretrain": piano_pretrain,
    "finetune_recordings": finetune_recordings,
    "tiny": tiny,
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset, with any TrainConfig fields replaced by `overrides`."""
    if name not in PRESETS:
        raise TrainConfigError(f"unknown preset '{name}'; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[name](), **overrides)


# --- precision ---------------------------------------------------------------------------------


def precision_policy(config: TrainConfig) -> str:
    """The Keras dtype policy a run trains under: "float32", "mixed_float16" or "mixed_bfloat16".

    `mixed_precision` None means on when a GPU is visible. A bfloat16 policy is refused with
    `TrainConfigError` where the device has no bfloat16 convolution kernels.
    """
    mixed = gpu_visible() if config.mixed_precision is None else config.mixed_precision
    policy = f"mixed_{config.mixed_precision_dtype}" if mixed else "float32"
    if policy == "mixed_bfloat16" and not _bfloat16_convolutions():
        raise TrainConfigError(
            "mixed_precision_dtype bfloat16 needs bfloat16 kernels (NVIDIA GPUs of compute "
            "capability 8.0 or newer, CPUs with AVX512-BF16 or AMX), which this device lacks; "
            "use float16 (--mixed-precision-dtype float16) or no mixed precision"
        )
    return policy


def _bfloat16_convolutions() -> bool:
    """Whether the default device runs a bfloat16 Conv2D (a one-off probe of a few microseconds).
    XLA, and so JAX, has bfloat16 convolutions on every device it supports."""
    if active_backend() == "jax":
        return True
    import tensorflow as tf

    try:
        probe = tf.zeros((1, 1, 4, 2), tf.bfloat16)
        tf.nn.conv2d(probe, tf.zeros((1, 2, 2, 2), tf.bfloat16), strides=1, padding="SAME").numpy()
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
        return False
    return True


@contextmanager
def using_dtype_policy(policy: str) -> Iterator[None]:
    """Build networks under a Keras dtype policy, restoring the global policy afterwards."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
