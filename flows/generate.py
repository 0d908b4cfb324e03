"""Flow: samples of a stored model as a versioned dataset (`<model name>-samples` by default)."""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import flow, get_run_logger

from flows.params import RunSettings
from tasks.generate import stage as generation
from tasks.pipeline.batching import check_failure_bound, count_statuses
from tasks.pipeline.models import resolve_model
from tasks.pipeline.publishing import publish_dataset_version
from tasks.store import ArtifactStore

DEFAULT_RUN = RunSettings()


@flow(name="generate-samples", description="Generate audio samples with a stored Musika model.", log_prints=True)
def generate_samples(
    model: str,
    seconds: float = 30.0,
    count: int = 4,
    truncation: float = 2.0,
    seed: int = 0,
    base_channels: int | None = None,
    name: str | None = None,
    output: str | None = None,
    run: RunSettings = DEFAULT_RUN,
) -> dict:
    """Generate `count` samples of `seconds` from `model` (NAME or NAME@V) with seeds seed..seed+count-1;
    publish them as a version of `name`; copy the WAV files into `output` when given."""
    generation.check_request(seconds, count, truncation)
    store = ArtifactStore.open(run.store)
    stored = resolve_model(store, model)
    items = generation.plan_samples(stored, seconds, count, truncation, seed)
    outcomes = generation.generate_samples(store.root, items, base_channels)
    check_failure_bound(generation.STAGE, outcomes, run.max_failure_ratio)
    published = publish_dataset_version(
        store_root=store.root,
        name=name or f"{stored.version.name}-samples",
        stage=generation.STAGE,
        params={"model": stored.ref, "seconds": seconds, "truncation": truncation, "seed": seed},
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
