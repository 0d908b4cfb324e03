"""GAN checkpoint folders: the saved training state, and reading, verifying, loading and writing
checkpoints (this trainer's format, or an official gen/gen_ema/critic folder).

Checkpoint folder (written into `.tmp-<name>-<pid>` beside it, then renamed; `checkpoint.json`
is the last file written, so a folder without it is incomplete):

    gen.h5, gen_ema.h5, critic.h5     official-layout weights (open in the original tools)
    opt_dec.npy, opt_disc.npy         Adam state of generator / critic, official npy layout
    switch.npy                        R1 switch
    loss_scale.json                   dynamic loss scales (mixed_float16 runs only)
    training_state.json               counters, lr scale, TrainConfig, lineage, events, history
    samples/sample-N.npy (.wav)       EMA-generator latents (and audio with an autoencoder)
    checkpoint.json                   format, step, epoch, GAN config, size + sha256 of every file

A run folder holds `checkpoints/<epoch-EEEE-step-SSSSSSSS>/` (and the trainer's `tensorboard/`).
TensorFlow is imported only when a checkpoint's networks are built or its optimizers read.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import official
from .config import SAMPLE_RATE, GanConfig
from .train_config import TrainConfig, using_dtype_policy

if TYPE_CHECKING:
    import keras

    from .networks import GanNetworks

CHECKPOINT_FORMAT = "musika-piano-gan-checkpoint"
CHECKPOINT_VERSION = 1
MARKER_FILE = "checkpoint.json"
STATE_FILE = "training_state.json"
LOSS_SCALE_FILE = "loss_scale.json"
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"
SWITCH_START = -1.0
HASH_BLOCK = 1 << 20


# --- errors ------------------------------------------------------------------------------------


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


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's content (read in 1 MiB blocks)."""
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
        if verify_hashes and file_sha256(path) != expected["sha256"]:
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
    with using_dtype_policy(policy):
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
                    "sha256": file_sha256(path),
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
