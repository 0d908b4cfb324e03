"""Flow: a normalized dataset version -> a latents dataset version (one (T, 128) array per item).

Only wiring lives here: planning, batching and the encoding are in `tasks/`. Every latents key
is computed before anything runs, so an unchanged re-run finds each batch complete and Prefect
shows it as Cached.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.deployment_defaults import over_deployment_default
from tasks.encode import stage as encode
from tasks.pipeline.batching import check_failure_bound, count_statuses, partition
from tasks.pipeline.caching import batch_outcomes, submit_batch
from tasks.pipeline.models import resolve_model
from tasks.pipeline.params import RunSettings
from tasks.pipeline.preflight import check_encode_space
from tasks.pipeline.publishing import publish_dataset_version
from tasks.store import ArtifactStore

DEFAULT_RUN = RunSettings()


@flow(
    name="encode-dataset",
    description="Encode a normalized dataset version into latents with a stored autoencoder.",
    # One worker thread: TensorFlow already spreads one encode over every core.
    task_runner=ThreadPoolTaskRunner(max_workers=1),
    log_prints=True,
)
def encode_dataset(dataset: str, autoencoder: str, name: str | None = None, run: RunSettings = DEFAULT_RUN) -> dict:
    """Encode `dataset` (NAME or NAME@V) with the autoencoder of model `autoencoder` and publish
    a version of `name` (default `<dataset name>-latents`)."""
    run = over_deployment_default("run", run)
    logger = get_run_logger()
    store = ArtifactStore.open(run.store)
    source = store.resolve(dataset)
    ae_key, _ = resolve_model(store, autoencoder).require_autoencoder()
    items = encode.plan_encode_items(source, ae_key)
    logger.info("encoding %d items of %s with autoencoder %s", len(items), source.ref, ae_key[:12])
    check_encode_space(store, items, run, logger.info)

    futures = [
        submit_batch(encode.encode_batch, store, batch, run.retry_failed, store_root=store.root, ae_key=ae_key)
        for batch in partition(items, run.batch_size)
    ]
    outcomes = [outcome for future in futures for outcome in batch_outcomes(future)]
    check_failure_bound(encode.STAGE, outcomes, run.max_failure_ratio)

    published = publish_dataset_version(
        store_root=store.root,
        name=name or f"{source.name}-latents",
        stage=encode.STAGE,
        params={"autoencoder": ae_key},
        outcomes=outcomes,
        failures=[o for o in outcomes if not o.ok],
        lineage={"parents": [source.ref], "autoencoder": ae_key},
    )
    return {**published, "stages": {"encode": count_statuses(outcomes)}}
