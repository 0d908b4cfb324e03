"""GAN training against the artifact store: plan, run (resumable), publish checkpoints.

A training run is keyed like any stage output: stage, stage version, the TrainConfig, the
latents datasets with their weights and the parent checkpoint. The key names

- the run folder `<runs dir>/<name>-<key[:16]>/` (checkpoints + TensorBoard logs), so a run
  killed at any point continues from its last checkpoint with the same step counter when the
  same training is asked for again;
- a small "finished" object pointing at the final checkpoint, so a finished training asked for
  again trains nothing.

Each saved checkpoint is copied into the store as an object and, every `publish_every` epochs
and at the end, published as a version of the model, each with the `autoencoder` the latents were encoded with
and the lineage (datasets and weights, parent checkpoint, code version). The Prefect side of
progress (artifacts, events) is in `TrainingReporter`; `flows/train.py` only wires.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.encode.stage import LATENTS_FILE
from tasks.encode.stage import STAGE as ENCODE_STAGE
from tasks.pipeline.models import AUTOENCODER_ITEM, GAN_ITEM, StoredModel, load_autoencoder
from tasks.pipeline.publishing import artifact_key
from tasks.reports.report import report_or_warn
from tasks.store import ArtifactStore, DatasetVersion, object_key
from tasks.store.layout import object_rel, version_rel
from tasks.store.links import store_link
from tasks.train.config import TrainingInputError, human_duration

if TYPE_CHECKING:
    from musika_model.train_config import TrainConfig
    from musika_model.training import TrainingProgress, TrainingResult

STAGE = "train-gan"
STAGE_VERSION = 1
CHECKPOINT_STAGE = "gan-checkpoint"
CHECKPOINT_STAGE_VERSION = 1
MODEL_STAGE = "checkpoint"
MODEL_FORMAT = "musika-piano-gan"
RUNS_ENV = "MUSIKA_PIANO_RUNS"


@dataclass(frozen=True)
class WeightedDataset:
    """A latents dataset version and its sampling weight in the training mixture."""

    version: DatasetVersion
    weight: float

    def describe(self) -> dict[str, Any]:
        return {"ref": self.version.ref, "weight": self.weight, "items": len(self.version.items)}


@dataclass(frozen=True)
class TrainingPlan:
    """Everything a run needs, decided before any network is built."""

    key: str
    name: str
    config: TrainConfig
    datasets: list[WeightedDataset]
    autoencoder_key: str
    parent: StoredModel | None
    parent_dir: Path | None
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "finetune" if self.parent is not None else "pretrain"


# --- planning ----------------------------------------------------------------------------------


def parse_weighted_ref(text: str) -> tuple[str, float]:
    """`NAME[@V][:WEIGHT]` -> (ref, weight); the weight defaults to 1."""
    ref, separator, weight = text.rpartition(":")
    if not separator:
        return text, 1.0
    try:
        value = float(weight)
    except ValueError:
        raise TrainingInputError(f"{text!r}: the weight after ':' must be a number") from None
    return ref, value


def resolve_latents(store: ArtifactStore, ref: str, weight: float) -> WeightedDataset:
    """A latents dataset version with a usable weight, or a precise TrainingInputError."""
    if not (weight > 0 and weight != float("inf")):
        raise TrainingInputError(f"{ref}: the sampling weight must be a positive number, got {weight}")
    version = store.resolve(ref)
    if version.stage != ENCODE_STAGE:
        raise TrainingInputError(
            f"{version.ref} is a {version.stage!r} dataset, not latents; encode it first: "
            f"musika-piano encode {version.ref} --autoencoder MODEL"
        )
    if not version.items:
        raise TrainingInputError(f"{version.ref} has no items to train on")
    return WeightedDataset(version, float(weight))


def replay_mixture(
    new: Sequence[WeightedDataset], replayed: Sequence[WeightedDataset], replay: float
) -> list[WeightedDataset]:
    """New data with total weight 1 - replay and the parent's data with total weight `replay`,
    each group keeping its internal proportions."""
    if not 0.0 <= replay < 1.0:
        raise TrainingInputError(f"replay must be in [0, 1), got {replay}")
    if replay == 0.0 or not replayed:
        return list(new)

    def scaled(group: Sequence[WeightedDataset], total: float) -> list[WeightedDataset]:
        weight_sum = sum(item.weight for item in group)
        return [replace(item, weight=total * item.weight / weight_sum) for item in group]

    new_refs = {item.version.ref for item in new}
    old = [item for item in replayed if item.version.ref not in new_refs]
    return scaled(new, 1.0 - replay) + scaled(old, replay) if old else list(new)


def parent_training_data(store: ArtifactStore, parent: StoredModel) -> list[WeightedDataset]:
    """The latents datasets (and weights) the parent model was trained on, from its lineage."""
    recorded = parent.version.lineage.extra.get("datasets") or []
    return [resolve_latents(store, entry["ref"], float(entry["weight"])) for entry in recorded]


def _autoencoder_of(datasets: Sequence[WeightedDataset]) -> str:
    keys = {item.version.params.get("autoencoder") for item in datasets}
    if None in keys or len(keys) != 1:
        found = ", ".join(f"{item.version.ref}: {str(item.version.params.get('autoencoder'))[:12]}"
                          for item in datasets)
        raise TrainingInputError(
            "the latents datasets were not all encoded with one autoencoder, so one GAN cannot "
            f"learn them together ({found})"
        )
    return keys.pop()


def plan_training(
    store: ArtifactStore,
    name: str,
    config: TrainConfig,
    datasets: Sequence[WeightedDataset],
    parent: StoredModel | None = None,
    code_version: str | None = None,
) -> TrainingPlan:
    """Check the inputs against each other and derive the run's key and lineage."""
    from musika_model.checkpoints import read_checkpoint_info

    if not datasets:
        raise TrainingInputError("no latents datasets given to train on")
    ae_key = _autoencoder_of(datasets)
    parent_dir = None
    inputs = sorted({key for item in datasets for key in item.version.keys})
    if parent is not None:
        gan_key, parent_dir = parent.require_gan()
        info = read_checkpoint_info(parent_dir, verify_hashes=False)
        if info.gan != config.gan:
            raise TrainingInputError(
                f"parent {parent.ref} has base_channels={info.gan.base_channels} (small="
                f"{info.gan.small}); the configuration asks for base_channels="
                f"{config.gan.base_channels} (small={config.gan.small})"
            )
        if parent.autoencoder_key is not None and parent.autoencoder_key != ae_key:
            raise TrainingInputError(
                f"the latents were encoded with autoencoder {ae_key[:12]}, but parent "
                f"{parent.ref} pairs with autoencoder {parent.autoencoder_key[:12]}: encode the "
                f"data with the parent's model (musika-piano encode DATASET --autoencoder {parent.ref})"
            )
        inputs.append(gan_key)
    params = {
        "config": config.to_dict(),
        "datasets": [{"digest": item.version.content_digest, "weight": item.weight} for item in datasets],
    }
    lineage = {
        "parents": [item.version.ref for item in datasets] + ([parent.ref] if parent else []),
        "datasets": [{"ref": item.version.ref, "weight": item.weight} for item in datasets],
        "autoencoder": ae_key,
        "code_version": code_version,
    }
    if parent is not None:
        lineage["parent_checkpoint"] = {"ref": parent.ref, "key": parent.gan_key}
    return TrainingPlan(
        key=object_key(STAGE, STAGE_VERSION, params, [ae_key, *inputs]),
        name=name,
        config=config,
        datasets=list(datasets),
        autoencoder_key=ae_key,
        parent=parent,
        parent_dir=parent_dir,
        lineage=lineage,
    )


