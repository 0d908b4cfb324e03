"""`musika-piano`: the command line over the same flows the deployments run.

Built with cyclopts from the commands' type hints and docstrings; a stage's flags come from its
Params model (`flows.cli.options.cli_model`). Flows run in this process against Prefect's
ephemeral API, or against PREFECT_API_URL when it is set. Heavy imports (Prefect, TensorFlow,
numpy) happen inside the commands that need them, so `--help` and the store commands start fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import pydantic
from cyclopts import App, CycloptsError, Parameter
from pydantic import BeforeValidator

from flows.cli import checks
from flows.cli.app import PortInUse, serve_app
from flows.cli.evaluate import evaluate_command
from flows.cli.native_logs import hide_tensorflow_logs
from flows.cli.options import (
    JsonFlag,
    StoreRoot,
    Switch,
    VerboseFlag,
    cli_model,
    emit,
    lr_phases,
    panel,
    params,
)
from flows.cli.prefect_server import die_with_this_process
from flows.cli.report import ReportOutputError, report_command
from flows.cli.serve import ServeError, serve_command
from musika_model.train_config import PRESETS as GAN_PRESETS
from tasks.download.params import CrawlParams, InvalidCrawlParams
from tasks.generate.params import GenerateParams
from tasks.normalize.params import LoudnessParams
from tasks.pipeline.batching import EnvironmentFault, StageFailed
from tasks.pipeline.models import NotAModelError
from tasks.pipeline.params import RunSettings
from tasks.pipeline.sources import AUDIO_EXTENSIONS, MIDI_EXTENSIONS, SourceNotFound
from tasks.quality.params import QualityParams
from tasks.render.params import RenderParams
from tasks.segment.params import SegmentParams
from tasks.store import ArtifactStore, StoreError
from tasks.train.params import AutoencoderTrainingParams, GanTrainingParams

# ---- the stages' flags ------------------------------------------------------------------------
# Old flag spellings stay as aliases. A field name two models of one command share gets its
# stage's prefix in every command (tests/flows/cli/test_cli.py finds new clashes).

RenderFlags = cli_model(RenderParams, {"soundfonts": [Parameter(alias="--soundfont")]})
LoudnessFlags = cli_model(LoudnessParams, {
    "target_lufs": [Parameter(alias="--lufs")],
    "peak_ceiling_dbfs": [Parameter(alias="--peak-ceiling")],
    "min_duration_s": [Parameter(name="--loudness-min-duration-s")],
})
SegmentFlags = cli_model(SegmentParams, {
    "min_segment_s": [Parameter(alias="--min-segment")],
    "max_segment_s": [Parameter(alias="--max-segment")],
    "silence_rel_db": [Parameter(name="--segment-silence-rel-db")],
    "silence_floor_dbfs": [Parameter(name="--segment-silence-floor-dbfs")],
})
QualityFlags = cli_model(QualityParams, {
    "min_bandwidth_hz": [Parameter(alias="--min-bandwidth")],
    "deduplicate": [Parameter(negative_alias="--keep-duplicates")],
    "silence_rel_db": [Parameter(name="--quality-silence-rel-db")],
    "silence_floor_dbfs": [Parameter(name="--quality-silence-floor-dbfs")],
})
CrawlFlags = cli_model(CrawlParams, {
    "min_duration_s": [Parameter(alias="--min-duration")],
    "max_duration_s": [Parameter(alias="--max-duration")],
    "sleep_between_downloads_s": [Parameter(alias="--sleep")],
    "cookies_file": [Parameter(alias="--cookies")],
})
RunFlags = cli_model(RunSettings, {"store": [Parameter(parse=False)]})  # the global --store
_LR_PHASES = {"lr_phases": [Parameter(n_tokens=1, metavar="EPOCHS@LR,..."), BeforeValidator(lr_phases)]}


def _preset_flag(default: str, takes: str) -> dict[str, list[object]]:
    """--preset with its help saying how long the command's `default` preset trains (`takes`),
    its steps counted from the preset table."""
    config = GAN_PRESETS[default]()
    return {"preset": [Parameter(help=(
        f"{GanTrainingParams.model_fields['preset'].description} The default, {default}, runs "
        f"{config.epochs} epochs of {config.iterations_per_epoch:,} steps ({config.total_steps:,} steps): {takes}."))]}


PretrainFlags = cli_model(GanTrainingParams, {**_LR_PHASES, **_preset_flag("piano_pretrain", "days on a GPU")})
FinetuneFlags = cli_model(GanTrainingParams, {**_LR_PHASES, **_preset_flag("finetune_recordings", "meant for a GPU")},
                          preset="finetune_recordings")
AutoencoderFlags = cli_model(AutoencoderTrainingParams)
GenerateFlags = cli_model(GenerateParams)


Crawl = Annotated[CrawlFlags, panel("Crawl (CrawlParams)", 1)]
Render = Annotated[RenderFlags, panel("Rendering (RenderParams)", 1)]
Segment = Annotated[SegmentFlags, panel("Segmenting (SegmentParams)", 2)]
Quality = Annotated[QualityFlags, panel("Quality filters (QualityParams)", 3)]
Loudness = Annotated[LoudnessFlags, panel("Loudness (LoudnessParams)", 4)]
Run = Annotated[RunFlags, panel("Run (RunSettings)", 5)]
Pretrain = Annotated[PretrainFlags, panel("Training (GanTrainingParams)", 1)]
Finetune = Annotated[FinetuneFlags, panel("Training (GanTrainingParams)", 1)]
AutoencoderTraining = Annotated[AutoencoderFlags, panel("Training (AutoencoderTrainingParams)", 1)]
Request = Annotated[GenerateFlags, panel("Samples (GenerateParams)", 1)]

# The commands' defaults: every field at its (cli_model) default.
DEFAULT_RENDER = RenderFlags()
DEFAULT_LOUDNESS = LoudnessFlags()
DEFAULT_SEGMENT = SegmentFlags()
DEFAULT_QUALITY = QualityFlags()
DEFAULT_CRAWL = CrawlFlags()
DEFAULT_RUN = RunFlags()
DEFAULT_PRETRAIN = PretrainFlags()
DEFAULT_FINETUNE = FinetuneFlags()
DEFAULT_AUTOENCODER = AutoencoderFlags()
DEFAULT_GENERATE = GenerateFlags()

app = App(
    name="musika-piano",
    help="Turn piano sources (MIDI, YouTube, recordings) into Musika GAN models, through the Prefect flows "
    "the deployments run.",
    default_parameter=Parameter(negative_iterable=()),
    version_flags=(),
    result_action="return_value",
)
dataset = App(name="dataset", help="Build, list, inspect and export datasets.")
train = App(name="train", help="Train the autoencoder, pretrain or fine-tune the GAN.")
store_commands = App(name="store", help="Check and clean the artifact store.")
model_commands = App(name="model", help="Inspect the Musika networks.")
for group in (dataset, train, store_commands, model_commands):
    app.command(group)


def _human_version(version: dict) -> str:
    lines = [f"{version['name']}@{version['version']}  created {version['created_at']}  stage {version['stage']}"]
    tags = version.get("tags") or []
    if tags:
        lines.append(f"  tags: {', '.join(tags)}")
    lines.append(f"  items: {len(version['items'])}   failures: {len(version['failures'])}")
    for key, value in sorted(version.get("stats", {}).items()):
        lines.append(f"  {key}: {value}")
    parents = version.get("lineage", {}).get("parents") or []
    if parents:
        lines.append(f"  parents: {', '.join(parents)}")
    for failure in version["failures"][:20]:
        lines.append(f"  failed {failure['item_id']} [{failure['stage']}]: {failure['reason']}")
    lines += [f"  note: {note}" for note in version.get("notes") or []]
    return "\n".join(lines)


def _build_output(result: dict, verbose: bool) -> dict:
    """A dataset build's result as printed: the failed items one by one only with --verbose."""
    return result if verbose else {key: value for key, value in result.items() if key != "failed_items"}


