"""Flow: a folder or glob of MIDI files -> rendered audio -> loudness-normalized dataset version.

Only wiring lives here: planning, batching and the stage work are in `tasks/`. Every object key
is computed before anything runs, so an unchanged re-run finds each batch complete and Prefect
shows it as Cached; an added MIDI file lands in one batch and only that item is rendered.
"""

from __future__ import annotations

import os

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.deployment_defaults import over_deployment_default
from tasks.normalize import stage as normalize
from tasks.normalize.params import LoudnessParams
from tasks.pipeline.batching import check_failure_bound, count_statuses, partition
from tasks.pipeline.caching import batch_outcomes, submit_batch
from tasks.pipeline.params import RunSettings
from tasks.pipeline.preflight import check_midi_space
from tasks.pipeline.publishing import publish_dataset_version
from tasks.pipeline.sources import MIDI_EXTENSIONS, resolve_sources
from tasks.render import stage as render
from tasks.render.params import RenderParams
from tasks.store import ArtifactStore

DEFAULT_RENDER, DEFAULT_LOUDNESS, DEFAULT_RUN = RenderParams(), LoudnessParams(), RunSettings()


@flow(
    name="build-midi-dataset",
    description="Render MIDI through soundfonts, loudness-normalize, publish a dataset version.",
    task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2),
    log_prints=True,
)
def build_midi_dataset(
    name: str,
    sources: list[str],
    render_settings: RenderParams = DEFAULT_RENDER,
    loudness_settings: LoudnessParams = DEFAULT_LOUDNESS,
    run: RunSettings = DEFAULT_RUN,
) -> dict:
    """Build (or refresh) the dataset `name` from MIDI `sources` (folders, globs or files)."""
    render_settings = over_deployment_default("render_settings", render_settings)
    loudness_settings = over_deployment_default("loudness_settings", loudness_settings)
    run = over_deployment_default("run", run)
    logger = get_run_logger()
    store = ArtifactStore.open(run.store)
    found = resolve_sources(sources, MIDI_EXTENSIONS)
    render_items = render.plan_render_items(found.files, render_settings)
    normalize_items = normalize.plan_normalize_items(render_items, loudness_settings)
    logger.info(
        "%d MIDI files (%d duplicates skipped) -> %d renderings into %s",
        len(found.files), len(found.duplicates), len(render_items), store.root,
    )
    check_midi_space(store, render_items, normalize_items, render_settings.max_midi_minutes, run, logger.info)

    normalize_for = {item.inputs[0]: item for item in normalize_items}
    batches = []
    for batch in partition(render_items, run.batch_size):
        rendered = submit_batch(
            render.render_batch, store, batch, run.retry_failed,
            store_root=store.root, max_duration_s=render_settings.max_midi_minutes * 60.0,
            keep_unpitched=render_settings.keep_unpitched,
        )
        normalized = submit_batch(
            normalize.normalize_batch, store, [normalize_for[item.key] for item in batch], run.retry_failed,
            store_root=store.root, upstream=rendered,
        )
        batches.append((rendered, normalized))
    rendered_outcomes = [o for rendered, _ in batches for o in batch_outcomes(rendered)]
    normalized_outcomes = [o for _, normalized in batches for o in batch_outcomes(normalized)]

    check_failure_bound("render", rendered_outcomes, run.max_failure_ratio)
    attempted = [o for o in normalized_outcomes if o.status != "skipped"]
    check_failure_bound("normalize", attempted, run.max_failure_ratio)
    failures = [o for o in rendered_outcomes + attempted if not o.ok]

    published = publish_dataset_version(
        store_root=store.root,
        name=name,
        stage=normalize.STAGE,
        # The record's "render" has always been the untransposed rendering's key input, with the
        # shifts listed beside it.
        params={"render": render_settings.item_key_params(transpose=0),
                "loudness": loudness_settings.model_dump(mode="json"),
                "transpose": sorted(set(render_settings.transpose))},
        outcomes=attempted,
        failures=failures,
        lineage={
            "sources": [f.to_dict() for f in found.files],
            "duplicates": found.duplicates,
            "soundfonts": sorted({item.source["soundfont_digest"] for item in render_items}),
        },
    )
    return {**published, "stages": {"render": count_statuses(rendered_outcomes),
                                    "normalize": count_statuses(attempted)}}
