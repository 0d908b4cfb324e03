"""The Musika GAN trainer: configuration and presets, the training loop with a divergence guard,
a collapse check on each epoch's samples, and resumable checkpoint folders.

Loop (docs/musika.md §4): epochs x iterations of `gan_step`'s step (hinge, R1 with
the adaptive switch, EMA, L/R swap) on random windows of weighted latent sources
(`training_data`). The learning rate follows `TrainConfig.lr_phases` times a scale that the
divergence guard lowers.

Divergence guard: every `log_every` steps the losses are checked for NaN/Inf and the weights
of generator, EMA generator and critic for NaN/Inf. On a hit the trainer restores the in-memory
snapshot taken at the end of the last healthy epoch (weights, optimizer state, switch,
counters), multiplies the lr scale by `rollback_lr_factor`, records a "divergence" event and
repeats the epoch with fresh data draws; after `max_rollbacks` rollbacks it raises
`TrainingDiverged`. The lowered scale applies to every later phase too: the run has shown the
lr was too high.

Collapse check: at each epoch end `sample_count` samples of one window come from the EMA
generator. With an autoencoder they are decoded and judged by `collapse_report` (silence, or
a narrow-band "beep"); without one their latents are judged by `latent_report` (non-finite,
or nearly constant over time compared with the training windows). When every sample
collapsed, a "collapse" event is recorded and logged as a warning, or, with
`collapse_as_divergence`, handled like a NaN.

Checkpoint folder (written into `.tmp-<name>-<pid>` beside it, then renamed; `checkpoint.json`
is the last file written, so a folder without it is incomplete):

    gen.h5, gen_ema.h5, critic.h5     official-layout weights (open in the original tools)
    opt_dec.npy, opt_disc.npy         Adam state of generator / critic, official npy layout
    switch.npy                        R1 switch
    loss_scale.json                   dynamic loss scales (mixed_float16 runs only)
    training_state.json               counters, lr scale, TrainConfig, lineage, events, history
    samples/sample-N.npy (.wav)       EMA-generator latents (and audio with an autoencoder)
    checkpoint.json                   format, step, epoch, GAN config, size + sha256 of every file

A run folder holds `checkpoints/<epoch-EEEE-step-SSSSSSSS>/` and `tensorboard/`.
TensorFlow is imported only when a trainer or a checkpoint's networks are built.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import official
from .config import SAMPLE_RATE, SAMPLES_PER_LATENT, GanConfig
from .devices import gpu_visible
from .training_data import LatentSource, WindowSampler, make_dataset

if TYPE_CHECKING:
    import keras

    from .codec import Autoencoder
    from .gan_step import GanTraining
    from .networks import GanNetworks

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "musika-piano-gan-checkpoint"
CHECKPOINT_VERSION = 1
MARKER_FILE = "checkpoint.json"
STATE_FILE = "training_state.json"
LOSS_SCALE_FILE = "loss_scale.json"
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
LOSS_KEYS = ("critic_real", "critic_fake", "generator", "r1_penalty", "r1_weight", "switch")
SWITCH_START = -1.0
HASH_BLOCK = 1 << 20
MIXED_PRECISION_DTYPES = ("float16", "bfloat16")


# --- errors ------------------------------------------------------------------------------------


class TrainConfigError(ValueError):
    """A training configuration value out of range."""


class TrainingDiverged(RuntimeError):
    """NaN/Inf (or collapse treated as divergence) persisted through every allowed rollback.

    The trainer is left at its last healthy state, so `save_checkpoint()` can still keep it.
    """

    def __init__(self, message: str, events: Sequence[TrainingEvent]) -> None:
        super().__init__(message)
        self.events = list(events)


class CheckpointError(Exception):
    """Base class of checkpoint problems."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint folder, or a folder holding no checkpoint."""


class CorruptCheckpointError(CheckpointError):
    """An incomplete or damaged checkpoint (missing marker, truncated or altered file)."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint whose networks differ from the configuration (base_channels, small)."""


class CheckpointWriteError(CheckpointError):
    """Writing a checkpoint failed (e.g. disk full); the previous checkpoints are untouched."""


# --- configuration -----------------------------------------------------------------------------


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
    """None: on when a GPU is visible."""
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


# --- collapse checks ---------------------------------------------------------------------------

SPECTRUM_FFT = 4096
PEAK_HALF_WIDTH_BINS = 3
"""The "narrow band" around the strongest bin: +-3 bins of a 4096-point FFT (+-32 Hz at 44.1 kHz)."""
LOWEST_FREQUENCY = 20.0


@dataclass(frozen=True)
class CollapseReport:
    """Scores of one generated sample and what they flag."""

    silent: bool
    tonal: bool
    rms_dbfs: float
    peak_band_ratio: float
    """Share of the long-term spectrum's energy in the narrow band around its strongest bin."""
    peak_frequency_hz: float
    spectral_flatness: float
    """Geometric over arithmetic mean of the long-term power spectrum (1 = white noise)."""

    @property
    def collapsed(self) -> bool:
        return self.silent or self.tonal

    @property
    def reason(self) -> str:
        if self.silent:
            return f"near-silence ({self.rms_dbfs:.1f} dBFS)"
        if self.tonal:
            return (
                f"beep: {self.peak_band_ratio:.0%} of the energy within "
                f"+-{PEAK_HALF_WIDTH_BINS} bins of {self.peak_frequency_hz:.0f} Hz"
            )
        return "ok"


