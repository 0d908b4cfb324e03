"""Flow: samples of a stored model as a versioned dataset (`<model name>-samples` by default)."""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import flow, get_run_logger

from flows.deployment_defaults import over_deployment_default
from tasks.generate import stage as generation
from tasks.generate.params import GenerateParams
from tasks.pipeline.batching import check_failure_bound, count_statuses
from tasks.pipeline.models import resolve_model
from tasks.pipeline.params import RunSettings
from tasks.pipeline.publishing import publish_dataset_version
from tasks.store import ArtifactStore

DEFAULT_RUN = RunSettings()
DEFAULT_REQUEST = GenerateParams()
"""The request's parameters stay scalars of the flow (deployments pass `seconds`, `count`, ...);
their defaults and bounds are GenerateParams'."""


@flow(name="generate-samples", description="Generate audio samples with a stored Musika model.", log_prints=True)
def generate_samples(
    model: str,
    seconds: float = DEFAULT_REQUEST.seconds,
    count: int = DEFAULT_REQUEST.count,
    truncation: float = DEFAULT_REQUEST.truncation,
    seed: int = DEFAULT_REQUEST.seed,
    base_channels: int | None = DEFAULT_REQUEST.base_channels,
    name: str | None = None,
    output: str | None = None,
    run: RunSettings = DEFAULT_RUN,
) -> dict:
    """Generate `count` samples of `seconds` from `model` (NAME or NAME@V) with seeds seed..seed+count-1;
    publish them as a version of `name`; copy the WAV files into `output` when given."""
    request = GenerateParams(seconds=seconds, count=count, truncation=truncation, seed=seed,
                             base_channels=base_channels)
    run = over_deployment_default("run", run)
    store = ArtifactStore.open(run.store)
    stored = resolve_model(store, model)
    items = generation.plan_samples(stored, request)
    outcomes = generation.generate_samples(store.root, items, request.base_channels)
    check_failure_bound(generation.STAGE, outcomes, run.max_failure_ratio)
    published = publish_dataset_version(
        store_root=store.root,
        name=name or f"{stored.version.name}-samples",
        stage=generation.STAGE,
        params={"model": stored.ref, "seconds": request.seconds, "truncation": request.truncation,
                "seed": request.seed},
        outcomes=outcomes,
        failures=[o for o in outcomes if not o.ok],
        lineage={"parents": [stored.ref]},
    )
    files = [str(store.local_path(o.key) / generation.SAMPLE_FILE) for o in outcomes if o.ok]
    if output:
        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        files = [shutil.copyfile(path, folder / f"{o.item_id}.wav") for path, o in
                 zip(files, [o for o in outcomes if o.ok], strict=True)]
        get_run_logger().info("copied %d samples to %s", len(files), folder)
    return {**published, "files": [str(path) for path in files],
            "stages": {"generate": count_statuses(outcomes)}}
