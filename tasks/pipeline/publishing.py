"""Publish a dataset version from a stage's outcomes, and announce it to Prefect.

`summarize_outcomes`, `failures_by_reason` and `failed_items` are pure; `publish_dataset_version`
is the thin task that writes the version into the store, attaches a keyed table artifact
(statistics and the version's location) and a `<key>-location` link to the flow run (links:
`tasks.store.links`), emits `musika.dataset.published` for deployment triggers, and writes the
version's HTML report (`tasks.reports.report`) with a `report-<name>` link artifact.
Publishing uses the reports, never the other way round (artifact keys are in artifact_keys.py).
"""

from __future__ import annotations

import math
import subprocess
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event

from tasks.pipeline.artifact_keys import artifact_key
from tasks.pipeline.batching import ItemOutcome
from tasks.reports.report import report_or_warn
from tasks.store import ArtifactStore, DatasetVersion
from tasks.store.layout import version_rel
from tasks.store.links import store_link

DATASET_PUBLISHED_EVENT = "musika.dataset.published"

_SUMMARY_FIELDS = ("duration_s", "lufs_before", "lufs_after", "true_peak_after_dbtp", "gain_db", "note_density",
                   "bandwidth_hz")


def _describe(values: Sequence[float]) -> dict[str, float]:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return {}
    mean = sum(finite) / len(finite)
    spread = math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))
    return {"min": round(min(finite), 3), "mean": round(mean, 3), "max": round(max(finite), 3), "std": round(spread, 3)}


def summarize_outcomes(outcomes: Sequence[ItemOutcome], failures: Sequence[ItemOutcome]) -> dict[str, Any]:
    """Dataset statistics from the published items' stats and every stage's failures."""
    kept = [o for o in outcomes if o.ok]
    total_seconds = sum(float(o.stats.get("duration_s", 0.0)) for o in kept)
    summary: dict[str, Any] = {
        "items": len(kept),
        "failed": len(failures),
        "hours": round(total_seconds / 3600.0, 4),
        "computed": sum(o.status == "computed" for o in kept),
        "reused": sum(o.status == "reused" for o in kept),
        "limited": sum(bool(o.stats.get("limited")) for o in kept),
        "failure_reasons": dict(Counter(o.reason or "error" for o in failures)),
    }
    for name in _SUMMARY_FIELDS:
        described = _describe([o.stats[name] for o in kept if name in o.stats])
        if described:
            summary[name] = described
    return summary


def failures_by_reason(failures: Sequence[ItemOutcome]) -> dict[str, dict[str, int]]:
    """Per stage (in the order they first fail), how many items failed for which reason."""
    counts: dict[str, Counter[str]] = {}
    for outcome in failures:
        counts.setdefault(outcome.stage, Counter())[outcome.reason or "error"] += 1
    return {stage: dict(sorted(reasons.items())) for stage, reasons in counts.items()}


def failed_items(failures: Sequence[ItemOutcome]) -> list[dict[str, str | None]]:
    """Every failed item, by id: its id, the stage it failed in, the reason code and the message."""
    return [{"item_id": o.item_id, "stage": o.stage, "reason": o.reason or "error", "message": o.message}
            for o in sorted(failures, key=lambda o: o.item_id)]


def summarize_sources(
    kept: Sequence[ItemOutcome], failures: Sequence[ItemOutcome], source_of: Callable[[ItemOutcome], str]
) -> dict[str, dict[str, Any]]:
    """Per source (as ``source_of`` names it): items kept, the recordings they come from, hours
    kept, and how many items were dropped for which reasons."""
    rows: dict[str, dict[str, Any]] = {}

    def row(outcome: ItemOutcome) -> dict[str, Any]:
        return rows.setdefault(source_of(outcome), {"items": 0, "recordings": set(), "seconds": 0.0,
                                                    "failed": 0, "failure_reasons": Counter()})

    for outcome in kept:
        entry = row(outcome)
        entry["items"] += 1
        entry["recordings"].add(outcome.source.get("parent_id", outcome.item_id))
        entry["seconds"] += float(outcome.stats.get("duration_s", 0.0))
    for outcome in failures:
        entry = row(outcome)
        entry["failed"] += 1
        entry["failure_reasons"][outcome.reason or "error"] += 1
    return {
        source: {"items": entry["items"], "recordings": len(entry["recordings"]),
                 "hours": round(entry["seconds"] / 3600.0, 4), "failed": entry["failed"],
                 "failure_reasons": dict(sorted(entry["failure_reasons"].items()))}
        for source, entry in sorted(rows.items())
    }


@lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the project checkout (with `+dirty` for local changes), else the package version."""
    project = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        try:
            return f"musika-piano {package_version('musika-piano')}"
        except PackageNotFoundError:
            return "unknown"


def _flatten(name: str, value: Any) -> list[dict[str, Any]]:
    if isinstance(value, Mapping):
        return [row for sub, inner in value.items() for row in _flatten(f"{name}.{sub}", inner)]
    return [{"statistic": name, "value": value}]


def statistics_table(version: DatasetVersion) -> list[dict[str, Any]]:
    """Rows of (statistic, value) for the UI; nested statistics (min/mean/max, drop reasons,
    per-source counts) become one row each, named by their dotted path."""
    rows: list[dict[str, Any]] = [
        {"statistic": "version", "value": version.ref},
        {"statistic": "created_at", "value": version.created_at},
    ]
    for name, value in version.stats.items():
        rows.extend(_flatten(name, value))
    return rows


@task(name="publish-dataset-version")
def publish_dataset_version(
    store_root: str,
    name: str,
    stage: str,
    params: Mapping[str, Any],
    outcomes: Sequence[ItemOutcome],
    failures: Sequence[ItemOutcome],
    lineage: Mapping[str, Any],
    sources: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish the successful outcomes as the next version of `name` (or find it unchanged).

    `sources`, when given, is a per-source breakdown (`summarize_sources`) kept in the stats.
    The result (what the dataset flows return) names the version and says why this run's items
    failed: `failures_by_reason` per stage, and every one in `failed_items`.
    """
    logger = get_run_logger()
    store = ArtifactStore(store_root)
    kept = sorted((o for o in outcomes if o.ok), key=lambda o: o.item_id)
    version = store.publish_dataset(
        name,
        stage=stage,
        params=dict(params),
        items=[{"item_id": o.item_id, "key": o.key, "stats": o.stats} for o in kept],
        lineage={**lineage, "code_version": code_version()},
        stats={**summarize_outcomes(kept, failures), **({"sources": dict(sources)} if sources is not None else {})},
        failures=[{"item_id": o.item_id, "stage": o.stage, "reason": f"{o.reason}: {o.message}"} for o in failures],
    )
    location = store.dataset_uri(version.name, version.version)
    link = store_link(store, version_rel(version.name, version.version))
    state = "published" if version.created else "unchanged, kept"
    logger.info("%s %s (%d items) at %s", state, version.ref, len(version.items), link.location)
    create_table_artifact(
        key=artifact_key(name),
        table=statistics_table(version),
        description=f"Dataset **{version.ref}** ({state}): {len(version.items)} items, "
        f"{len(version.failures)} failures. {link.markdown('Manifest')}",
    )
    create_markdown_artifact(key=f"{artifact_key(name)}-location", markdown=link.markdown(version.ref),
                             description=f"Manifest of **{version.ref}**")
    if version.created or not store.has_report(version.name, version.version):
        report_or_warn(store, version.ref)
    if version.created:
        emit_event(
            DATASET_PUBLISHED_EVENT,
            resource={"prefect.resource.id": f"musika.dataset.{name}", "prefect.resource.name": name},
            payload={"name": name, "version": version.version, "ref": version.ref, "uri": location,
                     "items": len(version.items), "hours": version.stats.get("hours")},
        )
    return {"ref": version.ref, "name": name, "version": version.version, "created": version.created,
            "items": len(version.items), "failures": len(version.failures), "uri": location,
            "failures_by_reason": failures_by_reason(failures), "failed_items": failed_items(failures)}
