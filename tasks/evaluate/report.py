"""The report of an evaluation version (stage `evaluate`): bars per metric across subjects with
the reference, the comparison table with each metric's best model marked, flags, samples, and
the reconstruction error by segment length."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tasks.evaluate.stage import METRICS_FILE
from tasks.reports import plots
from tasks.reports.page import (
    MAX_CLIPS_PER_SUBJECT,
    Clip,
    Figure,
    Links,
    ReportSections,
    figure,
    listening_gallery,
    table,
)
from tasks.store import ArtifactStore, DatasetVersion

TEMPLATE = f"{__package__}:report.html.j2"
FRECHET = {"frechet_distance": {"label": "Frechet distance to the reference", "better": "lower"}}
"""The set-level metric every evaluation has beside its per-clip `metrics`."""


@dataclass(frozen=True)
class SubjectSamples:
    subject: str
    clips: list[Clip]


def _is_best(
    rows: Sequence[Mapping[str, Any]],
    reference: Mapping[str, Any] | None,
    metrics: Mapping[str, Mapping[str, Any]],
) -> Callable[[Mapping[str, Any], str], bool]:
    """Marks, per metric, the model row that does best by the metric's `better`."""
    best: dict[str, Any] = {}
    for name, definition in {**metrics, **FRECHET}.items():
        scored = []
        for row in rows:
            if row.get("kind") != "model" or not plots.finite_values([row.get(name)]):
                continue
            value = float(row[name])
            if definition.get("better") == "higher":
                scored.append((-value, row["subject"]))
            elif definition.get("better") == "closer" and reference is not None:
                target = plots.finite_values([reference.get(name)])
                if target:
                    scored.append((abs(value - target[0]), row["subject"]))
            elif definition.get("better") == "lower":
                scored.append((value, row["subject"]))
        if scored:
            best[name] = min(scored)[1]
    return lambda row, name: best.get(name) is not None and best.get(name) == row.get("subject")


def _bars(
    metrics: Mapping[str, Mapping[str, Any]],
    models: Sequence[Mapping[str, Any]],
    reference: Mapping[str, Any] | None,
) -> list[Figure]:
    """A bar chart per metric the models have, with the reference's value as a line."""
    bars = []
    for name, definition in {**metrics, **FRECHET}.items():
        if not any(name in row for row in models):
            continue
        unit = definition.get("unit") or ""
        label = definition.get("label") or name
        bars.append(
            figure(
                plots.bar_chart_png(
                    {row["subject"]: row.get(name) for row in models},
                    f"{label} ({definition.get('better', '?')} is better)",
                    unit or name,
                    reference=None
                    if reference is None
                    else (plots.finite_values([reference.get(name)]) or [None])[0],
                ),
                f"{name} by subject",
            )
        )
    return bars


def evaluation_report(store: ArtifactStore, version: DatasetVersion) -> ReportSections:
    """Metrics by subject, comparison, flags, samples and, when measured, the reconstruction
    error of the autoencoder by segment length."""
    links = Links(version)
    metrics: Mapping[str, Mapping[str, Any]] = version.stats.get("metrics") or {}
    rows: list[Mapping[str, Any]] = version.stats.get("table") or []
    reference = next((row for row in rows if row.get("kind") == "reference"), None)
    models = [row for row in rows if row.get("kind") == "model"]

    flags, samples, reconstruction = [], [], {}
    for item in version.items:
        folder = store.local_path(item.key)
        document = json.loads((folder / METRICS_FILE).read_text())
        subject = document.get("subject", item.item_id)
        for flag in document.get("flags") or []:
            flags.append({"subject": subject, "clip": "", "flag": flag})
        players = []
        for clip in document.get("clips") or []:
            for flag in clip.get("flags") or []:
                flags.append({"subject": subject, "clip": clip.get("file") or "", "flag": flag})
            if clip.get("file") and len(players) < MAX_CLIPS_PER_SUBJECT:
                players.append(clip["file"])
        samples.append(
            SubjectSamples(subject, listening_gallery(folder, item.key, players, subject, links))
        )
        points = document.get("reconstruction") or []
        if points:
            reconstruction[subject] = (
                [p.get("seconds") for p in points],
                [p.get("lsd_db") for p in points],
            )
    lsd = None
    if reconstruction:
        lsd = figure(
            plots.line_chart_png(
                reconstruction,
                "Log-spectral distance of AE reconstructions",
                "segment length (s)",
                "LSD (dB)",
            ),
            "reconstruction error",
            wide=True,
        )
    return ReportSections(
        f"Evaluation {version.ref}",
        TEMPLATE,
        {
            "bars": _bars(metrics, models, reference),
            "legend": table([{"metric": name, **definition} for name, definition in metrics.items()]),
            "comparison": table(
                rows, ["subject", "kind", *metrics, "frechet_distance"], _is_best(rows, reference, metrics)
            ),
            "flags": table(flags),
            "samples": samples,
            "reconstruction": lsd,
        },
    )