def _failure_lines(result: dict) -> list[str]:
    """One line of reason counts per stage that lost items, each followed by its failed items
    when the result lists them (--verbose)."""
    lines = []
    for stage, reasons in result["failures_by_reason"].items():
        lines.append(f"  {stage} failures: " + ", ".join(f"{reason} {count}" for reason, count in reasons.items()))
        lines += [f"    {item['item_id']}: {item['reason']}: {item['message']}"
                  for item in result.get("failed_items", []) if item["stage"] == stage]
    return lines


def _human_published(result: dict) -> str:
    lines = [(f"{'published' if result['created'] else 'unchanged'} {result['ref']}: {result['items']} items, "
              f"{result['failures']} failures"), f"  {result['uri']}"]
    return "\n".join(lines + _failure_lines(result))


def _human_segmented(result: dict) -> str:
    state = "published" if result["created"] else "unchanged"
    lines = [f"{state} {result['ref']}: {result['items']} segments, {result['failures']} dropped",
             f"  {result['uri']}"]
    lines += [f"  {stage}: " + ", ".join(f"{count} {status}" for status, count in counts.items())
              for stage, counts in result["stages"].items()]
    return "\n".join(lines + _failure_lines(result))


# ---- dataset commands -------------------------------------------------------------------------


@dataset.command(name="midi")
def dataset_midi(sources: list[str], /, *, name: str, render: Render = DEFAULT_RENDER,
                 loudness: Loudness = DEFAULT_LOUDNESS, run: Run = DEFAULT_RUN, store: StoreRoot = None,
                 verbose: VerboseFlag = False, as_json: JsonFlag = False) -> int:
    """Build a dataset from MIDI files: render, normalize, publish a version.

    Parameters
    ----------
    sources
        MIDI files, folders or glob patterns.
    name
        Dataset name (lowercase letters, digits, - _ .).
    """
    checks.names(name)
    checks.local_sources(sources, MIDI_EXTENSIONS)
    checks.soundfonts(render.soundfonts)
    from flows.midi_dataset import build_midi_dataset

    result = build_midi_dataset(name=name, sources=sources, render_settings=params(render),
                                loudness_settings=params(loudness), run=params(run, store=store))
    emit(as_json, _build_output(result, verbose), _human_published)
    return 0


