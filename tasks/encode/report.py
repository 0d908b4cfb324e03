"""The report of a latents version (stage `encode`): latent lengths, per-item mean and spread,
and one item's latents as an image."""

from __future__ import annotations

import numpy as np

from tasks.encode.stage import LATENTS_FILE
from tasks.reports import plots
from tasks.reports.page import ReportSections, failures, figure, item_values, table
from tasks.store import ArtifactStore, DatasetVersion

TEMPLATE = f"{__package__}:report.html.j2"
ITEM_COLUMNS = ("latent_frames", "mean", "std", "duration_s")


def latents_report(store: ArtifactStore, version: DatasetVersion) -> ReportSections:
    """Histograms of latent frames and of per-item mean/std, the first item's latents, a row per
    item and the failures."""
    figures = [
        figure(
            plots.histogram_png(
                {"frames": item_values(version, "latent_frames")},
                "Latent frames per item",
                "frames (92.9 ms each)",
            ),
            "latent frames histogram",
        ),
        figure(
            plots.histogram_png(
                {"mean": item_values(version, "mean"), "std": item_values(version, "std")},
                "Per-item latent mean and standard deviation",
                "value",
            ),
            "per-item mean/std histogram",
        ),
    ]
    if version.items:
        first = version.items[0]
        latents = np.load(store.local_path(first.key) / LATENTS_FILE)
        figures.append(
            figure(
                plots.array_image_png(
                    latents.T,
                    f"Latents of {first.item_id}",
                    "frame",
                    "dimension (L 0-63, R 64-127)",
                    "value",
                ),
                f"latents of {first.item_id}",
            )
        )
    rows = [
        {"item": item.item_id, **{name: item.stats.get(name) for name in ITEM_COLUMNS}}
        for item in version.items
    ]
    return ReportSections(
        f"Latents {version.ref}",
        TEMPLATE,
        {"figures": figures, "per_item": table(rows), "failures": failures(version)},
    )
