"""HTML reports of dataset, latents, model and evaluation versions, stored beside the version.

A report is one self-contained HTML file: plots inlined as base64 PNG data URIs, inline CSS, no
JavaScript, no external assets, so it opens offline from anywhere. Audio is not inlined (it would
make reports of a few MB per clip): `<audio>` elements point at the object files by a path
relative to the report (`../../../objects/<k2>/<key>/<file>`). A relative path works for a local
store, a copied or moved store and an object-storage bucket served over HTTP alike, where an
absolute `file://` URI would break as soon as the store moves. A copy written elsewhere
(`musika-piano report --output`) gets a `<base href>` at the report's store folder instead, so
its audio still plays from the store.

Stored at `<store root>/datasets/<name>/reports/<NNNNNN>.html` (`ArtifactStore.write_report`).
The builders are pure (store in, HTML string out); `publish_report` is the thin Prefect task.
"""

from __future__ import annotations

import base64
import html
import json
import os
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact

from musika_model.audio import audio_info, read_audio, read_audio_window
from tasks.encode.stage import LATENTS_FILE
from tasks.encode.stage import STAGE as ENCODE_STAGE
from tasks.normalize.stage import STAGE as NORMALIZE_STAGE
from tasks.pipeline.audio_io import single_audio_file
from tasks.pipeline.models import AUTOENCODER_ITEM, GAN_ITEM
from tasks.pipeline.publishing import artifact_key
from tasks.reports import plots
from tasks.store import ArtifactStore, DatasetVersion
from tasks.store.layout import object_rel, report_rel

CHECKPOINT_STAGE = "checkpoint"
EVALUATE_STAGE = "evaluate"
TRAINING_STATE_FILE = "training_state.json"  # musika_model.checkpoints.STATE_FILE
AE_HISTORY_FILE = "training_history.json"
METRICS_FILE = "metrics.json"
SAMPLES_GLOB = "samples/sample-*.wav"