def _long_term_spectrum(channels: np.ndarray) -> np.ndarray:
    """Mean power spectrum over Hann frames of every channel, summed over channels."""
    window = np.hanning(SPECTRUM_FFT)
    hop = SPECTRUM_FFT // 2
    spectrum = np.zeros(SPECTRUM_FFT // 2 + 1)
    for channel in channels:
        if len(channel) < SPECTRUM_FFT:
            channel = np.pad(channel, (0, SPECTRUM_FFT - len(channel)))
        frames = np.lib.stride_tricks.sliding_window_view(channel, SPECTRUM_FFT)[::hop]
        spectrum += (np.abs(np.fft.rfft(frames * window, axis=1)) ** 2).mean(axis=0)
    return spectrum


def collapse_report(
    audio: np.ndarray,
    sample_rate: int,
    *,
    silence_dbfs: float = -50.0,
    tonal_peak_ratio: float = 0.5,
) -> CollapseReport:
    """Judge audio ((n,) or (n, channels)) for near-silence and for a narrow-band "beep".

    silent: RMS over all channels below `silence_dbfs`. tonal: not silent, and more than
    `tonal_peak_ratio` of the long-term spectrum's energy (above 20 Hz) sits within +-3 FFT
    bins of its strongest bin. Music spreads its energy over many partials and pitches over
    time; a stuck tone does not.
    """
    samples = np.asarray(audio, dtype=np.float64)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise ValueError(f"audio must be (n,) or (n, channels) with n >= 1, got {samples.shape}")
    if not np.isfinite(samples).all():
        raise ValueError("audio contains NaN or Inf")
    rms = math.sqrt(float(np.mean(samples**2)))
    rms_dbfs = 20.0 * math.log10(max(rms, 1e-10))
    spectrum = _long_term_spectrum(samples.T)
    frequencies = np.fft.rfftfreq(SPECTRUM_FFT, 1.0 / sample_rate)
    spectrum[frequencies < LOWEST_FREQUENCY] = 0.0
    total = float(spectrum.sum())
    if total > 0:
        peak = int(np.argmax(spectrum))
        band = spectrum[max(0, peak - PEAK_HALF_WIDTH_BINS) : peak + PEAK_HALF_WIDTH_BINS + 1]
        ratio = float(band.sum()) / total
        used = spectrum[frequencies >= LOWEST_FREQUENCY]
        flatness = float(np.exp(np.mean(np.log(used + 1e-30))) / np.mean(used))
        peak_hz = float(frequencies[peak])
    else:
        ratio, flatness, peak_hz = 0.0, 0.0, 0.0
    silent = rms_dbfs < silence_dbfs
    return CollapseReport(
        silent=silent,
        tonal=not silent and ratio > tonal_peak_ratio,
        rms_dbfs=rms_dbfs,
        peak_band_ratio=ratio,
        peak_frequency_hz=peak_hz,
        spectral_flatness=flatness,
    )


@dataclass(frozen=True)
class LatentReport:
    """Statistics of generated latents when no autoencoder is at hand to listen to them."""

    finite: bool
    static: bool
    temporal_std: float
    """Mean over latent dimensions of the standard deviation over time."""
    reference_std: float
    """The same statistic on training windows."""

    @property
    def collapsed(self) -> bool:
        return not self.finite or self.static

    @property
    def reason(self) -> str:
        if not self.finite:
            return "non-finite generated latents"
        if self.static:
            return (
                f"static latents: variation over time {self.temporal_std:.4f} against "
                f"{self.reference_std:.4f} in the training data"
            )
        return "ok"


def temporal_std(latents: np.ndarray) -> float:
    """Mean over windows and dimensions of the std over time of (T, D) or (B, T, D) latents."""
    values = np.asarray(latents, dtype=np.float64)
    if values.ndim == 2:
        values = values[None]
    return float(values.std(axis=1).mean())


def latent_report(
    latents: np.ndarray, reference_std: float, static_ratio: float = 0.1
) -> LatentReport:
    """Flag non-finite latents, or latents varying less than `static_ratio` x the training data."""
    finite = bool(np.isfinite(latents).all())
    variation = temporal_std(latents) if finite else float("nan")
    return LatentReport(
        finite=finite,
        static=finite and variation < static_ratio * reference_std,
        temporal_std=variation,
        reference_std=reference_std,
    )


# --- training state and events -----------------------------------------------------------------


@dataclass(frozen=True)
class TrainingEvent:
    """A rollback ("divergence") or a collapse warning ("collapse")."""

    kind: str
    step: int
    epoch: int
    reason: str
    lr: float
    new_lr: float | None = None
    """The lowered lr after a rollback; None for warnings and for the final, fatal divergence."""
    restored_step: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingState:
    """Counters and records of a run; saved as training_state.json in every checkpoint."""

    config: TrainConfig
    step: int = 0
    epoch: int = 0
    """Completed epochs."""
    lr_scale: float = 1.0
    rollbacks: int = 0
    lineage: dict = field(default_factory=dict)
    events: list[TrainingEvent] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    """Per completed epoch: epoch, step, mean losses, lr, seconds, collapse verdict."""

    @property
    def learning_rate(self) -> float:
        return self.config.phase_at(self.epoch)[1] * self.lr_scale

    def to_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "epoch": self.epoch,
            "phase": self.config.phase_at(self.epoch)[0],
            "learning_rate": self.learning_rate,
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "config": self.config.to_dict(),
            "lineage": self.lineage,
            "events": [event.to_dict() for event in self.events],
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, data: dict) -> TrainingState:
        return cls(
            config=TrainConfig.from_dict(data["config"]),
            step=int(data["step"]),
            epoch=int(data["epoch"]),
            lr_scale=float(data["lr_scale"]),
            rollbacks=int(data["rollbacks"]),
            lineage=dict(data.get("lineage", {})),
            events=[TrainingEvent(**event) for event in data.get("events", [])],
            history=list(data.get("history", [])),
        )


