"""Flow: a normalized dataset version -> a model version holding a trained Musika autoencoder.

The path for users without the official Musika weights. Only wiring lives here: planning,
training and publishing the object are in `tasks/train/autoencoder.py`. The model version follows
`tasks/pipeline/models.py` (one `autoencoder` item), so `musika-piano encode --autoencoder <name>` and
the GAN trainer take it like an imported official checkpoint. A second run with the same
dataset and settings trains nothing and returns the existing version.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.deployment_defaults import over_deployment_default
from musika_model.config import AutoencoderConfig
from tasks.pipeline.batching import ItemOutcome
from tasks.pipeline.models import AUTOENCODER_ITEM
from tasks.pipeline.params import RunSettings
from tasks.pipeline.publishing import publish_dataset_version
from tasks.store import ArtifactStore
from tasks.train import autoencoder
from tasks.train.params import AutoencoderTrainingParams

DEFAULT_SETTINGS, DEFAULT_RUN = AutoencoderTrainingParams(), RunSettings()


@flow(
    name="train-autoencoder",
    description="Train a Musika autoencoder on a normalized dataset; publish it as a model.",
    log_prints=True,
)
def train_autoencoder_flow(
    dataset: str,
    name: str | None = None,
    settings: AutoencoderTrainingParams = DEFAULT_SETTINGS,
    run: RunSettings = DEFAULT_RUN,
) -> dict:
    """Train on `dataset` (NAME or NAME@V) and publish a version of model `name` (default
    `<dataset name>-ae`)."""
    settings = over_deployment_default("settings", settings)
    run = over_deployment_default("run", run)
    logger = get_run_logger()
    store = ArtifactStore.open(run.store)
    source = store.resolve(dataset)
    training = autoencoder.training_config(settings.preset, **settings.training_overrides())
    plan = autoencoder.plan_training(
        store, source, AutoencoderConfig.tiny(settings.width_divisor), training, settings.max_items
    )
    if plan.too_short:
        logger.warning(
            "%d items of %s are shorter than one training crop and were left out",
            len(plan.too_short),
            source.ref,
        )
    if plan.unselected:
        logger.info("max_items %d: %d usable items left out", settings.max_items, plan.unselected)

    trained = autoencoder.train_autoencoder_task(store.root, plan)
    status = "computed" if trained.trained else "reused"
    outcome = ItemOutcome(AUTOENCODER_ITEM, trained.key, autoencoder.STAGE, status, trained.stats)
    skipped = [
        ItemOutcome(
            item.item_id,
            item.key,
            autoencoder.STAGE,
            "failed",
            reason="too_short",
            message=f"{item.seconds:.2f} s is shorter than one training crop",
        )
        for item in plan.too_short
    ]
    published = publish_dataset_version(
        store_root=store.root,
        name=name or f"{source.name}-ae",
        stage="checkpoint",
        params={"format": autoencoder.MODEL_FORMAT, "sets": [AUTOENCODER_ITEM], **plan.params},
        outcomes=[outcome],
        failures=skipped,
        lineage={"parents": [source.ref]},
    )
    return {
        "ref": published["ref"],
        "created": published["created"],
        "uri": published["uri"],
        "key": trained.key,
        "trained": trained.trained,
        "stats": trained.stats,
        "skipped_short": len(plan.too_short),
    }
