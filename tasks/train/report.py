"""The report of a model version (stage `checkpoint`, published by GAN training, autoencoder
training and checkpoint import): per network set, its training curves and samples when it was
trained here, else its network summary."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from musika_model.checkpoints import SAMPLES_DIR, STATE_FILE
from tasks.pipeline.models import AUTOENCODER_ITEM, GAN_ITEM
from tasks.reports import plots
from tasks.reports.page import (
    MAX_CLIPS_PER_SUBJECT,
    Clip,
    Figure,
    Links,
    ReportSections,
    Table,
    figure,
    flatten,
    key_values,
    listening_gallery,
    table,
)
from tasks.store import ArtifactStore, DatasetItem, DatasetVersion
from tasks.train.autoencoder import HISTORY_FILE

TEMPLATE = f"{__package__}:report.html.j2"
GAN_LOSSES = ("critic_real", "critic_fake", "generator", "r1_penalty")
SAMPLES_GLOB = f"{SAMPLES_DIR}/sample-*.wav"


@dataclass(frozen=True)
class GanTraining:
    """A GAN trained here: loss curves with the lr and events, its state, events, per-epoch
    history, configuration and lineage, and the samples of the checkpoint."""

    kind: ClassVar[str] = "gan"
    curves: Figure
    state: Table
    events: Table
    history: Table
    config: Table
    lineage: Table
    samples: list[Clip]


@dataclass(frozen=True)
class AutoencoderTraining:
    """An autoencoder trained here: the loss curves of each of its training stages."""

    kind: ClassVar[str] = "autoencoder"
    curves: list[Figure]
    summary: Table


@dataclass(frozen=True)
class NetworkSet:
    """A network set trained elsewhere (an imported official one, or a referenced one)."""

    kind: ClassVar[str] = "networks"
    title: str
    summary: Table


def checkpoint_samples(folder: Path) -> list[str]:
    """The samples/sample-N.wav files of a checkpoint, in N order, at most MAX_CLIPS_PER_SUBJECT."""
    files = sorted(folder.glob(SAMPLES_GLOB), key=lambda path: (len(path.name), path.name))
    return [path.relative_to(folder).as_posix() for path in files[:MAX_CLIPS_PER_SUBJECT]]


def gan_training(folder: Path, key: str, links: Links) -> GanTraining:
    state = json.loads((folder / STATE_FILE).read_text())
    history = state.get("history") or []
    events = state.get("events") or []
    epochs = [entry.get("epoch") for entry in history]
    curves = plots.line_chart_png(
        {name: (epochs, [entry.get(name) for entry in history]) for name in GAN_LOSSES},
        "GAN losses per epoch",
        "epoch",
        "loss",
        secondary=("learning rate", epochs, [entry.get("lr") for entry in history]),
        markers=[
            (event["epoch"], f"{event['kind']} at step {event['step']}")
            for event in events
            if event.get("kind") == "divergence"
        ],
    )
    progress = {
        name: value
        for name, value in state.items()
        if name not in ("history", "events", "config", "lineage")
    }
    return GanTraining(
        curves=figure(curves, "loss curves", wide=True),
        state=key_values(progress),
        events=table(events),
        history=table(history),
        config=key_values(flatten(state.get("config") or {})),
        lineage=key_values(flatten(state.get("lineage") or {})),
        samples=listening_gallery(folder, key, checkpoint_samples(folder), "sample", links),
    )


def autoencoder_curves(folder: Path) -> list[Figure]:
    """Loss curves of each training stage of the autoencoder, against the step."""
    history = json.loads((folder / HISTORY_FILE).read_text())
    names = list(dict.fromkeys(name for entry in history for name in entry if name != "step"))
    curves = []
    for stage in dict.fromkeys(name.split("/", 1)[0] for name in names):
        stage_names = [name for name in names if name.split("/", 1)[0] == stage]
        rows = [entry for entry in history if any(name in entry for name in stage_names)]
        steps = [entry.get("step") for entry in rows]
        series = {name: (steps, [entry.get(name) for entry in rows]) for name in stage_names}
        curves.append(
            figure(
                plots.line_chart_png(series, f"Autoencoder {stage} losses", "step", "loss"),
                f"autoencoder {stage} loss curves",
            )
        )
    return curves


def network_summary(store: ArtifactStore, item: DatasetItem) -> Table:
    """The item's statistics, or its object's for a network set the version only refers to."""
    return key_values(flatten(item.stats or store.manifest(item.key).stats))


def model_report(store: ArtifactStore, version: DatasetVersion) -> ReportSections:
    """A section per network set of the version: the GAN's first (what the model plays), then
    the others in item order."""
    links = Links(version)
    network_sets: list[GanTraining | AutoencoderTraining | NetworkSet] = []
    for item in sorted(version.items, key=lambda item: item.item_id != GAN_ITEM):
        folder = store.local_path(item.key)
        if item.item_id == GAN_ITEM and (folder / STATE_FILE).is_file():
            network_sets.append(gan_training(folder, item.key, links))
        elif item.item_id == AUTOENCODER_ITEM and (folder / HISTORY_FILE).is_file():
            network_sets.append(
                AutoencoderTraining(autoencoder_curves(folder), network_summary(store, item))
            )
        else:
            network_sets.append(
                NetworkSet(f"{item.item_id} (key {item.key[:12]})", network_summary(store, item))
            )
    return ReportSections(f"Model {version.ref}", TEMPLATE, {"network_sets": network_sets})
