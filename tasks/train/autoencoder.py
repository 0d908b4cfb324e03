"""Train-autoencoder stage: a normalized audio dataset version -> one trained Musika autoencoder.

For users without the official Musika weights. The object's key hashes the stage, its version,
the network widths and training settings, and the sorted object keys of the items trained on,
so the same dataset with the same settings finds the object in the store and trains nothing.

The object holds the autoencoder in this project's format (`Autoencoder.save`: one .npz per
network plus `autoencoder.json`, which `tasks.pipeline.models.load_autoencoder` reads) and
`training_history.json` (the losses of every logged step). Its statistics say how long it
trained, its final losses, and how well it reconstructs a few of its own training items.

Before anything is published the trained encoder must give finite latents that vary over time:
an encoder whose latents barely move (the level-2 encoder before training is like that) would
give the GAN nothing to learn from, so such a result is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from musika_model.ae_training import AeTrainingConfig
from musika_model.codec import FORMAT_NAME
from musika_model.config import SAMPLE_RATE, AutoencoderConfig
from tasks.pipeline.audio_io import single_audio_file
from tasks.store import ArtifactStore, DatasetVersion, object_key
from tasks.train.params import AUTOENCODER_PRESETS

if TYPE_CHECKING:
    from musika_model.codec import Autoencoder

STAGE = "train-autoencoder"
STAGE_VERSION = 1
HISTORY_FILE = "training_history.json"
MODEL_FORMAT = FORMAT_NAME
"""The `format` param of a model version holding a trained autoencoder."""
EVAL_ITEMS = 2
"""Training items the reconstruction metrics and the collapse check are measured on."""
EVAL_SECONDS = 10.0
"""Only the first seconds of each evaluation item are encoded and decoded."""
LOG_EVERY_PERCENT = 5

ProgressFn = Callable[[int, int, dict[str, float]], None]
"""Called as (step, total steps, losses of that step)."""


class AutoencoderStageError(ValueError):
    """A dataset or a training result the stage cannot use; nothing was published."""


class CollapsedAutoencoderError(AutoencoderStageError):
    """The trained encoder gives non-finite or static latents."""


class AutoencoderDivergedError(FloatingPointError):
    """A training loss became NaN/Inf; nothing was published."""


@dataclass(frozen=True)
class TrainingItem:
    """A dataset item the autoencoder trains on."""

    item_id: str
    key: str
    seconds: float


@dataclass(frozen=True)
class AutoencoderPlan:
    """What one training run uses and the key of the object it publishes."""

    dataset: str
    """The exact `name@version` of the dataset."""
    ae_config: dict[str, Any]
    training: dict[str, Any]
    items: tuple[TrainingItem, ...]
    too_short: tuple[TrainingItem, ...]
    """Items shorter than one training crop, left out."""
    unselected: int
    """Usable items left out by `max_items`."""

    @property
    def total_steps(self) -> int:
        return int(self.training["stage1_steps"]) + int(self.training["stage2_steps"])

    @property
    def params(self) -> dict[str, Any]:
        return {"ae_config": self.ae_config, "training": self.training}

    @property
    def inputs(self) -> list[str]:
        return sorted(item.key for item in self.items)

    @property
    def key(self) -> str:
        return object_key(STAGE, STAGE_VERSION, self.params, self.inputs)


@dataclass(frozen=True)
class TrainedAutoencoder:
    key: str
    trained: bool
    """False when the object was already in the store."""
    stats: dict[str, Any]


def training_config(preset: str, **overrides: Any) -> AeTrainingConfig:
    """The preset's AeTrainingConfig with the given fields replaced (None leaves a field alone)."""
    if preset not in AUTOENCODER_PRESETS:
        raise AutoencoderStageError(
            f"unknown preset {preset!r}; choose one of {', '.join(AUTOENCODER_PRESETS)}"
        )
    chosen = {name: value for name, value in overrides.items() if value is not None}
    return AeTrainingConfig(**{**AUTOENCODER_PRESETS[preset], **chosen})


def select_evenly(items: Sequence[TrainingItem], max_items: int | None) -> list[TrainingItem]:
    """At most `max_items` items spread evenly over `items` (all of them when None)."""
    if max_items is not None and max_items < 1:
        raise AutoencoderStageError(f"max_items must be at least 1, got {max_items}")
    if max_items is None or len(items) <= max_items:
        return list(items)
    positions = np.rint(np.linspace(0, len(items) - 1, max_items)).astype(int)
    return [items[position] for position in positions]