@dataset.command(name="youtube")
def dataset_youtube(sources: list[str], /, *, name: str, crawl: Crawl = DEFAULT_CRAWL,
                    segment: Segment = DEFAULT_SEGMENT, quality: Quality = DEFAULT_QUALITY,
                    loudness: Loudness = DEFAULT_LOUDNESS, run: Run = DEFAULT_RUN, store: StoreRoot = None,
                    verbose: VerboseFlag = False, as_json: JsonFlag = False) -> int:
    """Build or refresh a dataset from YouTube videos, playlists, channels or searches.

    Parameters
    ----------
    sources
        Video, playlist or channel URLs, search queries (ytsearch10:...) or files listing them.
    name
        Dataset name (lowercase letters, digits, - _ .).
    """
    checks.names(name)
    checks.youtube_sources(sources)
    from flows.youtube_dataset import refresh_youtube_dataset

    result = refresh_youtube_dataset(
        name=name, sources=sources, crawl_settings=params(crawl), segment_settings=params(segment),
        quality_settings=params(quality), loudness_settings=params(loudness), run=params(run, store=store),
    )
    emit(as_json, _build_output(result, verbose), _human_segmented)
    return 0


@dataset.command(name="audio")
def dataset_audio(sources: list[str], /, *, name: str, segment: Segment = DEFAULT_SEGMENT,
                  quality: Quality = DEFAULT_QUALITY, loudness: Loudness = DEFAULT_LOUDNESS, run: Run = DEFAULT_RUN,
                  store: StoreRoot = None, verbose: VerboseFlag = False, as_json: JsonFlag = False) -> int:
    """Build a dataset from recordings (wav/flac/mp3/ogg, any rate, mono or stereo).

    Parameters
    ----------
    sources
        Folders, files or glob patterns of recordings.
    name
        Dataset name (lowercase letters, digits, - _ .).
    """
    checks.names(name)
    checks.local_sources(sources, AUDIO_EXTENSIONS)
    from flows.audio_dataset import build_audio_dataset

    result = build_audio_dataset(name=name, sources=sources, segment_settings=params(segment),
                                 quality_settings=params(quality), loudness_settings=params(loudness),
                                 run=params(run, store=store))
    emit(as_json, _build_output(result, verbose), _human_segmented)
    return 0


