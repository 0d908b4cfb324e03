"""The Musika GAN trainer: the training loop with a divergence guard, a collapse check on each
epoch's samples, progress reports, and checkpoint saving and pruning.

Loop (docs/musika.md §4): epochs x iterations of `gan_step`'s step (hinge, R1 with
the adaptive switch, EMA, L/R swap) on random windows of weighted latent sources
(`training_data`). The learning rate follows `TrainConfig.lr_phases` (`train_config`) times a
scale that the divergence guard lowers.

Divergence guard: every `log_every` steps the losses are checked for NaN/Inf and the weights
of generator, EMA generator and critic for NaN/Inf. On a hit the trainer restores the in-memory
snapshot taken at the end of the last healthy epoch (weights, optimizer state, switch,
counters), multiplies the lr scale by `rollback_lr_factor`, records a "divergence" event and
repeats the epoch with fresh data draws; after `max_rollbacks` rollbacks it raises
`TrainingDiverged`. The lowered scale applies to every later phase too: the run has shown the
lr was too high.

Collapse check: at each epoch end `sample_count` samples of one window come from the EMA
generator. With an autoencoder they are decoded and judged by `collapse.collapse_report`;
without one their latents are judged by `collapse.latent_report`. When every sample
collapsed, a "collapse" event is recorded and logged as a warning, or, with
`collapse_as_divergence`, handled like a NaN.

Checkpoints are written by `checkpoints.save_checkpoint` (folder layout there) into
`<run_dir>/checkpoints/`; TensorBoard scalars go to `<run_dir>/tensorboard/` (`scalars`).

The trainer runs on the active Keras backend (`backends`): the step is `tf_step`'s or `jax_step`'s,
batches are numpy, and on JAX nothing here imports TensorFlow. JAX runs may split each batch over
several devices (`devices`).
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import official
from .backends import active_backend, set_random_seed
from .checkpoints import (
    CHECKPOINTS_DIR,
    MARKER_FILE,
    SWITCH_START,
    CheckpointError,
    CheckpointMismatchError,
    CheckpointState,
    TrainingEvent,
    TrainingState,
    apply_loss_scale_state,
    file_sha256,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from .collapse import CollapseReport, LatentReport, collapse_report, latent_report, temporal_std
from .config import SAMPLE_RATE, SAMPLES_PER_LATENT, GanConfig
from .devices import gpu_visible, process_share
from .scalars import ScalarWriter
from .train_config import TrainConfig, precision_policy, using_dtype_policy
from .training_data import LatentSource, WindowSampler, prefetched_batches

if TYPE_CHECKING:
    from .codec import Autoencoder
    from .gan_step import GanTraining
    from .networks import GanNetworks

logger = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
LOSS_KEYS = ("critic_real", "critic_fake", "generator", "r1_penalty", "r1_weight", "switch")
"""The step's scalars, as `gan_step.step_losses` names them."""


class TrainingDiverged(RuntimeError):
    """NaN/Inf (or collapse treated as divergence) persisted through every allowed rollback.

    The trainer is left at its last healthy state, so `save_checkpoint()` can still keep it.
    """

    def __init__(self, message: str, events: Sequence[TrainingEvent]) -> None:
        super().__init__(message)
        self.events = list(events)


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
    epoch_seconds: float | None = None
    """For "epoch": the finished epoch's wall-clock seconds (steps and samples)."""
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
        devices: Sequence | None = None,
    ) -> None:
        """`initial` supplies starting weights, optimizer state and switch; `state` supplies
        counters and records to continue (both come from `resume`/`finetune`). `devices` (JAX
        only, `devices.training_devices`) split each batch data parallel; default one device."""
        if initial is not None:
            _check_same_networks(initial.info.folder, initial.info.gan, config.gan)
        if autoencoder is not None and active_backend() != "tensorflow":
            raise ValueError(
                "the autoencoder decodes with TensorFlow; on the JAX backend pass no autoencoder "
                "(epoch samples are then judged as latents)"
            )
        self.devices = devices
        self.config = config
        self.run_dir = Path(run_dir)
        self.autoencoder = autoencoder
        self.on_progress = on_progress
        self.sampler = WindowSampler(sources, config.gan.latent_length)
        self.state = state if state is not None else TrainingState(config, lineage=dict(lineage or {}))
        self.state.config = config
        self.policy = precision_policy(config)
        self.xla = gpu_visible() if config.xla is None else config.xla
        self.process_index, self.process_count = process_share()
        self.networks = initial.networks if initial is not None else self._fresh_networks()
        self.training = self._create_training(initial)
        self.last_checkpoint: Path | None = None
        self._reference_std = temporal_std(
            self.sampler.batch(np.random.default_rng([config.seed, 1]), 16)
        )
        self._writer = ScalarWriter(self.run_dir / TENSORBOARD_DIR)
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
        devices: Sequence | None = None,
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
            devices=devices,
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
        devices: Sequence | None = None,
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
                "marker_sha256": file_sha256(info.folder / MARKER_FILE) if info.marker else None,
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
            devices=devices,
        )

    def _fresh_networks(self) -> GanNetworks:
        from .networks import build_gan

        set_random_seed(self.config.seed)
        with using_dtype_policy(self.policy):
            return build_gan(self.config.gan)

    def _create_training(self, initial: CheckpointState | None) -> GanTraining:
        """Optimizers, switch and step; the step's draws continue from the run's step counter,
        so a resumed run draws what an uninterrupted one would have."""
        from .gan_training import create_gan_training

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
            devices=self.devices,
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
        self.training.sync()
        return _Snapshot(copy.deepcopy(self.state), [np.array(v) for v in self._variables()])

    def _restore_snapshot(self) -> None:
        self.training.sync()  # the draw counter is not restored: a repeated epoch draws anew
        for variable, value in zip(self._variables(), self._snapshot.values, strict=True):
            variable.assign(value)
        self.training.reload()
        saved = copy.deepcopy(self._snapshot.state)
        self.state.step, self.state.epoch, self.state.history = saved.step, saved.epoch, saved.history

    def _apply_learning_rate(self) -> float:
        lr = self.state.learning_rate
        self.training.sync()
        self.training.generator_optimizer.learning_rate = lr
        self.training.critic_optimizer.learning_rate = lr
        self.training.reload()
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
        if self.process_index == 0:
            self._writer.write(self.state.step, {f"{prefix}/{name}": v for name, v in values.items()})

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
        if self.process_count > 1:  # each host draws its own share of every global batch
            data_seed += (self.process_index,)
        batches = prefetched_batches(
            self.sampler, config.batch_size // self.process_count, data_seed, config.iterations_per_epoch
        )
        pending: list[dict] = []
        totals = np.zeros(len(LOSS_KEYS))
        skipped = 0
        report_started = time.perf_counter()
        for batch in batches:
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
        epoch_seconds = time.perf_counter() - epoch_started
        self.state.epoch += 1
        self.state.history.append(
            {
                "epoch": self.state.epoch,
                "step": self.state.step,
                "lr": lr,
                **means,
                "seconds": epoch_seconds,
                "collapse": verdict,
                "skipped_updates": skipped,
            }
        )
        self._scalars("epoch", {**means, "lr": lr})
        self._report("epoch", means, lr=lr, collapse=verdict, epoch_seconds=epoch_seconds)
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
        if not self.training.weights_finite():
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
        self.training.sync()
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
        self.training.sync()
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
            float(np.asarray(self.training.switch)),
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
