"""The report of a dataset version (stage `normalize`, the versions the dataset flows publish):
distributions of the items' statistics, per-source counts, failures and a few players."""

from __future__ import annotations

from typing import Any

from musika_model.audio import audio_info, read_audio_window
from tasks.evaluate.metrics import onset_density, onset_envelope
from tasks.pipeline.audio_io import single_audio_file
from tasks.reports import plots
from tasks.reports.page import (
    Figure,
    Links,
    ReportSections,
    evenly_spaced,
    failures,
    figure,
    flatten,
    item_values,
    items_table,
    key_values,
    table,
)
from tasks.reports.spectrograms import mono_mix
from tasks.store import ArtifactStore, DatasetVersion

TEMPLATE = f"{__package__}:report.html.j2"
MAX_AUDIO_ANALYSED = 16  # items whose audio is decoded for onset density
ONSET_SECONDS = 30.0  # of each of them
MAX_PLAYERS = 6  # audio players of dataset items
STAT_HISTOGRAMS = (
    ("gain_db", "Gain applied", "dB"),
    ("true_peak_after_dbtp", "True peak after normalization", "dBTP"),
    ("bandwidth_hz", "Bandwidth", "Hz"),
    ("note_density", "Note density (from the MIDI)", "notes per second"),
)
"""Item statistics drawn when the version's items have them (not every source gives each)."""


def onset_densities(store: ArtifactStore, version: DatasetVersion) -> list[float]:
    """Onset density (tasks.evaluate.metrics) in the first ONSET_SECONDS of up to MAX_AUDIO_ANALYSED items
    spread over the version: a bounded cost (~1 s) however large the version is."""
    densities = []
    for index in evenly_spaced(len(version.items), MAX_AUDIO_ANALYSED):
        path = single_audio_file(store.local_path(version.items[index].key))
        opening, rate = read_audio_window(path, 0, round(ONSET_SECONDS * audio_info(path).sample_rate))
        mono = mono_mix(opening)
        densities.append(onset_density(onset_envelope(mono, rate), len(mono) / rate, rate))
    return densities


def _figures(store: ArtifactStore, version: DatasetVersion) -> list[Figure]:
    figures = [
        figure(
            plots.histogram_png(
                {"duration": item_values(version, "duration_s")}, "Item duration", "seconds"
            ),
            "duration histogram",
        ),
        figure(
            plots.histogram_png(
                {
                    "before": item_values(version, "lufs_before"),
                    "after": item_values(version, "lufs_after"),
                },
                "Integrated loudness before and after normalization",
                "LUFS",
            ),
            "loudness before/after histogram",
        ),
    ]
    for stat, title, unit in STAT_HISTOGRAMS:
        values = item_values(version, stat)
        if values:
            figures.append(
                figure(plots.histogram_png({stat: values}, title, unit), f"{stat} histogram")
            )
    if version.items:
        densities = onset_densities(store, version)
        figures.append(
            figure(
                plots.histogram_png(
                    {"onsets": densities},
                    "Onset density (detected in the audio)",
                    "onsets per second",
                ),
                f"onset density histogram ({len(densities)} of {len(version.items)} items)",
            )
        )
    return figures


def dataset_report(store: ArtifactStore, version: DatasetVersion) -> ReportSections:
    """Distributions of the items' statistics, sources, failures, players and the items."""
    links = Links(version)
    summary: dict[str, Any] = {
        name: value
        for name, value in flatten(version.stats).items()
        if not name.startswith(("sources.", "failure_reasons."))
    }
    sources = version.stats.get("sources") or {}
    players = []
    for index in evenly_spaced(len(version.items), MAX_PLAYERS):
        item = version.items[index]
        audio = single_audio_file(store.local_path(item.key)).name
        players.append(links.audio(item.key, audio, item.item_id))
    return ReportSections(
        f"Dataset {version.ref}",
        TEMPLATE,
        {
            "figures": _figures(store, version),
            "statistics": key_values(summary),
            "per_source": table([{"source": name, **flatten(row)} for name, row in sources.items()]),
            "failures": failures(version),
            "players": players,
            "items": items_table(version),
        },
    )