@dataset.command(name="ls")
def dataset_ls(*, store: StoreRoot = None, as_json: JsonFlag = False) -> int:
    """List datasets."""
    summaries = [summary.to_dict() for summary in ArtifactStore.open(store).list_datasets()]
    emit(as_json, summaries, lambda rows: "\n".join(
        f"{r['name']:<32} latest @{r['latest_version']:<4} versions {r['versions']:<4} tags {', '.join(r['tags']) or '-'}"
        + "".join(f"\n  ! {problem}" for problem in r["problems"])
        for r in rows
    ) or "no datasets yet")
    return 0


@dataset.command(name="show")
def dataset_show(ref: str, /, *, store: StoreRoot = None, as_json: JsonFlag = False) -> int:
    """Show a version with its lineage.

    Parameters
    ----------
    ref
        NAME, NAME@VERSION, NAME@latest or NAME@TAG.
    """
    emit(as_json, ArtifactStore.open(store).show(ref).to_dict(), _human_version)
    return 0


def _human_diff(diff: dict) -> str:
    counts = diff["counts"]
    lines = [(f"{diff['a']} -> {diff['b']}: {counts['added']} added, {counts['removed']} removed, "
              f"{counts['changed']} changed, {counts['unchanged']} unchanged")]
    lines += [f"  + {item_id}" for item_id in diff["added"]]
    lines += [f"  - {item_id}" for item_id in diff["removed"]]
    lines += [f"  ~ {change['item_id']}" for change in diff["changed"]]
    lines += [f"  param {change['path']}: {change['a']} -> {change['b']}" for change in diff["params_changes"]]
    lines += [f"  stat {change['path']}: {change['a']} -> {change['b']}" for change in diff["stats_deltas"]]
    return "\n".join(lines)


@dataset.command(name="diff")
def dataset_diff(a: str, b: str, /, *, store: StoreRoot = None, as_json: JsonFlag = False) -> int:
    """Compare two versions: items added, removed and changed, parameter and stat changes.

    Parameters
    ----------
    a
        The version compared from: NAME@VERSION or NAME@TAG.
    b
        The version compared to: NAME@VERSION or NAME@TAG.
    """
    emit(as_json, ArtifactStore.open(store).diff(a, b).to_dict(), _human_diff)
    return 0


@dataset.command(name="export")
def dataset_export(ref: str, dest: Path, /, *, store: StoreRoot = None, as_json: JsonFlag = False) -> int:
    """Copy a version out as a plain folder.

    Parameters
    ----------
    ref
        NAME, NAME@VERSION, NAME@latest or NAME@TAG.
    dest
        Folder to create (its items' files and a dataset.json).
    """
    path = ArtifactStore.open(store).export(ref, dest)
    emit(as_json, {"ref": ref, "path": str(path)}, lambda r: f"exported {r['ref']} to {r['path']}")
    return 0


