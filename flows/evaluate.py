"""Flow: checkpoints measured next to their reference data, published as an evaluation version.

Only wiring lives here (`tasks/evaluate/stage.py` holds the stage, `tasks/evaluate/metrics.py` the measures).
Every subject's store object key is computed before anything runs, every bad input (a ref
that is no model, a base_channels that differs from a checkpoint, an empty reference) is
refused before anything is computed, and an unchanged re-run finds every object in the store.

The version (`eval-<reference name>` by default), stage "evaluate":
    params   {"checkpoints": [exact refs], "reference": exact ref, "settings": {...}}
    items    "reference" and one per checkpoint (item id = its exact ref), each an object
             with metrics.json (+ embedding_stats.npz, samples/sample-NN.wav)
    stats    {"metrics": METRICS, "table": [one row per subject]}
    lineage  parents = the reference and every checkpoint
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.deployment_defaults import over_deployment_default
from tasks.evaluate import stage
from tasks.evaluate.metrics import METRICS
from tasks.evaluate.params import EvaluateParams
from tasks.pipeline.models import resolve_model
from tasks.pipeline.params import RunSettings
from tasks.pipeline.publishing import artifact_key, code_version
from tasks.reports.report import report_or_warn
from tasks.store import ArtifactStore

DEFAULT_RUN = RunSettings()
DEFAULT_SETTINGS = EvaluateParams()


def _flags_markdown(name: str, lines: list[str]) -> str:
    if not lines:
        return f"### Flags of {name}\n\nNo flags: no silent, non-finite or beeping clip."
    return f"### Flags of {name}\n\n" + "\n".join(f"- {line}" for line in lines)


@flow(name="evaluate", description="Measure checkpoints' samples next to their training data.", log_prints=True)
def evaluate(
    checkpoints: list[str],
    reference: str,
    name: str | None = None,
    settings: EvaluateParams = DEFAULT_SETTINGS,
    run: RunSettings = DEFAULT_RUN,
) -> dict:
    """Evaluate model refs `checkpoints` against dataset `reference`; publish a version of `name`
    (default `eval-<reference name>`) and return it as a dict (with `subjects`: which objects
    this run computed)."""
    logger = get_run_logger()
    if not checkpoints:
        raise ValueError("evaluate needs at least one checkpoint (a model ref, e.g. my-model@2)")
    settings = over_deployment_default("settings", settings)
    run = over_deployment_default("run", run)
    store = ArtifactStore.open(run.store)
    reference_version = store.resolve(reference)
    models = list({model.ref: model for model in (resolve_model(store, ref) for ref in checkpoints)}.values())
    for model in models:
        stage.check_base_channels(model, settings.base_channels)
    items = stage.chosen_reference_items(reference_version, settings.reference_items)
    reference_plan = stage.plan_reference(reference_version, items, settings)
    model_plans = [stage.plan_model(model, reference_plan.reference_keys, settings) for model in models]

    outcomes = [stage.evaluate_reference(store.root, reference_plan, items, settings.seconds)]
    for plan in model_plans:
        outcomes.append(stage.evaluate_model(store.root, plan, items, settings))

    reference_result, reference_stats = stage.read_result(store, reference_plan.key)
    results, rows = [reference_result], [stage.comparison_row(reference_result, reference_stats, None)]
    for plan in model_plans:
        result, stats = stage.read_result(store, plan.key)
        results.append(result)
        rows.append(stage.comparison_row(result, stats, reference_stats))

    target = name or f"eval-{reference_version.name}"
    version = store.publish_dataset(
        target,
        stage=stage.STAGE,
        params={"checkpoints": [plan.subject for plan in model_plans], "reference": reference_version.ref,
                "settings": settings.model_dump(mode="json")},
        items=[{"item_id": stage.REFERENCE_ITEM, "key": reference_plan.key, "stats": rows[0]}]
        + [{"item_id": plan.subject, "key": plan.key, "stats": row} for plan, row in zip(model_plans, rows[1:],
                                                                                          strict=True)],
        lineage={"parents": [reference_version.ref, *(plan.subject for plan in model_plans)],
                 "code_version": code_version()},
        stats={"metrics": METRICS, "table": rows},
    )
    state = "published" if version.created else "unchanged, kept"
    logger.info("%s %s: %d checkpoints against %s", state, version.ref, len(model_plans), reference_version.ref)
    flags = stage.flag_lines(results)
    key = artifact_key(target, "evaluation")
    create_table_artifact(key=key, table=rows,
                          description=f"Evaluation **{version.ref}** ({state}) against {reference_version.ref}")
    create_markdown_artifact(key=f"{key}-flags", markdown=_flags_markdown(version.ref, flags),
                             description=f"Flags of {version.ref}")
    report = report_or_warn(store, version.ref)  # a failed report is a warning: the version stays
    return {**version.to_dict(), "uri": store.dataset_uri(version.name, version.version), "report": report,
            "subjects": {outcome["subject"]: "computed" if outcome["created"] else "reused" for outcome in outcomes}}