# --- checkpoint files --------------------------------------------------------------------------


@dataclass
class CheckpointInfo:
    """What a checkpoint folder holds, read without building networks (no TensorFlow)."""

    folder: Path
    kind: str
    """"musika-piano" (this trainer's format) or "official" (gen/gen_ema/critic[/switch/opt])."""
    gan: GanConfig
    training: TrainingState | None
    """None for official folders, which carry no counters or configuration."""
    marker: dict | None

    @property
    def step(self) -> int:
        return self.training.step if self.training else 0

    @property
    def epoch(self) -> int:
        return self.training.epoch if self.training else 0


@dataclass
class CheckpointState:
    """A loaded checkpoint: networks, optimizer states and switch, plus its `CheckpointInfo`."""

    info: CheckpointInfo
    networks: GanNetworks
    switch: float
    generator_optimizer: official.OptimizerState | None
    critic_optimizer: official.OptimizerState | None
    loss_scales: dict[str, dict] = field(default_factory=dict)
    """{"generator"|"critic": {"scale", "good_steps"}} of a mixed_float16 run."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CorruptCheckpointError(f"{path}: unreadable JSON ({error})") from error


def _verify_files(folder: Path, marker: dict, verify_hashes: bool) -> None:
    for name, expected in marker["files"].items():
        path = folder / name
        if not path.is_file():
            raise CorruptCheckpointError(f"{path}: listed in {MARKER_FILE} but missing")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise CorruptCheckpointError(
                f"{path}: {size} bytes, {MARKER_FILE} records {expected['bytes']} (truncated?)"
            )
        if verify_hashes and _sha256(path) != expected["sha256"]:
            raise CorruptCheckpointError(f"{path}: content differs from its sha256 in {MARKER_FILE}")


def read_checkpoint_info(folder: str | os.PathLike, verify_hashes: bool = True) -> CheckpointInfo:
    """Identify and check a checkpoint folder; cheap, no networks are built.

    Our format is verified against `checkpoint.json` (every file present, sizes and, with
    `verify_hashes`, sha256). An official folder is recognised by gen.h5 without
    training_state.json; its GAN configuration is read from gen.h5's shapes.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointNotFoundError(f"checkpoint folder not found: {folder}")
    marker_path, state_path = folder / MARKER_FILE, folder / STATE_FILE
    if marker_path.exists():
        marker = _read_json(marker_path)
        if marker.get("format") != CHECKPOINT_FORMAT or "files" not in marker:
            raise CorruptCheckpointError(f"{marker_path}: not a {CHECKPOINT_FORMAT} marker")
        _verify_files(folder, marker, verify_hashes)
        try:
            training = TrainingState.from_dict(_read_json(state_path))
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, CorruptCheckpointError):
                raise
            raise CorruptCheckpointError(f"{state_path}: incomplete training state ({error})") from error
        return CheckpointInfo(folder, "musika-piano", training.config.gan, training, marker)
    if state_path.exists():
        raise CorruptCheckpointError(
            f"{marker_path} is missing: the checkpoint in {folder} was not completely saved"
        )
    if (folder / official.GAN_FILE_NAMES["generator"]).exists():
        try:
            gan = official.infer_gan_config(folder)
        except official.OfficialWeightsError as error:
            raise CorruptCheckpointError(str(error)) from error
        return CheckpointInfo(folder, "official", gan, None, None)
    raise CheckpointNotFoundError(
        f"{folder} holds no GAN checkpoint (no {MARKER_FILE}, no "
        f"{official.GAN_FILE_NAMES['generator']})"
    )