def _audio_items(store: ArtifactStore, dataset: DatasetVersion) -> list[TrainingItem]:
    """Every item with its duration; refuses a dataset whose objects hold no audio file."""
    if not dataset.items:
        raise AutoencoderStageError(
            f"{dataset.ref} (stage {dataset.stage!r}) has no items to train on"
        )
    found = []
    for item in dataset.items:
        files = sorted(store.manifest(item.key).files)
        audio = [name for name in files if name.startswith("audio.") and "/" not in name]
        if len(audio) != 1:
            raise AutoencoderStageError(
                f"{dataset.ref} (stage {dataset.stage!r}) is not an audio dataset: item "
                f"{item.item_id!r} holds {files[:5]}, not one audio.* file; train the autoencoder "
                "on a normalized dataset (e.g. from `musika-piano dataset midi`)"
            )
        seconds = item.stats.get("duration_s")
        if not isinstance(seconds, (int, float)):
            from musika_model.audio import audio_info

            seconds = audio_info(single_audio_file(store.local_path(item.key))).duration
        found.append(TrainingItem(item.item_id, item.key, float(seconds)))
    return found


def plan_training(
    store: ArtifactStore,
    dataset: DatasetVersion,
    ae_config: AutoencoderConfig,
    training: AeTrainingConfig,
    max_items: int | None = None,
) -> AutoencoderPlan:
    """Check the dataset, leave out items shorter than one crop, pick at most `max_items`."""
    crop_seconds = training.crop_samples / SAMPLE_RATE
    items = _audio_items(store, dataset)
    usable = [item for item in items if item.seconds >= crop_seconds]
    too_short = tuple(item for item in items if item.seconds < crop_seconds)
    if not usable:
        longest = max(item.seconds for item in items)
        raise AutoencoderStageError(
            f"{dataset.ref}: all {len(items)} items are shorter than one training crop "
            f"({crop_seconds:.2f} s; the longest is {longest:.2f} s)"
        )
    chosen = select_evenly(usable, max_items)
    return AutoencoderPlan(
        dataset=dataset.ref,
        ae_config=ae_config.to_dict(),
        training=training.to_dict(),
        items=tuple(chosen),
        too_short=too_short,
        unselected=len(usable) - len(chosen),
    )


def evaluate_autoencoder(
    autoencoder: Autoencoder, clips: Sequence[tuple[str, np.ndarray]], reference_std: float
) -> dict[str, Any]:
    """Reconstruction metrics and latent variation on (item id, audio) pairs.

    Raises CollapsedAutoencoderError when an item's latents are non-finite or vary over time
    less than a tenth of `reference_std` (`musika_model.collapse.latent_report`).
    """
    from musika_model.ae_training import reconstruction_metrics
    from musika_model.collapse import latent_report

    per_item = {}
    for item_id, audio in clips:
        report = latent_report(autoencoder.encode(audio).latents, reference_std)
        if report.collapsed:
            raise CollapsedAutoencoderError(
                f"{STAGE}: the trained encoder is unusable on item {item_id!r}: {report.reason}; "
                "nothing was published (train longer, e.g. more stage2_steps)"
            )
        metrics = reconstruction_metrics(autoencoder, audio)
        per_item[item_id] = {**metrics, "latent_temporal_std": report.temporal_std}

    def mean(name: str) -> float:
        return round(float(np.mean([values[name] for values in per_item.values()])), 5)

    return {
        "evaluated_on": "training items",
        "items": list(per_item),
        "seconds_per_item": EVAL_SECONDS,
        **{
            name: mean(name)
            for name in ("log_spectral_distance_db", "mr_stft", "latent_std", "latent_saturated")
        },
        "latent_temporal_std": mean("latent_temporal_std"),
        "latent_reference_std": reference_std,
        "latent_verdict": "ok",
    }


def final_losses(history: Sequence[dict[str, float]]) -> dict[str, float]:
    """The last logged value of every loss of every stage."""
    losses: dict[str, float] = {}
    for entry in history:
        losses.update({name: round(value, 6) for name, value in entry.items() if name != "step"})
    return losses


def find_trained(store: ArtifactStore, plan: AutoencoderPlan) -> TrainedAutoencoder | None:
    """The plan's object if it is already in the store."""
    if not store.has(plan.key):
        return None
    return TrainedAutoencoder(plan.key, False, dict(store.manifest(plan.key).stats))


