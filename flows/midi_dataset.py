"""Flow: a folder or glob of MIDI files -> rendered audio -> loudness-normalized dataset version.

Only wiring lives here: planning, batching and the stage work are in `tasks/`. Every object key
is computed before anything runs, so an unchanged re-run finds each batch complete and Prefect
shows it as Cached; an added MIDI file lands in one batch and only that item is rendered.
"""

from __future__ import annotations

import os

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.params import LoudnessSettings, RenderSettings, RunSettings
from tasks.normalize import stage as normalize
from tasks.normalize.core import LoudnessParams
from tasks.pipeline.batching import check_failure_bound, count_statuses, partition
from tasks.pipeline.caching import batch_outcomes, submit_batch
from tasks.pipeline.publishing import publish_dataset_version
from tasks.pipeline.sources import MIDI_EXTENSIONS, resolve_sources
from tasks.render import stage as render
from tasks.render.core import RenderParams
from tasks.store import ArtifactStore

DEFAULT_RENDER, DEFAULT_LOUDNESS, DEFAULT_RUN = RenderSettings(), LoudnessSettings(), RunSettings()


@flow(
    name="build-midi-dataset",
    description="Render MIDI through soundfonts, loudness-normalize, publish a dataset version.",
    task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2),
    log_prints=True,
)
def build_midi_dataset(
    name: str,
    sources: list[str],
    render_settings: RenderSettings = DEFAULT_RENDER,
    loudness_settings: LoudnessSettings = DEFAULT_LOUDNESS,
    run: RunSettings = DEFAULT_RUN,
) -> dict:
    """Build (or refresh) the dataset `name` from MIDI `sources` (folders, globs or files)."""
    logger = get_run_logger()
    store = ArtifactStore.open(run.store)
    found = resolve_sources(sources, MIDI_EXTENSIONS)
    render_params = RenderParams(
        force_piano=render_settings.force_piano,
        velocity_scale=render_settings.velocity_scale,
        tail_seconds=render_settings.tail_seconds,
    )
    loudness_params = LoudnessParams(
        target_lufs=loudness_settings.target_lufs,
        peak_ceiling_dbfs=loudness_settings.peak_ceiling_dbfs,
        peak_policy=loudness_settings.peak_policy,
    )
    render_items = render.plan_render_items(
        found.files, render_settings.soundfonts, render_settings.transpose, render_params
    )
    normalize_items = normalize.plan_normalize_items(render_items, loudness_params)
    logger.info(
        "%d MIDI files (%d duplicates skipped) -> %d renderings into %s",
        len(found.files), len(found.duplicates), len(render_items), store.root,
    )

    normalize_for = {item.inputs[0]: item for item in normalize_items}
    batches = []
    for batch in partition(render_items, run.batch_size):
        rendered = submit_batch(
            render.render_batch, store, batch, run.retry_failed,
            store_root=store.root, max_duration_s=render_settings.max_midi_minutes * 60.0,
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
        params={"render": render_params.to_dict(), "loudness": loudness_params.to_dict(),
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