@dataset.command(name="tag")
def dataset_tag(ref: str, tag: str, /, *, store: StoreRoot = None, as_json: JsonFlag = False) -> int:
    """Give a version a name.

    Parameters
    ----------
    ref
        NAME, NAME@VERSION, NAME@latest or NAME@TAG.
    tag
        The new tag (NAME@TAG resolves to this version from then on).
    """
    opened = ArtifactStore.open(store)
    version = opened.resolve(ref)
    opened.tag(version.name, version.version, tag)
    emit(as_json, {"ref": version.ref, "tag": tag}, lambda r: f"tagged {r['ref']} as {r['tag']}")
    return 0


@app.command(name="encode")
def encode(dataset: str, /, *, autoencoder: str, name: str | None = None, run: Run = DEFAULT_RUN,
           store: StoreRoot = None, verbose: VerboseFlag = False, as_json: JsonFlag = False) -> int:
    """Encode a normalized dataset version into a latents dataset version.

    Parameters
    ----------
    dataset
        Dataset to encode: NAME, NAME@VERSION or NAME@TAG.
    autoencoder
        Model holding an autoencoder item (NAME or NAME@VERSION, e.g. from import-musika).
    name
        Latents dataset name (default `<dataset name>-latents`).
    """
    checks.names(name)
    checks.datasets(store, [dataset])
    checks.models(store, [autoencoder])
    from flows.encode_dataset import encode_dataset

    result = encode_dataset(dataset=dataset, autoencoder=autoencoder, name=name, run=params(run, store=store))
    emit(as_json, _build_output(result, verbose), _human_published)
    return 0


# ---- training and generation -------------------------------------------------------------------


def _human_training(result: dict) -> str:
    state = "trained" if result["trained"] else "already trained, nothing recomputed"
    lines = [f"{result['ref']}: {state} (step {result['step']}, epoch {result['epoch']})",
             f"  model:      {result['uri']}", f"  checkpoint: {result['checkpoint']}",
             f"  run folder: {result['run_dir']} (TensorBoard: tensorboard --logdir {result['run_dir']})"]
    if result["published"]:
        lines.append(f"  versions published: {', '.join(result['published'])}")
    return "\n".join(lines)


@train.command(name="pretrain")
def train_pretrain(datasets: list[str], /, *, name: str, settings: Pretrain = DEFAULT_PRETRAIN,
                   store: StoreRoot = None, as_json: JsonFlag = False) -> int:
    """Train a GAN from scratch on latents.

    The default preset, piano_pretrain, trains for days on a GPU; without one it is refused
    (saying how long this CPU would take) unless --allow-cpu. --preset tiny trains for seconds
    on a CPU.

    Parameters
    ----------
    datasets
        Latents datasets NAME[@V][:WEIGHT] (from musika-piano encode).
    name
        Model name.
    """
    checks.names(name)
    chosen = params(settings)
    checks.training_settings(chosen)  # a GPU preset without a GPU is refused first
    checks.datasets(store, [checks.weighted_ref(ref) for ref in datasets])
    from flows.train import pretrain
    result = pretrain(datasets=datasets, name=name, settings=chosen, run=RunSettings(store=store))
    emit(as_json, result, _human_training)
    return 0


@train.command(name="finetune")
def train_finetune(parent: str, datasets: list[str], /, *, name: str | None = None, replay: float = 0.0,
                   settings: Finetune = DEFAULT_FINETUNE, store: StoreRoot = None,
                   as_json: JsonFlag = False) -> int:
    """Fine-tune a stored model on new latents.

    The default preset, finetune_recordings (100 epochs), is meant for a GPU; without one it is
    refused unless --allow-cpu.

    Parameters
    ----------
    parent
        Model to start from: NAME or NAME@V (trained here or imported).
    datasets
        Latents datasets NAME[@V][:WEIGHT] (from musika-piano encode).
    name
        Model name (default `<parent name>-ft`).
    replay
        Share of each batch drawn from the parent's own training data (0 to <1).
    """
    checks.names(name)
    checks.models(store, [parent])
    checks.datasets(store, [checks.weighted_ref(ref) for ref in datasets])
    chosen = params(settings)
    checks.training_settings(chosen, store, parent)
    from flows.train import finetune
    result = finetune(parent=parent, datasets=datasets, name=name, replay=replay, settings=chosen,
                      run=RunSettings(store=store))
    emit(as_json, result, _human_training)
    return 0