def train_and_publish(
    store: ArtifactStore, plan: AutoencoderPlan, progress: ProgressFn | None = None
) -> TrainedAutoencoder:
    """Train on the plan's items and publish the autoencoder object (nothing on any error)."""
    from musika_model.ae_training import train_autoencoder
    from musika_model.audio import load_audio

    ae_config = AutoencoderConfig.from_dict(plan.ae_config)
    training = AeTrainingConfig(**plan.training)
    path_of = {item.item_id: single_audio_file(store.local_path(item.key)) for item in plan.items}
    total = plan.total_steps
    callback = None if progress is None else (lambda step, losses: progress(step, total, losses))
    with store.publish_object(
        STAGE, STAGE_VERSION, plan.params, plan.inputs, item="autoencoder"
    ) as staged:
        try:
            result = train_autoencoder(list(path_of.values()), ae_config, training, callback)
        except FloatingPointError as error:
            raise AutoencoderDivergedError(
                f"{STAGE} on {plan.dataset}: {error}; nothing was published (try learning rates "
                f"below {training.learning_rate:g} / {training.stage2_learning_rate:g})"
            ) from error
        evaluation_started = time.perf_counter()
        clips = [
            (item.item_id, load_audio(path_of[item.item_id])[: int(EVAL_SECONDS * SAMPLE_RATE)])
            for item in select_evenly(plan.items, EVAL_ITEMS)
        ]
        evaluation = evaluate_autoencoder(result.autoencoder, clips, training.spread_target)
        evaluation["seconds"] = round(time.perf_counter() - evaluation_started, 2)
        result.autoencoder.save(staged.dir)
        (staged.dir / HISTORY_FILE).write_text(json.dumps(result.history))
        staged.stats.update(
            {
                "steps": total,
                "seconds": round(result.seconds, 2),
                "training_items": len(plan.items),
                "training_audio_s": round(sum(item.seconds for item in plan.items), 2),
                "final_losses": final_losses(result.history),
                "evaluation": evaluation,
            }
        )
        staged.extra.update({"source": {"dataset": plan.dataset}})
    return TrainedAutoencoder(staged.key, True, dict(staged.manifest.stats))


class _ProgressReporter:
    """A Prefect progress artifact and a log line every 5% of the steps."""

    def __init__(self, plan: AutoencoderPlan, logger: Any) -> None:
        from prefect.artifacts import create_progress_artifact

        self.logger = logger
        self.next_percent = LOG_EVERY_PERCENT
        self.last_step, self.last_time = 0, time.perf_counter()
        self.artifact_id = create_progress_artifact(
            0.0,
            description=f"Autoencoder training on **{plan.dataset}** ({plan.total_steps} steps)",
        )

    def __call__(self, step: int, total: int, losses: dict[str, float]) -> None:
        from prefect.artifacts import update_progress_artifact

        percent = 100.0 * step / max(total, 1)
        if percent < self.next_percent and step < total:
            return
        while self.next_percent <= percent:
            self.next_percent += LOG_EVERY_PERCENT
        update_progress_artifact(self.artifact_id, percent)
        shown = ", ".join(f"{name} {value:.4f}" for name, value in losses.items())
        now = time.perf_counter()
        per_step = (now - self.last_time) / max(step - self.last_step, 1)
        self.last_step, self.last_time = step, now
        self.logger.info(
            "step %d/%d (%.0f%%): %s; %.3f s/step", step, total, percent, shown, per_step
        )


@task(name="train-autoencoder", cache_policy=NO_CACHE)
def train_autoencoder_task(store_root: str, plan: AutoencoderPlan) -> TrainedAutoencoder:
    """Train and publish the plan's autoencoder, or find it in the store and train nothing."""
    logger = get_run_logger()
    store = ArtifactStore(store_root)
    existing = find_trained(store, plan)
    if existing is not None:
        logger.info("autoencoder %s is already in the store: nothing to train", plan.key[:12])
        return existing
    logger.info(
        "training an autoencoder on %d items of %s: %d steps",
        len(plan.items),
        plan.dataset,
        plan.total_steps,
    )
    trained = train_and_publish(store, plan, _ProgressReporter(plan, logger))
    logger.info("published autoencoder %s in %.1f s", trained.key[:12], trained.stats["seconds"])
    return trained