def default_runs_dir(store: ArtifactStore) -> Path:
    """$MUSIKA_PIANO_RUNS, else `runs/` beside a local store (data/runs by default), else data/runs."""
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV])
    if store.is_local:
        return store.backend.path("").parent / "runs"
    return Path("data").resolve() / "runs"


def run_dir_of(runs_dir: Path, plan: TrainingPlan) -> Path:
    return Path(runs_dir) / f"{plan.name}-{plan.key[:16]}"


# --- running -----------------------------------------------------------------------------------


def latent_sources(store: ArtifactStore, plan: TrainingPlan) -> list:
    from musika_model.training_data import LatentSource

    return [
        LatentSource(
            item.version.ref,
            [store.local_path(entry.key) / LATENTS_FILE for entry in item.version.items],
            item.weight,
        )
        for item in plan.datasets
    ]


def run_training(
    store: ArtifactStore,
    plan: TrainingPlan,
    run_dir: Path,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    max_epochs: int | None = None,
    device: str = "auto",
    devices: int | str = "all",
) -> TrainingResult:
    """Train `plan` in `run_dir`: continue its last checkpoint if there is one (same step counter),
    else fine-tune from the parent, else start fresh. Raises TrainingDiverged when the guard
    gives up; the last healthy checkpoint stays in `run_dir`. `device` and `devices` are
    `GanTrainingParams`' (`devices.training_devices`).

    On the JAX backend no autoencoder is loaded (it decodes with TensorFlow): epoch samples are
    latents, judged as such by the collapse check."""
    from musika_model.backends import active_backend
    from musika_model.checkpoints import latest_checkpoint
    from musika_model.devices import training_devices
    from musika_model.training import Trainer

    sources = latent_sources(store, plan)
    placed = training_devices(device, devices, plan.config.batch_size)
    autoencoder = None
    if active_backend() == "tensorflow":
        autoencoder = load_autoencoder(store.root, plan.autoencoder_key)
    options = {"autoencoder": autoencoder, "on_progress": on_progress, "devices": placed}
    last = latest_checkpoint(run_dir)
    if last is not None:
        trainer = Trainer.resume(last, sources, run_dir, config=plan.config, **options)
    elif plan.parent_dir is not None:
        trainer = Trainer.finetune(plan.parent_dir, plan.config, sources, run_dir, lineage=plan.lineage, **options)
    else:
        trainer = Trainer(plan.config, sources, run_dir, lineage=plan.lineage, **options)
    return trainer.train(max_epochs)