@contextmanager
def _dtype_policy(policy: str) -> Iterator[None]:
    """Build networks under a Keras dtype policy, restoring the global policy afterwards."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def load_checkpoint(
    folder: str | os.PathLike, *, policy: str = "float32", verify_hashes: bool = True
) -> CheckpointState:
    """Build the networks of a checkpoint folder (ours or official) under the Keras dtype
    `policy` and load everything in it (the files hold float32 weights whatever the policy).

    Missing switch.npy gives the starting switch (-1); missing optimizer files give None, a
    missing loss_scale.json (float32 or bfloat16 runs, official folders) an empty dict.
    """
    from .networks import build_gan

    info = read_checkpoint_info(folder, verify_hashes)
    folder = info.folder
    with _dtype_policy(policy):
        networks = build_gan(info.gan)
    try:
        official.load_gan_weights(
            folder, networks.generator, networks.generator_ema, networks.critic
        )
        switch_path = folder / official.SWITCH_FILE
        switch = official.read_switch(switch_path) if switch_path.exists() else SWITCH_START
        states = []
        for name, model in (
            (official.GENERATOR_OPTIMIZER_FILE, networks.generator),
            (official.CRITIC_OPTIMIZER_FILE, networks.critic),
        ):
            path = folder / name
            shapes = [tuple(weight.shape) for weight in model.trainable_weights]
            states.append(official.read_optimizer_state(path, shapes) if path.exists() else None)
    except official.OfficialWeightsError as error:
        raise CorruptCheckpointError(str(error)) from error
    scale_path = folder / LOSS_SCALE_FILE
    loss_scales = _read_json(scale_path) if scale_path.exists() else {}
    return CheckpointState(info, networks, switch, states[0], states[1], loss_scales)


def loss_scale_state(optimizer: keras.optimizers.Optimizer) -> dict | None:
    """{"scale", "good_steps"} of a dynamic LossScaleOptimizer; None for any other optimizer."""
    import keras

    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return None
    return {
        "scale": float(optimizer.dynamic_scale.numpy()),
        "good_steps": int(optimizer.step_counter.numpy()),
    }


def apply_loss_scale_state(optimizer: keras.optimizers.Optimizer, saved: dict | None) -> None:
    """Restore a saved loss scale into a LossScaleOptimizer; other optimizers ignore it (a
    mixed_float16 run resumed in float32 or bfloat16 needs no scale)."""
    import keras

    if saved is None or not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return
    scale, good_steps = float(saved["scale"]), int(saved["good_steps"])
    if not (math.isfinite(scale) and scale > 0) or good_steps < 0:
        raise CorruptCheckpointError(f"{LOSS_SCALE_FILE}: invalid loss scale state {saved}")
    optimizer.dynamic_scale.assign(scale)
    optimizer.step_counter.assign(good_steps)


def load_generator(
    folder: str | os.PathLike, *, ema: bool = True, base_channels: int | None = None
) -> keras.Model:
    """Only the (EMA) generator of a checkpoint folder (ours or official), for generation.

    `base_channels`, when given, must match the checkpoint's; a mismatch is refused before
    anything is built, with both values in the message.
    """
    from .networks import build_generator

    info = read_checkpoint_info(folder, verify_hashes=False)
    if base_channels is not None and base_channels != info.gan.base_channels:
        raise CheckpointMismatchError(
            f"checkpoint {info.folder} has base_channels={info.gan.base_channels}, "
            f"but base_channels={base_channels} was asked for"
        )
    role = "generator_ema" if ema else "generator"
    generator = build_generator(info.gan, name=role)
    try:
        official.load_weight_file(
            info.folder / official.GAN_FILE_NAMES[role],
            generator,
            official.gan_layout_key(role, info.gan.small),
        )
    except official.OfficialWeightsError as error:
        raise CorruptCheckpointError(str(error)) from error
    return generator


def _write_samples(folder: Path, latents: Sequence[np.ndarray], audio: Sequence[np.ndarray]) -> None:
    from .audio import write_wav

    if len(latents) or len(audio):
        (folder / SAMPLES_DIR).mkdir()
    for index, sample in enumerate(latents, start=1):
        np.save(folder / SAMPLES_DIR / f"sample-{index}.npy", np.asarray(sample, np.float32))
    for index, sample in enumerate(audio, start=1):
        write_wav(folder / SAMPLES_DIR / f"sample-{index}.wav", sample, SAMPLE_RATE)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def save_checkpoint(
    destination: str | os.PathLike,
    networks: GanNetworks,
    generator_optimizer: keras.optimizers.Optimizer,
    critic_optimizer: keras.optimizers.Optimizer,
    switch: float,
    state: TrainingState,
    *,
    latent_samples: Sequence[np.ndarray] = (),
    audio_samples: Sequence[np.ndarray] = (),
) -> Path:
    """Write a checkpoint folder at `destination` (which must not exist), atomically.

    Everything goes into a hidden temporary sibling, is flushed to disk, `checkpoint.json`
    (sizes and sha256 of all files) is written last, then the folder is renamed into place. A
    failure (e.g. disk full) removes the temporary folder and raises `CheckpointWriteError`; a
    killed process leaves only the hidden temporary folder, which readers ignore.
    """
    destination = Path(destination)
    if destination.exists():
        raise CheckpointWriteError(f"checkpoint folder already exists: {destination}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".tmp-{destination.name}-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        temporary.mkdir()
        official.save_gan_weights(
            temporary, networks.generator, networks.generator_ema, networks.critic
        )
        for name, optimizer, model in (
            (official.GENERATOR_OPTIMIZER_FILE, generator_optimizer, networks.generator),
            (official.CRITIC_OPTIMIZER_FILE, critic_optimizer, networks.critic),
        ):
            optimizer_state = official.optimizer_state_from_keras(optimizer, model.trainable_weights)
            official.write_optimizer_state(temporary / name, optimizer_state)
        official.write_switch(temporary / official.SWITCH_FILE, float(np.clip(switch, -1.0, 0.0)))
        loss_scales = {
            role: scale
            for role, optimizer in (("generator", generator_optimizer), ("critic", critic_optimizer))
            if (scale := loss_scale_state(optimizer)) is not None
        }
        if loss_scales:
            (temporary / LOSS_SCALE_FILE).write_text(json.dumps(loss_scales, indent=1))
        (temporary / STATE_FILE).write_text(json.dumps(state.to_dict(), indent=1))
        _write_samples(temporary, latent_samples, audio_samples)
        files = sorted(p for p in temporary.rglob("*") if p.is_file())
        for path in files:
            _fsync(path)
        marker = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": state.step,
            "epoch": state.epoch,
            "gan": state.config.gan.to_dict(),
            "saved_at": time.time(),
            "files": {
                path.relative_to(temporary).as_posix(): {
                    "bytes": path.stat().st_size,
                    "sha256": _sha256(path),
                }
                for path in files
            },
        }
        marker_path = temporary / MARKER_FILE
        marker_path.write_text(json.dumps(marker, indent=1))
        _fsync(marker_path)
        os.rename(temporary, destination)
        _fsync(destination.parent)
    except BaseException as error:
        shutil.rmtree(temporary, ignore_errors=True)
        if isinstance(error, (OSError, RuntimeError)):  # h5py reports write errors as RuntimeError
            raise CheckpointWriteError(
                f"could not write checkpoint {destination}: {error}"
            ) from error
        raise
    return destination


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders of a run (or of a checkpoints/ folder), oldest first.

    Hidden folders (unfinished saves, folders being deleted) and folders without a readable
    marker are left out; order is by step, then save time.
    """
    run_dir = Path(run_dir)
    parent = run_dir / CHECKPOINTS_DIR if (run_dir / CHECKPOINTS_DIR).is_dir() else run_dir
    if not parent.is_dir():
        return []
    found = []
    for folder in parent.iterdir():
        if folder.name.startswith(".") or not (folder / MARKER_FILE).is_file():
            continue
        try:
            marker = json.loads((folder / MARKER_FILE).read_text())
            found.append(((int(marker["step"]), float(marker["saved_at"])), folder))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return [folder for _, folder in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


# --- progress reporting ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingProgress:
    """What the progress callback receives.

    kind: "step" (every `log_every` steps: mean losses since the last report), "epoch" (epoch
    means; `collapse` holds the verdict), "checkpoint" (`checkpoint` is the new folder),
    "divergence" (a rollback: `events[-1]`), "collapse" (a warning: `events[-1]`).
    """

    kind: str
    step: int
    epoch: int
    """Completed epochs."""
    total_steps: int
    total_epochs: int
    lr: float
    """The lr the reported steps ran at (for "epoch": the finished epoch's)."""
    losses: dict[str, float]
    events: tuple[TrainingEvent, ...]
    seconds_per_step: float | None = None
    checkpoint: Path | None = None
    collapse: str | None = None

    @property
    def eta_seconds(self) -> float | None:
        if self.seconds_per_step is None:
            return None
        return max(0, self.total_steps - self.step) * self.seconds_per_step


ProgressCallback = Callable[[TrainingProgress], None]


@dataclass
class TrainingResult:
    """How a `Trainer.train` call ended."""

    step: int
    epoch: int
    finished: bool
    """True when every epoch of the configuration is done."""
    last_checkpoint: Path | None
    history: list[dict]
    events: list[TrainingEvent]
    seconds: float


class _Diverged(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Snapshot:
    state: TrainingState
    values: list[np.ndarray]


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
    """Whether the default device runs a bfloat16 Conv2D (a one-off probe of a few microseconds)."""
    import tensorflow as tf

    try:
        probe = tf.zeros((1, 1, 4, 2), tf.bfloat16)
        tf.nn.conv2d(probe, tf.zeros((1, 2, 2, 2), tf.bfloat16), strides=1, padding="SAME").numpy()
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
        return False
    return True


def _check_same_networks(folder: Path, found: GanConfig, wanted: GanConfig) -> None:
    if found != wanted:
        raise CheckpointMismatchError(
            f"checkpoint {folder} has base_channels={found.base_channels}, small={found.small}, "
            f"coord_depth={found.coord_depth}; the configuration asks for "
            f"base_channels={wanted.base_channels}, small={wanted.small}, "
            f"coord_depth={wanted.coord_depth}"
        )


# --- the trainer -------------------------------------------------------------------------------


class Trainer:
    """One GAN training run over weighted latent sources, writing into `run_dir`.

    Start fresh with `Trainer(config, sources, run_dir)`, continue a run with
    `Trainer.resume(checkpoint, sources)`, or fine-tune any checkpoint (also an official
    folder) with `Trainer.finetune(parent, config, sources, run_dir)`. Then call `train()`.
    """

    def __init__(
        self,
        config: TrainConfig,
        sources: Sequence[LatentSource],
        run_dir: str | os.PathLike,
        *,
        autoencoder: Autoencoder | None = None,
        lineage: dict | None = None,
        on_progress: ProgressCallback | None = None,
        initial: CheckpointState | None = None,
        state: TrainingState | None = None,
    ) -> None:
        """`initial` supplies starting weights, optimizer state and switch; `state` supplies
        counters and records to continue (both come from `resume`/`finetune`)."""
        if initial is not None:
            _check_same_networks(initial.info.folder, initial.info.gan, config.gan)
        self.config = config
        self.run_dir = Path(run_dir)
        self.autoencoder = autoencoder
        self.on_progress = on_progress
        self.sampler = WindowSampler(sources, config.gan.latent_length)
        self.state = state if state is not None else TrainingState(config, lineage=dict(lineage or {}))
        self.state.config = config
        self.policy = precision_policy(config)
        self.xla = gpu_visible() if config.xla is None else config.xla
        self.networks = initial.networks if initial is not None else self._fresh_networks()
        self.training = self._create_training(initial)
        self.last_checkpoint: Path | None = None
        self._reference_std = temporal_std(
            self.sampler.batch(np.random.default_rng([config.seed, 1]), 16)
        )
        self._all_finite = self._finite_check()
        self._writer = None
        self._snapshot = self._take_snapshot()

    # ----------------------------------------------------------------- construction

    @classmethod
    def resume(
        cls,
        checkpoint: str | os.PathLike,
        sources: Sequence[LatentSource],
        run_dir: str | os.PathLike | None = None,
        *,
        config: TrainConfig | None = None,
        autoencoder: Autoencoder | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Trainer:
        """Continue the run of `checkpoint` (this trainer's format) with its step counter.

        `config` may replace the stored configuration (e.g. more epochs), with the same
        networks. `run_dir` defaults to the run folder the checkpoint sits in.
        """
        info = read_checkpoint_info(checkpoint)
        if info.training is None:
            raise CheckpointError(
                f"{info.folder} is an official checkpoint without counters; fine-tune from it "
                "with Trainer.finetune instead of resuming"
            )
        config = config or info.training.config
        _check_same_networks(info.folder, info.gan, config.gan)
        if run_dir is None:
            parent = info.folder.parent
            run_dir = parent.parent if parent.name == CHECKPOINTS_DIR else parent
        initial = load_checkpoint(info.folder, policy=precision_policy(config))
        state = copy.deepcopy(info.training)
        trainer = cls(
            config,
            sources,
            run_dir,
            autoencoder=autoencoder,
            on_progress=on_progress,
            initial=initial,
            state=state,
        )
        trainer.last_checkpoint = info.folder
        return trainer

    @classmethod
    def finetune(
        cls,
        parent: str | os.PathLike,
        config: TrainConfig,
        sources: Sequence[LatentSource],
        run_dir: str | os.PathLike,
        *,
        autoencoder: Autoencoder | None = None,
        lineage: dict | None = None,
        on_progress: ProgressCallback | None = None,
        load_optimizer: bool = True,
    ) -> Trainer:
        """Start a new run (step 0, epoch 0) from `parent`'s weights and switch.

        `parent` is any checkpoint folder of this trainer or an official one (gen.h5,
        gen_ema.h5, critic.h5, optionally switch.npy, opt_dec.npy, opt_disc.npy). A network
        mismatch is refused before any network is built. The optimizer state is carried over
        when present and `load_optimizer` (as the original fine-tunes). The lineage gets a
        `parent_checkpoint` entry unless the caller set one.
        """
        info = read_checkpoint_info(parent)
        _check_same_networks(info.folder, info.gan, config.gan)
        initial = load_checkpoint(info.folder, policy=precision_policy(config))
        if not load_optimizer:
            initial.generator_optimizer = initial.critic_optimizer = None
        lineage = dict(lineage or {})
        lineage.setdefault(
            "parent_checkpoint",
            {
                "folder": str(info.folder),
                "kind": info.kind,
                "step": info.step,
                "epoch": info.epoch,
                "marker_sha256": _sha256(info.folder / MARKER_FILE) if info.marker else None,
            },
        )
        return cls(
            config,
            sources,
            run_dir,
            autoencoder=autoencoder,
            lineage=lineage,
            on_progress=on_progress,
            initial=initial,
        )

    def _fresh_networks(self) -> GanNetworks:
        import keras

        from .networks import build_gan

        keras.utils.set_random_seed(self.config.seed)
        with _dtype_policy(self.policy):
            return build_gan(self.config.gan)

    def _create_training(self, initial: CheckpointState | None) -> GanTraining:
        """Optimizers, switch and step; the step's draws continue from the run's step counter,
        so a resumed run draws what an uninterrupted one would have."""
        from .gan_step import create_gan_training

        training = create_gan_training(
            self.networks,
            learning_rate=self.state.learning_rate,
            policy=self.policy,
            switch=initial.switch if initial is not None else SWITCH_START,
            seed=self.config.seed,
            first_draw=self.state.step,
            r1_max_weight=self.config.r1_max_weight,
            ema_decay=self.config.ema_decay,
            jit_compile=self.xla,
        )
        if initial is not None:
            for role, optimizer, model, saved in (
                ("generator", training.generator_optimizer, self.networks.generator,
                 initial.generator_optimizer),
                ("critic", training.critic_optimizer, self.networks.critic,
                 initial.critic_optimizer),
            ):
                if saved is not None:
                    official.apply_optimizer_state(optimizer, model.trainable_weights, saved)
                apply_loss_scale_state(optimizer, initial.loss_scales.get(role))
        return training

    def _finite_check(self) -> Callable[[], Any]:
        import tensorflow as tf

        variables = [
            weight
            for model in self.networks.as_dict().values()
            for weight in model.weights
        ]

        @tf.function
        def all_finite():
            return tf.reduce_all(
                tf.stack([tf.reduce_all(tf.math.is_finite(weight)) for weight in variables])
            )

        return all_finite

    # ----------------------------------------------------------------- state access

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def epoch(self) -> int:
        return self.state.epoch

    @property
    def learning_rate(self) -> float:
        return self.state.learning_rate

    @property
    def checkpoints_dir(self) -> Path:
        return self.run_dir / CHECKPOINTS_DIR

    def _variables(self) -> list:
        training = self.training
        return [
            *(w for model in self.networks.as_dict().values() for w in model.weights),
            *training.generator_optimizer.variables,
            *training.critic_optimizer.variables,
            training.switch,
        ]

    def _take_snapshot(self) -> _Snapshot:
        return _Snapshot(
            copy.deepcopy(self.state), [np.array(v.numpy()) for v in self._variables()]
        )

    def _restore_snapshot(self) -> None:
        for variable, value in zip(self._variables(), self._snapshot.values, strict=True):
            variable.assign(value)
        saved = copy.deepcopy(self._snapshot.state)
        self.state.step, self.state.epoch, self.state.history = saved.step, saved.epoch, saved.history

    def _apply_learning_rate(self) -> float:
        lr = self.state.learning_rate
        self.training.generator_optimizer.learning_rate = lr
        self.training.critic_optimizer.learning_rate = lr
        return lr

    # ----------------------------------------------------------------- reporting

    def _report(
        self, kind: str, losses: dict[str, float], lr: float | None = None, **extra: Any
    ) -> None:
        if self.on_progress is None:
            return
        self.on_progress(
            TrainingProgress(
                kind=kind,
                step=self.state.step,
                epoch=self.state.epoch,
                total_steps=self.config.total_steps,
                total_epochs=self.config.epochs,
                lr=self.state.learning_rate if lr is None else lr,
                losses=losses,
                events=tuple(self.state.events),
                **extra,
            )
        )

    def _scalars(self, prefix: str, values: dict[str, float]) -> None:
        """TensorBoard scalars, written with the scalar plugin's metadata by TensorFlow alone
        (`tf.summary.scalar` needs the tensorboard package; viewing them still does)."""
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.run_dir / TENSORBOARD_DIR))
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )
        with self._writer.as_default(step=self.state.step):
            for name, value in values.items():
                tf.summary.write(f"{prefix}/{name}", tf.constant(value, tf.float32), metadata=metadata)

    # ----------------------------------------------------------------- the loop

    def train(self, max_epochs: int | None = None) -> TrainingResult:
        """Run the remaining epochs (at most `max_epochs` of them in this call).

        Saves every `save_every` epochs and after the last epoch of the call; raises
        `TrainingDiverged` when the divergence guard runs out of rollbacks.
        """
        started = time.perf_counter()
        target = self.config.epochs
        if max_epochs is not None:
            target = min(target, self.state.epoch + max_epochs)
        saved_epoch = self.state.epoch if self.last_checkpoint is not None else None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while self.state.epoch < target:
            try:
                samples = self._run_epoch()
            except _Diverged as diverged:
                self._rollback(diverged.reason)
                continue
            self._snapshot = self._take_snapshot()
            last = self.state.epoch == target
            if self.state.epoch % self.config.save_every == 0 or last:
                self.save_checkpoint(samples)
                saved_epoch = self.state.epoch
        if saved_epoch != self.state.epoch:
            self.save_checkpoint()
        if self._writer is not None:
            self._writer.flush()
        return TrainingResult(
            step=self.state.step,
            epoch=self.state.epoch,
            finished=self.state.epoch >= self.config.epochs,
            last_checkpoint=self.last_checkpoint,
            history=list(self.state.history),
            events=list(self.state.events),
            seconds=time.perf_counter() - started,
        )

    def _run_epoch(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """One epoch; returns the epoch-end samples (latents, audio) for the checkpoint."""
        config = self.config
        lr = self._apply_learning_rate()
        epoch_started = time.perf_counter()
        data_seed = (config.seed, self.state.epoch, self.state.rollbacks)
        dataset = make_dataset(self.sampler, config.batch_size, data_seed)
        pending: list[dict] = []
        totals = np.zeros(len(LOSS_KEYS))
        skipped = 0
        report_started = time.perf_counter()
        for batch in dataset.take(config.iterations_per_epoch):
            pending.append(self.training.step(batch))
            self.state.step += 1
            if len(pending) == config.log_every:
                sums, skips = self._flush(pending, report_started)
                totals, skipped = totals + sums, skipped + skips
                pending, report_started = [], time.perf_counter()
        if pending:
            sums, skips = self._flush(pending, report_started)
            totals, skipped = totals + sums, skipped + skips
        means = dict(zip(LOSS_KEYS, (totals / config.iterations_per_epoch).tolist()))
        if skipped:
            logger.info(
                "epoch %d: the loss scaler skipped %d of %d optimizer updates (non-finite float16 "
                "gradients while the scale settles; not a divergence)",
                self.state.epoch + 1, skipped, 2 * config.iterations_per_epoch,
            )
        latents, audio, verdict = self._epoch_samples()
        self.state.epoch += 1
        self.state.history.append(
            {
                "epoch": self.state.epoch,
                "step": self.state.step,
                "lr": lr,
                **means,
                "seconds": time.perf_counter() - epoch_started,
                "collapse": verdict,
                "skipped_updates": skipped,
            }
        )
        self._scalars("epoch", {**means, "lr": lr})
        self._report("epoch", means, lr=lr, collapse=verdict)
        return latents, audio

    def _flush(self, pending: list[dict], started: float) -> tuple[np.ndarray, int]:
        """Check and report the losses of the steps since the last flush; returns their sums and
        the optimizer updates the loss scaler skipped.

        A skipped update (non-finite scaled gradients under mixed_float16) leaves the weights as
        they were and the losses finite, so it is no divergence: only non-finite losses or
        weights are.
        """
        values = np.array([[float(losses[key]) for key in LOSS_KEYS] for losses in pending])
        skipped = int(sum(float(losses["skipped_updates"]) for losses in pending))
        if not np.isfinite(values).all():
            row, column = np.argwhere(~np.isfinite(values))[0]
            step = self.state.step - len(pending) + int(row) + 1
            raise _Diverged(f"loss '{LOSS_KEYS[column]}' is {values[row, column]} at step {step}")
        if not bool(self._all_finite()):
            raise _Diverged(f"NaN or Inf in the network weights at step {self.state.step}")
        means = dict(zip(LOSS_KEYS, values.mean(axis=0).tolist()))
        self._scalars("loss", {**means, "lr": self.state.learning_rate})
        seconds = (time.perf_counter() - started) / len(pending)
        self._report("step", means, seconds_per_step=seconds)
        return values.sum(axis=0), skipped

    def _rollback(self, reason: str) -> None:
        old_lr = self.state.learning_rate
        detected_step, epoch = self.state.step, self.state.epoch
        if self.state.rollbacks >= self.config.max_rollbacks:
            self._restore_snapshot()
            event = TrainingEvent(
                "divergence", detected_step, epoch, reason, old_lr, restored_step=self.state.step
            )
            self.state.events.append(event)
            self._report("divergence", {})
            raise TrainingDiverged(
                f"training diverged at step {detected_step} ({reason}) after "
                f"{self.state.rollbacks} rollback(s), the limit; last healthy state at step "
                f"{self._snapshot.state.step}, last checkpoint {self.last_checkpoint}; "
                f"lower the learning rate (now {old_lr:g})",
                self.state.events,
            )
        self._restore_snapshot()
        self.state.rollbacks += 1
        self.state.lr_scale *= self.config.rollback_lr_factor
        event = TrainingEvent(
            "divergence",
            detected_step,
            epoch,
            reason,
            old_lr,
            new_lr=self.state.learning_rate,
            restored_step=self.state.step,
        )
        self.state.events.append(event)
        logger.warning(
            "divergence at step %d (%s): restored step %d, lr %g -> %g",
            detected_step, reason, self.state.step, old_lr, event.new_lr,
        )
        self._report("divergence", {})

    # ----------------------------------------------------------------- samples and collapse

    def _generate_samples(self, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        from .generation import generate_latents

        count = self.config.sample_count
        if count == 0:
            return [], []
        seconds = self.config.gan.latent_length * SAMPLES_PER_LATENT / SAMPLE_RATE
        latents = generate_latents(
            self.networks.generator_ema, seconds, count, self.config.sample_truncation, seed
        ).astype(np.float32)
        audio: list[np.ndarray] = []
        if self.autoencoder is not None and np.isfinite(latents).all():
            audio = list(self.autoencoder.decode_batch(latents, seed=seed))
        return list(latents), audio

    def _epoch_samples(self) -> tuple[list[np.ndarray], list[np.ndarray], str | None]:
        """Samples of the EMA generator and the collapse verdict ("ok", a reason, or None)."""
        config = self.config
        latents, audio = self._generate_samples(config.seed + self.state.epoch)
        if not config.collapse_check or not latents:
            return latents, audio, None
        reports: list[CollapseReport | LatentReport]
        if not all(np.isfinite(sample).all() for sample in latents):
            raise _Diverged(f"non-finite EMA generator output at step {self.state.step}")
        if audio:
            reports = [
                collapse_report(
                    sample,
                    SAMPLE_RATE,
                    silence_dbfs=config.silence_dbfs,
                    tonal_peak_ratio=config.tonal_peak_ratio,
                )
                for sample in audio
            ]
        else:
            reports = [
                latent_report(sample, self._reference_std, config.static_latent_ratio)
                for sample in latents
            ]
        if not all(report.collapsed for report in reports):
            return latents, audio, "ok"
        reason = "collapse: " + "; ".join(report.reason for report in reports)
        if config.collapse_as_divergence:
            raise _Diverged(reason)
        event = TrainingEvent(
            "collapse", self.state.step, self.state.epoch, reason, self.state.learning_rate
        )
        self.state.events.append(event)
        logger.warning("epoch %d: %s", self.state.epoch + 1, reason)
        self._report("collapse", {})
        return latents, audio, reason

    # ----------------------------------------------------------------- checkpoints

    def save_checkpoint(
        self, samples: tuple[list[np.ndarray], list[np.ndarray]] | None = None
    ) -> Path:
        """Save the current state as a new checkpoint folder of the run, then prune old ones.

        `samples` (latents, audio) default to fresh samples of the EMA generator.
        """
        latents, audio = samples if samples is not None else self._generate_samples(
            self.config.seed + self.state.epoch
        )
        self._clean_leftovers()
        name = f"epoch-{self.state.epoch:04d}-step-{self.state.step:08d}"
        destination = self.checkpoints_dir / name
        suffix = 1
        while destination.exists():
            suffix += 1
            destination = self.checkpoints_dir / f"{name}-{suffix}"
        path = save_checkpoint(
            destination,
            self.networks,
            self.training.generator_optimizer,
            self.training.critic_optimizer,
            float(self.training.switch.numpy()),
            self.state,
            latent_samples=latents,
            audio_samples=audio,
        )
        self.last_checkpoint = path
        self._prune()
        self._report("checkpoint", {}, checkpoint=path)
        return path

    def _clean_leftovers(self) -> None:
        """Remove hidden folders of earlier saves or deletions that a killed process left behind."""
        if not self.checkpoints_dir.is_dir():
            return
        for folder in self.checkpoints_dir.iterdir():
            if folder.is_dir() and folder.name.startswith((".tmp-", ".trash-")):
                shutil.rmtree(folder, ignore_errors=True)

    def _prune(self) -> None:
        """Delete the oldest checkpoints beyond `keep_checkpoints` (renamed hidden first, so a
        half-deleted folder is never mistaken for a checkpoint)."""
        checkpoints = list_checkpoints(self.checkpoints_dir)
        for folder in checkpoints[: -self.config.keep_checkpoints]:
            trash = folder.with_name(f".trash-{folder.name}")
            os.rename(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