@train.command(name="autoencoder")
def train_autoencoder(dataset: str, /, *, name: str | None = None,
                      settings: AutoencoderTraining = DEFAULT_AUTOENCODER, store: StoreRoot = None,
                      as_json: JsonFlag = False) -> int:
    """Train a small autoencoder on a normalized dataset (no official weights needed).

    Parameters
    ----------
    dataset
        Normalized dataset: NAME or NAME@V.
    name
        Model name (default `<dataset name>-ae`).
    """
    from flows.train_autoencoder import train_autoencoder_flow

    result = train_autoencoder_flow(dataset=dataset, name=name, settings=params(settings),
                                    run=RunSettings(store=store))
    emit(as_json, result, lambda r: (
        f"{r['ref']}: {'trained' if r['trained'] else 'already trained, nothing recomputed'}\n  {r['uri']}"))
    return 0


@app.command(name="generate")
def generate(model: str, /, *, request: Request = DEFAULT_GENERATE, name: str | None = None,
             output: str | None = None, store: StoreRoot = None, as_json: JsonFlag = False) -> int:
    """Generate samples with a stored model.

    Parameters
    ----------
    model
        NAME or NAME@V of a model with autoencoder and gan items.
    name
        Samples dataset name (default `<model name>-samples`).
    output
        Also copy the WAV files into this folder.
    """
    checks.names(name)
    checks.models(store, [model])
    from flows.generate import generate_samples

    result = generate_samples(model=model, **params(request).model_dump(), name=name, output=output,
                              run=RunSettings(store=store))
    emit(as_json, result, lambda r: "\n".join(
        [(f"{'published' if r['created'] else 'unchanged'} {r['ref']}: {r['items']} samples, "
          f"{r['failures']} failures"), f"  {r['uri']}"] + [f"  listen: {path}" for path in r["files"]]))
    return 0


app.command(evaluate_command, name="evaluate")
app.command(report_command, name="report")
app.command(serve_app, name="app")
app.command(serve_command, name="serve")


# ---- store commands ---------------------------------------------------------------------------


@store_commands.command(name="verify")
def store_verify(*, repair: Switch = False, store: StoreRoot = None, as_json: JsonFlag = False) -> int:
    """Re-hash every file and check every object's inputs; exit code 1 when there are problems.

    Parameters
    ----------
    repair
        Move damaged objects, stray files and unreadable version files to `<store>/quarantine/`
        (nothing is deleted); a re-run of the builds that made them makes them again.
    """
    report = ArtifactStore.open(store).verify(repair=repair)
    emit(as_json, report.to_dict(), _human_verify)
    return 0 if report.ok else 1


def _human_verify(report: dict) -> str:
    lines = [(f"checked {report['objects_checked']} objects, {report['files_checked']} files, "
              f"{report['bytes_hashed']:,} bytes, {report['dataset_versions_checked']} dataset versions: "
              f"{len(report['problems'])} problems")]
    for problem in report["problems"]:
        lines.append(f"  {problem['kind']}: {problem['subject']} {problem['path'] or ''} {problem['detail']}")
        if problem["fix"]:
            lines.append(f"      fix: {problem['fix']}")
    for repair in report["repairs"]:
        needed_by = f"; needed by {', '.join(repair['referenced_by'])}" if repair["referenced_by"] else ""
        lines.append(f"  moved {repair['kind']} {repair['subject']} to {repair['moved_to']}{needed_by}")
    lines += [f"next: {step}" for step in report["next_steps"]]
    return "\n".join(lines)