# --- publishing --------------------------------------------------------------------------------


def _copy_checkpoint(folder: Path, destination: Path, tensorboard: Path | None) -> None:
    for path in folder.iterdir():
        target = destination / path.name
        if path.is_dir():
            shutil.copytree(path, target)
        else:
            shutil.copyfile(path, target)
    if tensorboard is not None and tensorboard.is_dir():
        shutil.copytree(tensorboard, destination / "tensorboard")


def publish_checkpoint(store: ArtifactStore, plan: TrainingPlan, folder: Path) -> str:
    """Copy a checkpoint folder (with the run's TensorBoard logs) into the store; its key
    (from the run's key and the checkpoint's step, so publishing it twice stores it once)."""
    from musika_model.checkpoints import read_checkpoint_info

    info = read_checkpoint_info(folder)
    params, inputs = {"step": info.step, "epoch": info.epoch}, [plan.key]
    key = object_key(CHECKPOINT_STAGE, CHECKPOINT_STAGE_VERSION, params, inputs)
    if store.has(key):
        return key
    with store.publish_object(CHECKPOINT_STAGE, CHECKPOINT_STAGE_VERSION, params, inputs, item=GAN_ITEM) as staged:
        _copy_checkpoint(folder, staged.dir, folder.parent.parent / "tensorboard")
        staged.stats.update(checkpoint_stats(info))
    return staged.key


FINISHED_FILE = "finished.json"


def finished_run_key(plan: TrainingPlan) -> str:
    """The key of the small object that marks the run of `plan` as finished."""
    return object_key(STAGE, STAGE_VERSION, {}, [plan.key])


def mark_finished(store: ArtifactStore, plan: TrainingPlan, checkpoint_key: str) -> None:
    """Record that the run of `plan` is done and which checkpoint object it ended with."""
    if store.has(finished_run_key(plan)):
        return
    with store.publish_object(STAGE, STAGE_VERSION, {}, [plan.key], extra={"checkpoint": checkpoint_key}) as staged:
        (staged.dir / FINISHED_FILE).write_text(json.dumps({"checkpoint": checkpoint_key, "run": plan.key}))


def finished_checkpoint(store: ArtifactStore, plan: TrainingPlan) -> str | None:
    """The final checkpoint's key when the run of `plan` finished before, else None."""
    key = finished_run_key(plan)
    if not store.has(key):
        return None
    checkpoint = store.manifest(key).extra["checkpoint"]
    return checkpoint if store.has(checkpoint) else None


def checkpoint_stats(info) -> dict[str, Any]:
    """Small numbers about a checkpoint for the model version and the UI."""
    training = info.training
    history = training.history if training else []
    last = history[-1] if history else {}
    return {
        "step": info.step,
        "epoch": info.epoch,
        "base_channels": info.gan.base_channels,
        "small": info.gan.small,
        "learning_rate": training.learning_rate if training else None,
        "rollbacks": training.rollbacks if training else 0,
        "events": len(training.events) if training else 0,
        **{f"last_{key}": round(float(last[key]), 6) for key in ("generator", "critic_real", "critic_fake")
           if key in last},
    }