MAX_AUDIO_ANALYSED = 16  # items whose audio is decoded for onset density
ONSET_SECONDS = 30.0  # of each of them
MAX_PLAYERS = 6  # audio players of dataset items
MAX_CLIPS_PER_SUBJECT = 4  # mel images and players per model in model and evaluation reports
MAX_TABLE_ROWS = 200
GAN_LOSSES = ("critic_real", "critic_fake", "generator", "r1_penalty")

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.best { font-weight: bold; background: #eaf6ea; } .flag { color: #a33; }
figure { display: inline-block; width: 48%; margin: .5em 1% .5em 0; vertical-align: top; }
figure img { width: 100%; } figure.wide { width: auto; max-width: 98%; }
figure.wide img { width: auto; max-width: 100%; } .clip figure { width: 100%; margin: 0; }
figcaption { font-size: .85em; color: #555; } .note { color: #666; font-size: .9em; }
.clip { display: inline-block; width: 48%; margin: .5em 1% .5em 0; vertical-align: top; }
.player { display: inline-block; margin: .3em 1em .3em 0; }
"""


def report_artifact_key(name: str) -> str:
    """`report-<name>` in the lowercase letters, digits and dashes Prefect artifact keys allow."""
    return artifact_key(name, "report")


# ---- HTML pieces --------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value, sort_keys=True, default=str))
    return html.escape("" if value is None else str(value))


def _cell(value: Any, css: str = "") -> str:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    classes = " ".join(part for part in (css, "num" if number else "") if part)
    return f'<td class="{classes}">{_text(value)}</td>' if classes else f"<td>{_text(value)}</td>"


def table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    highlight: Callable[[Mapping[str, Any], str], bool] | None = None,
) -> str:
    """An HTML table of dict rows (columns default to every key in order of appearance)."""
    if not rows:
        return '<p class="note">none</p>'
    names = (
        list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    )
    head = "".join(f"<th>{html.escape(name)}</th>" for name in names)
    body = []
    for row in rows[:MAX_TABLE_ROWS]:
        cells = "".join(
            _cell(row.get(name), "best" if highlight and highlight(row, name) else "")
            for name in names
        )
        body.append(f"<tr>{cells}</tr>")
    more = len(rows) - MAX_TABLE_ROWS
    tail = f'<p class="note">... and {more} more rows</p>' if more > 0 else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{tail}"


def key_values(mapping: Mapping[str, Any]) -> str:
    """A two-column table of a flat mapping."""
    return table([{"field": name, "value": value} for name, value in mapping.items()])


def image(png: bytes, caption: str, wide: bool = False) -> str:
    """A PNG inlined as a data URI, with its caption; `wide` takes the full width of the page
    (two figures share a row otherwise)."""
    encoded = base64.b64encode(png).decode("ascii")
    css = ' class="wide"' if wide else ""
    return (
        f'<figure{css}><img src="data:image/png;base64,{encoded}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def section(title: str, *parts: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{''.join(parts)}</section>"


def page(title: str, parts: Iterable[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{''.join(parts)}</body></html>\n"
    )


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted names (`duration_s.mean`); lists stay values."""
    flat: dict[str, Any] = {}
    for name, value in document.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


class Links:
    """Paths from the report of one version to files in the same store."""

    def __init__(self, version: DatasetVersion) -> None:
        self._folder = posixpath.dirname(report_rel(version.name, version.version))

    def _relative(self, rel: str) -> str:
        return quote(posixpath.relpath(rel, self._folder))

    def object_file(self, key: str, path: str) -> str:
        return self._relative(f"{object_rel(key)}/{path}")

    def report_of(self, ref: str) -> str:
        name, _, number = ref.rpartition("@")
        return self._relative(report_rel(name, int(number)))

    def audio(self, key: str, path: str, label: str) -> str:
        source = self.object_file(key, path)
        return (
            f'<div class="player"><div>{html.escape(label)}</div><audio controls preload="none" '
            f'src="{source}"></audio></div>'
        )


# ---- parts shared by every kind of report -------------------------------------------------------


def overview(version: DatasetVersion) -> str:
    fields = {
        "version": version.ref,
        "stage": version.stage,
        "created": version.created_at,
        "items": len(version.items),
        "failures": len(version.failures),
        **{f"total {name}": value for name, value in version.totals.items()},
        "code version": version.lineage.code_version,
    }
    return section("Overview", key_values(fields))


def lineage_section(version: DatasetVersion, links: Links) -> str:
    lineage = version.lineage
    parents = "".join(
        f'<li><a href="{links.report_of(ref)}">{html.escape(ref)}</a></li>'
        for ref in lineage.parents
        if "@" in ref
    )
    parts = [
        f"<p>Parents (links to their reports):</p><ul>{parents}</ul>"
        if parents
        else '<p class="note">no parent versions</p>'
    ]
    if lineage.sources:
        rows = [
            flatten(source) if isinstance(source, Mapping) else {"source": source}
            for source in lineage.sources
        ]
        parts.append(f"<p>Sources ({len(rows)}):</p>{table(rows)}")
    if lineage.extra:
        parts.append(key_values({name: value for name, value in lineage.extra.items()}))
    return section("Lineage", *parts)


def failures_section(version: DatasetVersion) -> str:
    reasons = version.stats.get("failure_reasons") or {}
    counts = table(
        [{"reason": reason, "items": count} for reason, count in sorted(reasons.items())]
    )
    listed = table([failure.to_dict() for failure in version.failures])
    return section("Failures", "<p>By reason:</p>", counts, "<p>Items:</p>", listed)


def items_section(version: DatasetVersion) -> str:
    rows = [
        {"item": item.item_id, "key": item.key[:12], **flatten(item.stats)}
        for item in version.items
    ]
    return section("Items", table(rows))


def item_values(version: DatasetVersion, stat: str) -> list[Any]:
    return [item.stats[stat] for item in version.items if stat in item.stats]


def evenly_spaced(count: int, limit: int) -> list[int]:
    """Up to `limit` indices spread over range(count), deterministic (first and last included)."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


# ---- dataset versions (stage "normalize") -------------------------------------------------------


def onset_densities(store: ArtifactStore, version: DatasetVersion) -> list[float]:
    """Onset density (tasks.evaluate.metrics) in the first ONSET_SECONDS of up to MAX_AUDIO_ANALYSED items
    spread over the version: a bounded cost (~1 s) however large the version is."""
    from tasks.evaluate.metrics import onset_density
    from tasks.reports.spectrograms import mono_mix

    densities = []
    for index in evenly_spaced(len(version.items), MAX_AUDIO_ANALYSED):
        path = single_audio_file(store.local_path(version.items[index].key))
        opening, rate = read_audio_window(path, 0, round(ONSET_SECONDS * audio_info(path).sample_rate))
        densities.append(onset_density(mono_mix(opening), rate))
    return densities


def dataset_report(store: ArtifactStore, version: DatasetVersion) -> str:
    """Distributions of the items' statistics, sources, failures, players and lineage."""
    links = Links(version)
    figures = [
        image(
            plots.histogram_png(
                {"duration": item_values(version, "duration_s")}, "Item duration", "seconds"
            ),
            "duration histogram",
        ),
        image(
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
    for stat, title, unit in (
        ("gain_db", "Gain applied", "dB"),
        ("true_peak_after_dbtp", "True peak after normalization", "dBTP"),
        ("bandwidth_hz", "Bandwidth", "Hz"),
        ("note_density", "Note density (from the MIDI)", "notes per second"),
    ):
        values = item_values(version, stat)
        if values:
            figures.append(
                image(plots.histogram_png({stat: values}, title, unit), f"{stat} histogram")
            )
    if version.items:
        densities = onset_densities(store, version)
        figures.append(
            image(
                plots.histogram_png(
                    {"onsets": densities},
                    "Onset density (detected in the audio)",
                    "onsets per second",
                ),
                f"onset density histogram ({len(densities)} of {len(version.items)} items)",
            )
        )
    summary = {
        name: value
        for name, value in flatten(version.stats).items()
        if not name.startswith(("sources.", "failure_reasons."))
    }
    sources = version.stats.get("sources") or {}
    players = "".join(
        links.audio(
            version.items[index].key,
            single_audio_file(store.local_path(version.items[index].key)).name,
            version.items[index].item_id,
        )
        for index in evenly_spaced(len(version.items), MAX_PLAYERS)
    )
    return page(
        f"Dataset {version.ref}",
        [
            overview(version),
            section("Distributions", *figures),
            section("Statistics", key_values(summary)),
            section(
                "Per source",
                table([{"source": name, **flatten(row)} for name, row in sources.items()]),
            ),
            failures_section(version),
            section("Listen", players or '<p class="note">no items</p>'),
            lineage_section(version, links),
            section("Parameters", key_values(flatten(version.params))),
            items_section(version),
        ],
    )


# ---- latents versions (stage "encode") ----------------------------------------------------------


def latents_report(store: ArtifactStore, version: DatasetVersion) -> str:
    """Latent lengths, per-item mean and spread, and one item's latents as an image."""
    figures = [
        image(
            plots.histogram_png(
                {"frames": item_values(version, "latent_frames")},
                "Latent frames per item",
                "frames (92.9 ms each)",
            ),
            "latent frames histogram",
        ),
        image(
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
            image(
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
        {
            "item": item.item_id,
            **{
                name: item.stats.get(name)
                for name in ("latent_frames", "mean", "std", "duration_s")
            },
        }
        for item in version.items
    ]
    return page(
        f"Latents {version.ref}",
        [
            overview(version),
            section("Distributions", *figures),
            section("Per item", table(rows)),
            failures_section(version),
            lineage_section(version, Links(version)),
            section("Parameters", key_values(flatten(version.params))),
        ],
    )


# ---- model versions (stage "checkpoint") --------------------------------------------------------


def listening_gallery(
    folder: Path, key: str, files: Sequence[str], label: str, links: Links
) -> str:
    """Per audio file of an object (paths relative to `folder`): its mel image and a player."""
    from tasks.reports.spectrograms import mel_spectrogram_png

    clips = []
    for rel in files:
        audio, sample_rate = read_audio(folder / rel)
        mel = mel_spectrogram_png(audio, sample_rate, f"{label}: {rel}")
        clips.append(
            f'<div class="clip">{image(mel, f"{label} {rel}")}'
            f"{links.audio(key, rel, f'{label}: {rel}')}</div>"
        )
    return "".join(clips) or '<p class="note">no audio clips</p>'


def checkpoint_samples(folder: Path) -> list[str]:
    """The samples/sample-N.wav files of a checkpoint, in N order, at most MAX_CLIPS_PER_SUBJECT."""
    files = sorted(folder.glob(SAMPLES_GLOB), key=lambda path: (len(path.name), path.name))
    return [path.relative_to(folder).as_posix() for path in files[:MAX_CLIPS_PER_SUBJECT]]


def gan_training_parts(folder: Path, key: str, links: Links) -> list[str]:
    """Loss curves with the lr and events, the events table, the config, and the samples."""
    state = json.loads((folder / TRAINING_STATE_FILE).read_text())
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
    return [
        image(curves, "loss curves", wide=True),
        f"<p>Training state:</p>{key_values(progress)}",
        f"<p>Events (rollbacks after divergence, collapse warnings):</p>{table(events)}",
        f"<p>Per epoch:</p>{table(history)}",
        f"<p>Configuration:</p>{key_values(flatten(state.get('config') or {}))}",
        f"<p>Training lineage:</p>{key_values(flatten(state.get('lineage') or {}))}",
        "<p>Samples:</p>",
        listening_gallery(folder, key, checkpoint_samples(folder), "sample", links),
    ]


def autoencoder_training_parts(folder: Path) -> list[str]:
    """Loss curves of each training stage of the autoencoder, against the step."""
    history = json.loads((folder / AE_HISTORY_FILE).read_text())
    names = list(dict.fromkeys(name for entry in history for name in entry if name != "step"))
    parts = []
    for stage in dict.fromkeys(name.split("/", 1)[0] for name in names):
        stage_names = [name for name in names if name.split("/", 1)[0] == stage]
        rows = [entry for entry in history if any(name in entry for name in stage_names)]
        steps = [entry.get("step") for entry in rows]
        series = {name: (steps, [entry.get(name) for entry in rows]) for name in stage_names}
        parts.append(
            image(
                plots.line_chart_png(series, f"Autoencoder {stage} losses", "step", "loss"),
                f"autoencoder {stage} loss curves",
            )
        )
    return parts


def model_report(store: ArtifactStore, version: DatasetVersion) -> str:
    """Per network set: training curves and samples if trained here, else the network summary."""
    links = Links(version)
    parts = [overview(version)]
    for item in version.items:
        folder = store.local_path(item.key)
        described = item.stats or store.manifest(item.key).stats  # a referenced network set
        summary = f"<p>Network summary:</p>{key_values(flatten(described))}"
        if item.item_id == GAN_ITEM and (folder / TRAINING_STATE_FILE).is_file():
            parts.append(section("GAN training", *gan_training_parts(folder, item.key, links)))
        elif item.item_id == AUTOENCODER_ITEM and (folder / AE_HISTORY_FILE).is_file():
            parts.append(
                section("Autoencoder training", *autoencoder_training_parts(folder), summary)
            )
        else:
            parts.append(section(f"{item.item_id} (key {item.key[:12]})", summary))
    parts += [
        lineage_section(version, links),
        section("Parameters", key_values(flatten(version.params))),
    ]
    return page(f"Model {version.ref}", parts)


# ---- evaluation versions (stage "evaluate") -----------------------------------------------------


def _is_best(
    rows: Sequence[Mapping[str, Any]],
    reference: Mapping[str, Any] | None,
    metrics: Mapping[str, Mapping[str, Any]],
) -> Callable[[Mapping[str, Any], str], bool]:
    """Marks, per metric, the model row that does best by the metric's `better`."""
    best: dict[str, Any] = {}
    for name, definition in {**metrics, "frechet_distance": {"better": "lower"}}.items():
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


def evaluation_report(store: ArtifactStore, version: DatasetVersion) -> str:
    """Bars per metric across subjects with the reference, the table, flags, samples and the
    reconstruction error by segment length."""
    links = Links(version)
    metrics: Mapping[str, Mapping[str, Any]] = version.stats.get("metrics") or {}
    rows: list[Mapping[str, Any]] = version.stats.get("table") or []
    reference = next((row for row in rows if row.get("kind") == "reference"), None)
    models = [row for row in rows if row.get("kind") == "model"]
    bars = []
    for name, definition in {
        **metrics,
        "frechet_distance": {"label": "Frechet distance to the reference", "better": "lower"},
    }.items():
        if not any(name in row for row in models):
            continue
        unit = definition.get("unit") or ""
        label = definition.get("label") or name
        bars.append(
            image(
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
    columns = ["subject", "kind", *metrics, "frechet_distance"]
    legend = table([{"metric": name, **definition} for name, definition in metrics.items()])

    flags, clips, reconstruction = [], [], {}
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
        clips.append(f"<h3>{html.escape(subject)}</h3>")
        clips.append(listening_gallery(folder, item.key, players, subject, links))
        points = document.get("reconstruction") or []
        if points:
            reconstruction[subject] = (
                [p.get("seconds") for p in points],
                [p.get("lsd_db") for p in points],
            )
    parts = [
        overview(version),
        section("Metrics by subject", *bars, legend),
        section("Comparison", table(rows, columns, _is_best(rows, reference, metrics))),
        section("Flags", table(flags) if flags else '<p class="note">no flags</p>'),
        section("Samples", *clips),
    ]
    if reconstruction:
        parts.append(
            section(
                "Reconstruction error by segment length",
                image(
                    plots.line_chart_png(
                        reconstruction,
                        "Log-spectral distance of AE reconstructions",
                        "segment length (s)",
                        "LSD (dB)",
                    ),
                    "reconstruction error",
                    wide=True,
                ),
            )
        )
    parts += [
        lineage_section(version, links),
        section("Parameters", key_values(flatten(version.params))),
    ]
    return page(f"Evaluation {version.ref}", parts)


# ---- any other stage ----------------------------------------------------------------------------


def generic_report(store: ArtifactStore, version: DatasetVersion) -> str:
    """Statistics, items, failures and lineage of a version of a stage without its own report."""
    return page(
        f"{version.ref} ({version.stage})",
        [
            overview(version),
            section("Statistics", key_values(flatten(version.stats))),
            items_section(version),
            failures_section(version),
            lineage_section(version, Links(version)),
            section("Parameters", key_values(flatten(version.params))),
        ],
    )


def build_report(store: ArtifactStore, version: DatasetVersion) -> str:
    """The HTML report of `version`, chosen by its stage."""
    if version.stage == NORMALIZE_STAGE:
        return dataset_report(store, version)
    if version.stage == ENCODE_STAGE:
        return latents_report(store, version)
    if version.stage == EVALUATE_STAGE:
        return evaluation_report(store, version)
    if version.stage == CHECKPOINT_STAGE and any(
        item.item_id in (GAN_ITEM, AUTOENCODER_ITEM) for item in version.items
    ):
        return model_report(store, version)
    return generic_report(store, version)


def write_report(store: ArtifactStore, ref: str) -> str:
    """Build the report of `ref` and store it beside the version; returns its location (URI)."""
    version = store.resolve(ref)
    return store.write_report(version.name, version.version, build_report(store, version))


def copy_report(store: ArtifactStore, ref: str, output: Path) -> Path:
    """Copy the stored report of `ref` to `output`, with a <base> at its store folder so the audio
    players still find the store's files."""
    version = store.resolve(ref)
    folder = posixpath.dirname(store.report_uri(version.name, version.version)) + "/"
    stored = store.backend.read_bytes(report_rel(version.name, version.version)).decode()
    based = stored.replace("<head>", f'<head><base href="{html.escape(folder)}">', 1)
    partial = output.with_name(f".{output.name}.partial")
    partial.write_text(based)
    os.replace(partial, output)
    return output


def report_and_link(store: ArtifactStore, ref: str) -> str:
    """Write the report of `ref`, attach a link artifact `report-<name>` to the current run and
    log the location. Needs a Prefect run context (a flow or task run)."""
    version = store.resolve(ref)
    location = write_report(store, version.ref)
    create_link_artifact(
        key=report_artifact_key(version.name),
        link=location,
        link_text=f"report of {version.ref}",
        description=f"HTML report of **{version.ref}** (stage {version.stage})",
    )
    get_run_logger().info("report of %s at %s", version.ref, location)
    return location


def report_or_warn(store: ArtifactStore, ref: str) -> str | None:
    """`report_and_link`, except that a failure is logged as a warning (returning None): a report
    is a view of a version and must never fail the publish that made the version."""
    try:
        return report_and_link(store, ref)
    except Exception as error:  # noqa: BLE001 - whatever went wrong, the version stays published
        reason = f"{type(error).__name__}: {error}"
        get_run_logger().warning("no report written for %s: %s", ref, reason)
        return None


@task(name="publish-report")
def publish_report(store_root: str, ref: str) -> str:
    """Write the report of `ref` into the store and link it from a `report-<name>` artifact."""
    return report_and_link(ArtifactStore(store_root), ref)