@store_commands.command(name="gc")
def store_gc(*, dry_run: Switch = False, min_age_seconds: float = 3600.0, store: StoreRoot = None,
             as_json: JsonFlag = False) -> int:
    """Delete objects no dataset version needs.

    Parameters
    ----------
    dry_run
        List what would be deleted, delete nothing.
    min_age_seconds
        Never delete objects younger than this (a running pipeline's fresh objects).
    """
    report = ArtifactStore.open(store).gc(dry_run=dry_run, min_age_seconds=min_age_seconds)
    emit(as_json, report.to_dict(), lambda r: (
        f"{'would delete' if r['dry_run'] else 'deleted'} {len(r['deleted_objects'])} objects "
        f"({r['bytes_freed']:,} bytes); kept {r['reachable_objects']} reachable and "
        f"{r['kept_young_objects']} younger than {r['min_age_seconds']:.0f} s; "
        f"removed {r['removed_incomplete']} incomplete objects and {r['removed_staging']} staging leftovers"
    ))
    return 0


# ---- demo and model ---------------------------------------------------------------------------


@app.command(name="import-musika")
def import_musika(folder: Path, /, *, name: str | None = None, store: StoreRoot = None,
                  as_json: JsonFlag = False) -> int:
    """Import an official Musika weight folder (enc/dec/gen/critic .h5) into the store.

    Parameters
    ----------
    folder
        The folder of official .h5 weights.
    name
        Model name in the store (default `musika-<folder name>`).
    """
    from tasks.checkpoint_import.stage import import_official_checkpoint

    version = import_official_checkpoint(ArtifactStore.open(store), folder, name)
    payload = {**version.to_dict(), "ref": version.ref}
    emit(as_json, payload, lambda v: (
        f"{'published' if v['created'] else 'unchanged'} {v['ref']}: "
        + ", ".join(f"{item['item_id']} ({item['key'][:12]})" for item in v["items"])
    ))
    return 0


@app.command(name="demo")
def demo(*, autoencoder: str | None = None, store: StoreRoot = None, as_json: JsonFlag = False) -> int:
    """Run the whole pipeline on the bundled demo MIDI.

    Parameters
    ----------
    autoencoder
        Encode with this stored model (e.g. imported official weights) instead of training the
        demo's small autoencoder.
    """
    from flows.demo import demo as demo_flow

    result = demo_flow(store=store, autoencoder=autoencoder)
    emit(as_json, result, lambda r: "\n".join(r["summary"]))
    return 0


def _tensors(specs: list[dict]) -> str:
    return ", ".join(f"{spec['name']}[{','.join('B' if d is None else str(d) for d in spec['shape'])}]"
                     for spec in specs)


@model_commands.command(name="info")
def model_info(*, base_channels: int = 128, small: Switch = False, as_json: JsonFlag = False) -> int:
    """Parameter counts and shapes of every network.

    Parameters
    ----------
    base_channels
        Network width.
    small
        128-frame windows instead of 256.
    """
    from musika_model.info import describe_networks

    info = describe_networks(base_channels=base_channels, small=small)
    emit(as_json, info, lambda i: "\n".join(
        f"{name:<10} {net['parameters']:>12,} params  {_tensors(net['inputs'])} -> {_tensors(net['outputs'])}"
        for name, net in i["networks"].items()
    ))
    return 0


# ---- the launcher and errors --------------------------------------------------------------------