def publish_model_version(store: ArtifactStore, plan: TrainingPlan, gan_key: str) -> DatasetVersion:
    """A version of the model `plan.name`: the checkpoint, its autoencoder, lineage and stats
    (the same checkpoint published twice is one version)."""
    stats = store.manifest(gan_key).stats
    return store.publish_dataset(
        plan.name,
        stage=MODEL_STAGE,
        params={"format": MODEL_FORMAT, "kind": plan.kind, "config": plan.config.to_dict()},
        items=[
            {"item_id": AUTOENCODER_ITEM, "key": plan.autoencoder_key},
            {"item_id": GAN_ITEM, "key": gan_key, "stats": stats},
        ],
        lineage=plan.lineage,
        stats={**stats, "run": plan.key, "datasets": [item.describe() for item in plan.datasets]},
    )


# --- the Prefect side --------------------------------------------------------------------------

TRAINING_DIVERGED_EVENT = "musika.training.divergence"
TRAINING_COLLAPSE_EVENT = "musika.training.collapse"
MODEL_PUBLISHED_EVENT = "musika.model.published"
PROGRESS_EVERY_SECONDS = 10.0
TABLE_VERSIONS_PER_RUN = 20
"""At most this many versions of the epoch table per training run: each version is one entry in
the run's artifact timeline, and one per epoch crowds it (a pretrain has hundreds of epochs)."""


