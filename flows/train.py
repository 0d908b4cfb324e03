"""Flows: pretrain a Musika GAN on latents datasets, fine-tune a stored model on new ones.

Only wiring lives here; planning, the resumable run and publishing are in `tasks/train/gan.py`.
Asking for the same training again trains nothing (the finished checkpoint is in the store); a
run that was killed continues from its last checkpoint. The deployments run these on the `gpu`
pool and hold the `gpu` global concurrency limit while training (`GanTrainingParams.concurrency_limit`);
a run's partial `settings` or `run` is laid over the deployment's (`flows.deployment_defaults`).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency

from flows.deployment_defaults import over_deployment_default
from tasks.pipeline.params import RunSettings
from tasks.pipeline.publishing import code_version
from tasks.store import ArtifactStore
from tasks.train import gan as training
from tasks.train.config import TrainingInputError, checked_config, parent_networks
from tasks.train.params import GanTrainingParams

DEFAULT_RUN = RunSettings()
PRETRAIN_DEFAULTS = GanTrainingParams(preset="piano_pretrain")
FINETUNE_DEFAULTS = GanTrainingParams(preset="finetune_recordings")


def dataset_refs(datasets: list[str] | str) -> list[str]:
    """The latents refs to train on: a single ref given as a string (what a deployment trigger
    passes) as a list of one; no ref at all is refused before anything is opened or built."""
    refs = [datasets] if isinstance(datasets, str) else list(datasets)
    if not refs:
        raise TrainingInputError("no datasets given: name at least one latents dataset (NAME[@V][:WEIGHT])")
    return refs


def _train(store: ArtifactStore, plan: training.TrainingPlan, settings: GanTrainingParams) -> dict:
    runs_dir = Path(settings.runs_dir) if settings.runs_dir else training.default_runs_dir(store)
    run_dir = training.run_dir_of(runs_dir, plan)
    limit = settings.concurrency_limit
    if limit:
        get_run_logger().info("waiting for a slot of the %r concurrency limit", limit)
    with concurrency(limit, occupy=1, strict=True) if limit else nullcontext():
        return training.train_gan(store.root, plan, str(run_dir), settings.publish_every,
                                  device=settings.device, devices=settings.devices)


@flow(name="pretrain", description="Train a Musika GAN from scratch on weighted latents datasets.",
      log_prints=True)
def pretrain(
    datasets: list[str],
    name: str,
    settings: GanTrainingParams = PRETRAIN_DEFAULTS,
    run: RunSettings = DEFAULT_RUN,
) -> dict:
    """Train model `name` on `datasets` (latents versions, `NAME[@V][:WEIGHT]`)."""
    refs = dataset_refs(datasets)
    settings, run = over_deployment_default("settings", settings), over_deployment_default("run", run)
    config = checked_config(settings)
    store = ArtifactStore.open(run.store)
    mixture = [training.resolve_latents(store, *training.parse_weighted_ref(text)) for text in refs]
    plan = training.plan_training(store, name, config, mixture, code_version=code_version())
    return _train(store, plan, settings)


@flow(name="finetune", description="Fine-tune a stored Musika model on new latents, with replay of its data.",
      log_prints=True)
def finetune(
    parent: str,
    datasets: list[str] | str,
    name: str | None = None,
    replay: float = 0.0,
    settings: GanTrainingParams = FINETUNE_DEFAULTS,
    run: RunSettings = DEFAULT_RUN,
) -> dict:
    """Fine-tune model `parent` (NAME or NAME@V; trained here or imported) on `datasets`, mixing in
    a `replay` share of the parent's own training data against forgetting; publishes `name`
    (default `<parent name>-ft`).

    `datasets` also takes one ref as a plain string, for the deployment's trigger: `prefect deploy`
    drops an unresolved `{{ event.payload.ref }}` that is an element of a list (the run would get
    `[]`), while one that is the whole value is kept and filled in when the event arrives.
    Accepting the string (rather than a second, scalar parameter beside the deployment's default
    list) makes the event's dataset replace that list; the form offers a list of refs, or one ref.
    """
    refs = dataset_refs(datasets)
    settings, run = over_deployment_default("settings", settings), over_deployment_default("run", run)
    store = ArtifactStore.open(run.store)
    model, parent_gan = parent_networks(store, parent)
    config = checked_config(settings, parent_gan)
    new = [training.resolve_latents(store, *training.parse_weighted_ref(text)) for text in refs]
    mixture = training.replay_mixture(new, training.parent_training_data(store, model), replay)
    if replay > 0 and mixture == new:
        get_run_logger().warning("nothing to replay: %s records no training data other than the new datasets",
                                 model.ref)
    plan = training.plan_training(store, name or f"{model.version.name}-ft", config, mixture, parent=model,
                                  code_version=code_version())
    return _train(store, plan, settings)