@app.meta.default
def _launch(*tokens: Annotated[str, Parameter(show=False, allow_leading_hyphen=True)],
            store: str | None = None,
            verbose: Annotated[bool, Parameter(name=("--verbose", "-v"), negative=(), show_default=False)] = False,
            ) -> int:
    """Run the command in `tokens` with the global options.

    Parameters
    ----------
    store
        Artifact store root (path or fsspec URL); default $MUSIKA_PIANO_DATA or data/store.
    verbose
        Show TensorFlow's own log lines (oneDNN, absl, graph optimizer errors), hidden otherwise;
        dataset builds and encode also list every failed item: id, stage, reason and message.
    """
    command, bound, ignored = app.parse_args(tokens, exit_on_error=False, print_error=False)
    if not verbose:
        hide_tensorflow_logs()
    given = {"store": store, "verbose": verbose}
    return command(*bound.args, **bound.kwargs, **{name: value for name, value in given.items() if name in ignored})


_USER_ERRORS: tuple[type[Exception], ...] = (
    StoreError, SourceNotFound, NotAModelError, checks.InputCheckFailed, PortInUse, StageFailed,
    pydantic.ValidationError, ReportOutputError, InvalidCrawlParams, ServeError)
"""Errors that mean "fix your input": one line on stderr, exit code 2, no traceback."""

def is_user_error(error: Exception) -> bool:
    """Whether `error` means "fix your input": one of `_USER_ERRORS`, a stage's (the stage
    registry: a missing soundfont, unusable training data or audio, a bad checkpoint; OS faults
    such as a full disk are not among them) or the listening app's. The registry imports every
    stage module, so it is asked only once an error is on its way out."""
    if isinstance(error, _USER_ERRORS):
        return True
    from tasks.pipeline.registry import user_errors

    listening = sys.modules.get("flows.app.listening")
    app_errors = listening.user_errors() if listening is not None else ()
    return isinstance(error, user_errors() + tuple(app_errors))


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _validation_message(error: pydantic.ValidationError, flags: Mapping[str, str]) -> str:
    """pydantic's problems in one line, each field named by its flag (`flags`: field -> flag)."""
    problems = []
    for problem in error.errors():
        message = problem["msg"].removeprefix("Value error, ")
        field = str(problem["loc"][0]) if problem["loc"] else None
        if field is None:
            problems.append(message)
        else:
            problems.append(f"{flags.get(field, field)}: {message} (got {problem['input']!r})")
    return "; ".join(problems)


def _parse_error_message(error: CycloptsError) -> str:
    """A bad command line in one line: cyclopts' message, or pydantic's when a model refused
    the flags' values."""
    if isinstance(error.__cause__, pydantic.ValidationError):
        flags = {child.keys[-1]: child.name for child in error.argument.children} if error.argument else {}
        return _validation_message(error.__cause__, flags)
    error.verbose = False
    return _one_line(str(error))


def _silence_closed_stdout() -> int:
    """The reader of stdout went away (`... | head`): send what is left to /dev/null, so the exit
    does not report the pipe once more; exit code 1, as Python's own and rich's (--help) handling."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command: exit code 0; 1 when a check found problems (store verify) or stdout was
    closed early; 2 for a bad command line or input; 3 when the machine stopped a stage (a full
    disk, a read-only store: `EnvironmentFault`). Errors are one line `musika-piano: ...` on stderr."""
    die_with_this_process()  # the temporary Prefect server, if one starts, ends with this process
    tokens = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app.meta(tokens, exit_on_error=False, print_error=False)
        sys.stdout.flush()  # a closed pipe shows here rather than at interpreter exit
    except BrokenPipeError:
        return _silence_closed_stdout()
    except CycloptsError as error:
        print(f"musika-piano: {_parse_error_message(error)}", file=sys.stderr)
        return 2
    except EnvironmentFault as fault:  # the machine, not the input: a full disk, a read-only store
        print(f"musika-piano: {_one_line(str(fault))}", file=sys.stderr)
        return 3
    except Exception as error:
        if not is_user_error(error):
            raise
        message = (_validation_message(error, {}) if isinstance(error, pydantic.ValidationError)
                   else _one_line(str(error)))
        print(f"musika-piano: {message}", file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