def table_every(total_epochs: int) -> int:
    """Epochs between versions of the epoch table: the multiples of this, plus the last epoch,
    number at most TABLE_VERSIONS_PER_RUN."""
    return max(1, -(-total_epochs // TABLE_VERSIONS_PER_RUN))


def epoch_table(history: Sequence[dict], events: Sequence) -> list[dict[str, Any]]:
    """One row per finished epoch (losses, lr, seconds, collapse verdict) plus one per event."""
    rows: list[dict[str, Any]] = [
        {"epoch": entry["epoch"], "step": entry["step"], "lr": entry["lr"],
         **{key: round(float(entry[key]), 5) for key in LOSS_COLUMNS if key in entry},
         "seconds": round(float(entry.get("seconds", 0.0)), 2), "collapse": entry.get("collapse") or "",
         "event": ""}
        for entry in history
    ]
    for event in events:
        note = f"{event.kind}: {event.reason}"
        if event.new_lr is not None:
            note += f" (restored step {event.restored_step}, lr {event.lr:g} -> {event.new_lr:g})"
        rows.append({"epoch": event.epoch, "step": event.step, "lr": event.lr, "event": note})
    return sorted(rows, key=lambda row: (row["step"], row["event"] != ""))


LOSS_COLUMNS = ("critic_real", "critic_fake", "generator", "r1_penalty", "switch")


class TrainingReporter:
    """Turns trainer progress into Prefect artifacts, events and logs, and publishes checkpoints."""

    def __init__(
        self, store: ArtifactStore, plan: TrainingPlan, publish_every: int, logger, history: Sequence[dict] = ()
    ) -> None:
        """`history`: the epochs a resumed run already has, so the UI table stays whole."""
        from prefect.artifacts import create_progress_artifact

        self.store, self.plan, self.publish_every, self.logger = store, plan, publish_every, logger
        self.published: list[str] = []
        self._history = [dict(entry) for entry in history]
        self._events: Sequence = ()
        self._table_every = table_every(plan.config.epochs)
        self._table_pending = False
        self._last_update = 0.0
        self._steps_reported = False
        self._speed_logged = False
        self.progress_id = create_progress_artifact(
            0.0, key=artifact_key(plan.name, "training-progress"),
            description=f"{plan.kind} of **{plan.name}** ({plan.config.total_steps} steps)",
        )

    def __call__(self, progress: TrainingProgress) -> None:
        handler = getattr(self, f"_on_{progress.kind}", None)
        if handler is not None:
            handler(progress)

    def _on_step(self, progress: TrainingProgress) -> None:
        from prefect.artifacts import update_progress_artifact

        self._log_measured_speed(progress)
        now = time.monotonic()
        if now - self._last_update < PROGRESS_EVERY_SECONDS and progress.step < progress.total_steps:
            return
        self._last_update = now
        eta = progress.eta_seconds
        epoch = min(progress.epoch + 1, progress.total_epochs)  # the epoch these steps belong to
        update_progress_artifact(
            self.progress_id, 100.0 * progress.step / max(progress.total_steps, 1),
            description=f"{self.plan.kind} of **{self.plan.name}**: step {progress.step}/{progress.total_steps}, "
                        f"epoch {epoch}/{progress.total_epochs}, "
                        f"ETA {human_duration(eta) if eta is not None else 'unknown'}",
        )
        self.logger.info(
            "step %d/%d  epoch %d/%d  lr %.3g  G %.4f  D(real) %.4f  D(fake) %.4f  %.3f s/step%s",
            progress.step, progress.total_steps, progress.epoch, progress.total_epochs, progress.lr,
            progress.losses.get("generator", float("nan")), progress.losses.get("critic_real", float("nan")),
            progress.losses.get("critic_fake", float("nan")), progress.seconds_per_step or 0.0,
            f"  ETA {eta / 3600:.2f} h" if eta is not None else "",
        )

    def _log_measured_speed(self, progress: TrainingProgress) -> None:
        """Once per run start: the measured s/step, the steps left and when the run will end. The
        first report is passed over (graph tracing and XLA compilation slow its steps) unless no
        other will come."""
        first, self._steps_reported = not self._steps_reported, True
        eta = progress.eta_seconds
        if self._speed_logged or eta is None:
            return
        if first and progress.step < progress.total_steps:
            return
        self._speed_logged = True
        end = datetime.now(UTC) + timedelta(seconds=eta)
        self.logger.info(
            "measured %.3g s/step at step %d: %s steps left, about %s, finishing around %s",
            progress.seconds_per_step, progress.step, f"{progress.total_steps - progress.step:,}",
            human_duration(eta), end.strftime("%Y-%m-%d %H:%M UTC"),
        )

    def finish(self) -> None:
        """The training is done: the epoch table's last version, the progress bar full."""
        from prefect.artifacts import update_progress_artifact

        self.write_table()
        config = self.plan.config
        update_progress_artifact(
            self.progress_id, 100.0,
            description=f"{self.plan.kind} of **{self.plan.name}**: finished, step {config.total_steps}/"
                        f"{config.total_steps}, epoch {config.epochs}/{config.epochs}",
        )

    def stopped(self, error: Exception) -> None:
        """The training stopped on `error` (divergence past the rollbacks, a fault): the table
        with the epochs and events so far, and the reason in the progress artifact."""
        from prefect.artifacts import update_progress_artifact

        self.write_table()
        last = self._history[-1] if self._history else {"step": 0, "epoch": 0}
        update_progress_artifact(
            self.progress_id, 100.0 * last["step"] / max(self.plan.config.total_steps, 1),
            description=f"{self.plan.kind} of **{self.plan.name}**: stopped after epoch {last['epoch']}/"
                        f"{self.plan.config.epochs} (step {last['step']}): {type(error).__name__}",
        )

    def write_table(self) -> None:
        """A new version of the epoch table, if epochs or events came since the last one."""
        from prefect.artifacts import create_table_artifact

        if not self._table_pending:
            return
        self._table_pending = False
        create_table_artifact(
            key=artifact_key(self.plan.name, "training"),
            table=epoch_table(self._history, self._events),
            description=f"Per-epoch losses, lr and divergence events of **{self.plan.name}**",
        )

    def _on_epoch(self, progress: TrainingProgress) -> None:
        self.logger.info("epoch %d/%d done: %s, samples %s", progress.epoch, progress.total_epochs,
                         {k: round(v, 4) for k, v in progress.losses.items()}, progress.collapse or "-")
        self._history.append({"epoch": progress.epoch, "step": progress.step, "lr": progress.lr,
                              **progress.losses, "seconds": progress.epoch_seconds,
                              "collapse": progress.collapse})
        self._events, self._table_pending = progress.events, True
        if progress.epoch % self._table_every == 0:
            self.write_table()

    def _on_divergence(self, progress: TrainingProgress) -> None:
        self._events, self._table_pending = progress.events, True
        self._emit(TRAINING_DIVERGED_EVENT, progress)

    def _on_collapse(self, progress: TrainingProgress) -> None:
        self._emit(TRAINING_COLLAPSE_EVENT, progress)

    def _emit(self, name: str, progress: TrainingProgress) -> None:
        from prefect.events import emit_event

        event = progress.events[-1]
        self.logger.warning("%s at step %d: %s", event.kind, event.step, event.reason)
        emit_event(name, resource={"prefect.resource.id": f"musika.model.{self.plan.name}",
                                   "prefect.resource.name": self.plan.name},
                   payload={"model": self.plan.name, "run": self.plan.key, **event.to_dict()})

    def _on_checkpoint(self, progress: TrainingProgress) -> None:
        key = publish_checkpoint(self.store, self.plan, progress.checkpoint)
        self.logger.info("checkpoint at epoch %d, step %d: %s (store object %s)",
                         progress.epoch, progress.step, progress.checkpoint, key[:12])
        if progress.epoch % self.publish_every == 0:
            self.publish(key)

    def publish(self, gan_key: str, final: bool = False) -> DatasetVersion:
        """Publish a model version of the checkpoint `gan_key`; announce it in the UI."""
        from prefect.artifacts import create_markdown_artifact
        from prefect.events import emit_event

        from musika_model.checkpoints import SAMPLES_DIR

        version = publish_model_version(self.store, self.plan, gan_key)
        if version.created:
            self.published.append(version.ref)
            report_or_warn(self.store, version.ref)
        samples = sorted(name for name in self.store.manifest(gan_key).files
                         if posixpath.dirname(name) == SAMPLES_DIR and name.endswith(".wav"))
        links = "\n".join(
            "- " + store_link(self.store, f"{object_rel(gan_key)}/{name}").markdown(posixpath.basename(name))
            for name in samples
        ) or "- (no audio samples)"
        location = self.store.dataset_uri(version.name, version.version)
        manifest = store_link(self.store, version_rel(version.name, version.version))
        create_markdown_artifact(
            key=artifact_key(self.plan.name, "samples"),
            markdown=f"### {version.ref} (step {version.stats.get('step')}, epoch "
                     f"{version.stats.get('epoch')}{', final' if final else ''})\n\n{links}\n\n"
                     f"{manifest.markdown('Model version')}",
            description=f"Samples of {version.ref}",
        )
        if version.created:
            emit_event(MODEL_PUBLISHED_EVENT,
                       resource={"prefect.resource.id": f"musika.model.{version.name}",
                                 "prefect.resource.name": version.name},
                       payload={"name": version.name, "version": version.version, "ref": version.ref,
                                "final": final, "uri": location})
        self.logger.info("model version %s (%s)", version.ref, "published" if version.created else "unchanged")
        return version


@task(name="train-gan", cache_policy=NO_CACHE)
def train_gan(
    store_root: str, plan: TrainingPlan, run_dir: str, publish_every: int, device: str = "auto",
    devices: int | str = "all",
) -> dict[str, Any]:
    """Train (or continue, or find finished) the run of `plan` and publish its final model version."""
    from musika_model.checkpoints import latest_checkpoint, read_checkpoint_info

    logger = get_run_logger()
    store = ArtifactStore(store_root)
    folder = Path(run_dir)
    last = latest_checkpoint(folder)
    history = read_checkpoint_info(last, verify_hashes=False).training.history if last is not None else []
    reporter = TrainingReporter(store, plan, publish_every, logger, history)
    final_key = finished_checkpoint(store, plan)
    trained = final_key is None
    if not trained:
        logger.info("%s: this training (run %s) is already in the store; nothing to train",
                    plan.name, plan.key[:12])
    else:
        if last is not None:
            logger.info("resuming %s from %s", plan.name, last)
        logger.info("%s %s on %s -> run folder %s", plan.kind, plan.name,
                    ", ".join(f"{d.version.ref} x{d.weight:g}" for d in plan.datasets), folder)
        try:
            result = run_training(store, plan, folder, on_progress=reporter, device=device, devices=devices)
        except Exception as error:
            reporter.stopped(error)
            raise
        logger.info("trained to step %d, epoch %d in %.1f s", result.step, result.epoch, result.seconds)
        final_key = publish_checkpoint(store, plan, result.last_checkpoint)
        mark_finished(store, plan, final_key)
    version = reporter.publish(final_key, final=True)
    reporter.finish()
    stats = version.stats
    return {"ref": version.ref, "name": version.name, "version": version.version,
            "created": bool(reporter.published),
            "trained": trained, "step": stats.get("step"), "epoch": stats.get("epoch"),
            "published": reporter.published, "run_dir": str(folder),
            "uri": store.dataset_uri(version.name, version.version),
            "checkpoint": str(store.local_path(final_key))}
