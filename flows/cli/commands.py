"""`musika-piano`: the command line over the same flows the deployments run.

Flows run in this process against Prefect's ephemeral API, or against PREFECT_API_URL when it
is set. Heavy imports (Prefect, TensorFlow) happen inside the commands that need them, so
`--help` and the store commands start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from flows.cli import app as cli_app
from flows.cli import evaluate as cli_evaluate
from flows.cli import report as cli_report
from flows.params import AutoencoderTrainingSettings, TrainingSettings
from tasks.pipeline.batching import StageFailed
from tasks.pipeline.sources import SourceNotFound
from tasks.store import ArtifactStore, StoreError


def _print(args: argparse.Namespace, payload: Any, human: Callable[[Any], str]) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, sort_keys=True, default=str))
    else:
        print(human(payload))


def _store(args: argparse.Namespace) -> ArtifactStore:
    return ArtifactStore.open(args.store)


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
    return "\n".join(lines)


# ---- dataset commands -------------------------------------------------------------------------


def cmd_dataset_midi(args: argparse.Namespace) -> int:
    from flows.midi_dataset import build_midi_dataset
    from flows.params import LoudnessSettings, RenderSettings, RunSettings

    render_settings = RenderSettings(
        soundfonts=args.soundfont or [],
        transpose=args.transpose or [0],
        force_piano=args.force_piano,
        velocity_scale=args.velocity_scale,
    )
    loudness_settings = LoudnessSettings(
        target_lufs=args.lufs, peak_ceiling_dbfs=args.peak_ceiling, peak_policy=args.peak_policy
    )
    run = RunSettings(store=args.store, batch_size=args.batch_size, max_failure_ratio=args.max_failure_ratio,
                      retry_failed=args.retry_failed)
    result = build_midi_dataset(
        name=args.name, sources=args.sources, render_settings=render_settings,
        loudness_settings=loudness_settings, run=run,
    )
    _print(args, result, lambda r: (
        f"{'published' if r['created'] else 'unchanged'} {r['ref']}: {r['items']} items, "
        f"{r['failures']} failures\n  {r['uri']}"
    ))
    return 0


def _segment_quality_settings(args: argparse.Namespace) -> dict[str, Any]:
    from flows.params import LoudnessSettings, QualitySettings, RunSettings, SegmentSettings

    return {
        "segment_settings": SegmentSettings(min_segment_s=args.min_segment, max_segment_s=args.max_segment),
        "quality_settings": QualitySettings(min_bandwidth_hz=args.min_bandwidth, deduplicate=not args.keep_duplicates),
        "loudness_settings": LoudnessSettings(target_lufs=args.lufs, peak_ceiling_dbfs=args.peak_ceiling,
                                              peak_policy=args.peak_policy),
        "run": RunSettings(store=args.store, batch_size=args.batch_size, max_failure_ratio=args.max_failure_ratio,
                           retry_failed=args.retry_failed),
    }


def _human_segmented(result: dict) -> str:
    state = "published" if result["created"] else "unchanged"
    lines = [f"{state} {result['ref']}: {result['items']} segments, {result['failures']} dropped",
             f"  {result['uri']}"]
    lines += [f"  {stage}: " + ", ".join(f"{count} {status}" for status, count in counts.items())
              for stage, counts in result["stages"].items()]
    return "\n".join(lines)


def cmd_dataset_youtube(args: argparse.Namespace) -> int:
    from flows.params import CrawlSettings
    from flows.youtube_dataset import refresh_youtube_dataset

    crawl_settings = CrawlSettings(
        max_items=args.max_items, min_duration_s=args.min_duration, max_duration_s=args.max_duration,
        sleep_between_downloads_s=args.sleep, retries=args.retries, cookies_file=args.cookies, proxy=args.proxy,
    )
    result = refresh_youtube_dataset(name=args.name, sources=args.sources, crawl_settings=crawl_settings,
                                     **_segment_quality_settings(args))
    _print(args, result, _human_segmented)
    return 0


def cmd_dataset_audio(args: argparse.Namespace) -> int:
    from flows.audio_dataset import build_audio_dataset

    result = build_audio_dataset(name=args.name, sources=args.sources, **_segment_quality_settings(args))
    _print(args, result, _human_segmented)
    return 0


def cmd_dataset_ls(args: argparse.Namespace) -> int:
    summaries = [s.to_dict() for s in _store(args).list_datasets()]
    _print(args, summaries, lambda rows: "\n".join(
        f"{r['name']:<32} latest @{r['latest_version']:<4} versions {r['versions']:<4} tags {', '.join(r['tags']) or '-'}"
        for r in rows
    ) or "no datasets yet")
    return 0


def cmd_dataset_show(args: argparse.Namespace) -> int:
    shown = _store(args).show(args.ref)
    _print(args, shown.to_dict(), _human_version)
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


def cmd_dataset_diff(args: argparse.Namespace) -> int:
    diff = _store(args).diff(args.a, args.b)
    _print(args, diff.to_dict(), _human_diff)
    return 0


def cmd_dataset_export(args: argparse.Namespace) -> int:
    path = _store(args).export(args.ref, Path(args.dest))
    _print(args, {"ref": args.ref, "path": str(path)}, lambda r: f"exported {r['ref']} to {r['path']}")
    return 0


def cmd_dataset_tag(args: argparse.Namespace) -> int:
    store = _store(args)
    version = store.resolve(args.ref)
    store.tag(version.name, version.version, args.tag)
    _print(args, {"ref": version.ref, "tag": args.tag}, lambda r: f"tagged {r['ref']} as {r['tag']}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from flows.encode_dataset import encode_dataset
    from flows.params import RunSettings

    result = encode_dataset(dataset=args.dataset, autoencoder=args.autoencoder, name=args.name,
                            run=RunSettings(store=args.store, batch_size=args.batch_size))
    _print(args, result, lambda r: (
        f"{'published' if r['created'] else 'unchanged'} {r['ref']}: {r['items']} items, "
        f"{r['failures']} failures\n  {r['uri']}"
    ))
    return 0


# ---- training and generation -------------------------------------------------------------------


def _lr_phases(text: str) -> list[tuple[int, float]]:
    """argparse type of --lr-phases: EPOCHS@LR[,EPOCHS@LR...]."""
    phases = []
    for phase in text.split(","):
        epochs, _, lr = phase.partition("@")
        try:
            phases.append((int(epochs), float(lr)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{phase!r} is not EPOCHS@LR (e.g. 15@4e-5,135@1e-5)") from None
    return phases


_Settings = typing.TypeVar("_Settings", bound=BaseModel)


def settings_from_args(model: type[_Settings], args: argparse.Namespace) -> _Settings:
    """The settings model from its flags (`_add_settings_flags`); flags not given keep the defaults."""
    values = {name: getattr(args, name) for name in model.model_fields}
    return model(**{name: value for name, value in values.items() if value is not None})


def _setting_help(field: FieldInfo, default: Any) -> str:
    """The field's description (one text for the CLI and the deployment forms) with its default;
    a field whose default is None says in its description what that means."""
    text = (field.description or "").replace("%", "%%")
    if default is None:
        return text
    shown = ("on" if default else "off") if isinstance(default, bool) else default
    return f"{text.removesuffix('.')} (default: {shown})."


def _add_setting_flag(parser: argparse.ArgumentParser, model: type[BaseModel], name: str, default: Any = None,
                     parse: Callable[[str], Any] | None = None) -> None:
    """`--field-name` for one field of a settings model: `bool | None` as --x/--no-x, `bool` as --x,
    a Literal as choices, int/float/str as such; other types need `parse`. `default`: the flag's own
    default (the field's when None), shown in the help."""
    field = model.model_fields[name]
    annotation = field.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        annotation = kinds[0] if len(kinds) == 1 else annotation
    options: dict[str, Any] = {"default": default,
                               "help": _setting_help(field, field.default if default is None else default)}
    if annotation is bool:
        options["action"] = argparse.BooleanOptionalAction if field.default is None else "store_true"
    elif typing.get_origin(annotation) is Literal:
        options["choices"] = typing.get_args(annotation)
    elif parse is not None or annotation in (int, float, str):
        options["type"] = parse or annotation
        options["metavar"] = "N" if annotation is int else None
    else:
        raise TypeError(f"{model.__name__}.{name} ({field.annotation}) needs a parse function for its flag")
    parser.add_argument("--" + name.replace("_", "-"), **options)


def _add_settings_flags(parser: argparse.ArgumentParser, model: type[BaseModel], skip: Sequence[str] = (),
                       parse: dict[str, Callable[[str], Any]] | None = None) -> None:
    """A flag for every field of `model` but `skip` (`_add_setting_flag`)."""
    for name in model.model_fields:
        if name not in skip:
            _add_setting_flag(parser, model, name, parse=(parse or {}).get(name))


def _human_training(result: dict) -> str:
    state = "trained" if result["trained"] else "already trained, nothing recomputed"
    lines = [f"{result['ref']}: {state} (step {result['step']}, epoch {result['epoch']})",
             f"  model:      {result['uri']}", f"  checkpoint: {result['checkpoint']}",
             f"  run folder: {result['run_dir']} (TensorBoard: tensorboard --logdir {result['run_dir']})"]
    if result["published"]:
        lines.append(f"  versions published: {', '.join(result['published'])}")
    return "\n".join(lines)


def cmd_train_pretrain(args: argparse.Namespace) -> int:
    from flows.params import RunSettings
    from flows.train import checked_config, pretrain

    settings = settings_from_args(TrainingSettings, args)
    checked_config(settings)  # refuse a GPU preset without a GPU before Prefect starts
    result = pretrain(datasets=args.datasets, name=args.name, settings=settings, run=RunSettings(store=args.store))
    _print(args, result, _human_training)
    return 0


def cmd_train_finetune(args: argparse.Namespace) -> int:
    from flows.params import RunSettings
    from flows.train import checked_config, finetune, parent_networks

    settings = settings_from_args(TrainingSettings, args)
    checked_config(settings, parent_networks(_store(args), args.parent)[1])  # before Prefect starts
    result = finetune(parent=args.parent, datasets=args.datasets, name=args.name, replay=args.replay,
                      settings=settings, run=RunSettings(store=args.store))
    _print(args, result, _human_training)
    return 0


def cmd_train_autoencoder(args: argparse.Namespace) -> int:
    from flows.params import RunSettings
    from flows.train_autoencoder import train_autoencoder_flow

    result = train_autoencoder_flow(dataset=args.dataset, name=args.name,
                                    settings=settings_from_args(AutoencoderTrainingSettings, args),
                                    run=RunSettings(store=args.store))
    _print(args, result, lambda r: (
        f"{r['ref']}: {'trained' if r['trained'] else 'already trained, nothing recomputed'}\n  {r['uri']}"))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from flows.generate import generate_samples
    from flows.params import RunSettings

    result = generate_samples(model=args.model, seconds=args.seconds, count=args.count,
                              truncation=args.truncation, seed=args.seed, base_channels=args.base_channels,
                              name=args.name, output=args.output, run=RunSettings(store=args.store))
    _print(args, result, lambda r: "\n".join(
        [(f"{'published' if r['created'] else 'unchanged'} {r['ref']}: {r['items']} samples, "
          f"{r['failures']} failures"), f"  {r['uri']}"] + [f"  listen: {path}" for path in r["files"]]))
    return 0


# ---- store commands ---------------------------------------------------------------------------


def cmd_store_verify(args: argparse.Namespace) -> int:
    report = _store(args).verify()
    _print(args, report.to_dict(), lambda r: "\n".join(
        [(f"checked {r['objects_checked']} objects, {r['files_checked']} files, {r['bytes_hashed']:,} bytes, "
          f"{r['dataset_versions_checked']} dataset versions: {len(r['problems'])} problems")]
        + [f"  {p['kind']}: {p['subject']} {p['path'] or ''} {p['detail']}" for p in r["problems"]]
    ))
    return 0 if report.ok else 1


def cmd_store_gc(args: argparse.Namespace) -> int:
    report = _store(args).gc(dry_run=args.dry_run, min_age_seconds=args.min_age_seconds)
    _print(args, report.to_dict(), lambda r: (
        f"{'would delete' if r['dry_run'] else 'deleted'} {len(r['deleted_objects'])} objects "
        f"({r['bytes_freed']:,} bytes); kept {r['reachable_objects']} reachable and "
        f"{r['kept_young_objects']} younger than {r['min_age_seconds']:.0f} s; "
        f"removed {r['removed_incomplete']} incomplete objects and {r['removed_staging']} staging leftovers"
    ))
    return 0


# ---- demo and model ---------------------------------------------------------------------------


def cmd_import_musika(args: argparse.Namespace) -> int:
    from tasks.checkpoint_import.stage import import_official_checkpoint

    version = import_official_checkpoint(_store(args), Path(args.folder), args.name)
    payload = {**version.to_dict(), "ref": version.ref}
    _print(args, payload, lambda v: (
        f"{'published' if v['created'] else 'unchanged'} {v['ref']}: "
        + ", ".join(f"{item['item_id']} ({item['key'][:12]})" for item in v["items"])
    ))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import demo

    result = demo(store=args.store, autoencoder=args.autoencoder)
    _print(args, result, lambda r: "\n".join(r["summary"]))
    return 0


def _tensors(specs: list[dict]) -> str:
    return ", ".join(f"{spec['name']}[{','.join('B' if d is None else str(d) for d in spec['shape'])}]"
                     for spec in specs)


def cmd_model_info(args: argparse.Namespace) -> int:
    from musika_model.info import describe_networks

    info = describe_networks(base_channels=args.base_channels, small=args.small)
    _print(args, info, lambda i: "\n".join(
        f"{name:<10} {net['parameters']:>12,} params  {_tensors(net['inputs'])} -> {_tensors(net['outputs'])}"
        for name, net in i["networks"].items()
    ))
    return 0


_COMMAND_MODULES = (cli_evaluate, cli_report, cli_app)
"""Commands kept in their own modules: each has `add_parser(commands, common)` and `USER_ERRORS`."""

USER_ERRORS: tuple[type[Exception], ...] = (StoreError, SourceNotFound, StageFailed, ValidationError) + tuple(
    error for module in _COMMAND_MODULES for error in module.USER_ERRORS)
"""Errors that mean "fix your input": printed as one line, exit code 2, no traceback."""


_STAGE_ERRORS: dict[str, tuple[str, ...]] = {
    "tasks.render.core": ("RenderError",),
    "tasks.normalize.core": ("InvalidLoudnessParams",),
    "musika_model.official": ("OfficialWeightsError",),
    "tasks.download.core": ("InvalidCrawlParams", "InvalidSource"),
    "tasks.segment.core": ("InvalidSegmentParams",),
    "tasks.quality.core": ("InvalidQualityParams",),
    "tasks.pipeline.models": ("NotAModelError",),
    "tasks.train.gan": ("TrainingInputError",),
    "tasks.train.autoencoder": ("AutoencoderStageError", "AutoencoderDivergedError"),
    "tasks.generate.stage": ("InvalidGenerateRequest",),
    "musika_model.checkpoints": ("CheckpointError",),
    "musika_model.train_config": ("TrainConfigError",),
    "musika_model.training": ("TrainingDiverged",),
    "musika_model.training_data": ("TrainingDataError",),
    "musika_model.devices": ("DeviceUnavailableError",),
    "musika_model.audio": ("AudioError",),
}
"""Per heavy module, its "fix your input" errors (missing soundfont or libfluidsynth3, bad loudness
settings, unusable training data, unusable audio (`AudioError`; OS faults such as a full disk are
not input errors), ...)."""


def _stage_errors() -> tuple[type[Exception], ...]:
    """The `_STAGE_ERRORS` of the modules this command loaded (they are heavy, so not imported here)."""
    return tuple(getattr(sys.modules[module], name) for module, names in _STAGE_ERRORS.items()
                 if module in sys.modules for name in names)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musika-piano", description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=None,
                        help="artifact store root (path or fsspec URL; default $MUSIKA_PIANO_DATA or data/store)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    commands = parser.add_subparsers(dest="command", required=True)

    dataset = commands.add_parser("dataset", help="build, list, inspect and export datasets").add_subparsers(
        dest="dataset_command", required=True)
    published = argparse.ArgumentParser(add_help=False)
    published.add_argument("--name", required=True, help="dataset name (lowercase letters, digits, - _ .)")
    published.add_argument("--lufs", type=float, default=-20.0, help="target integrated loudness (default -20)")
    published.add_argument("--peak-ceiling", type=float, default=-1.0, help="true-peak ceiling in dBTP (default -1)")
    published.add_argument("--peak-policy", choices=["limit", "reject"], default="limit")
    published.add_argument("--batch-size", type=int, default=32)
    published.add_argument("--max-failure-ratio", type=float, default=0.5)
    published.add_argument("--retry-failed", action="store_true", help="retry items whose failure was recorded")

    midi = dataset.add_parser("midi", parents=[common, published], help="build a dataset from MIDI files")
    midi.add_argument("sources", nargs="+", help="MIDI files, folders or glob patterns")
    midi.add_argument("--soundfont", action="append", help=".sf2 path; repeat for several renderings per file")
    midi.add_argument("--transpose", action="append", type=int, help="semitones; repeat for several renderings")
    midi.add_argument("--force-piano", action="store_true", help="play every melodic track on the piano")
    midi.add_argument("--velocity-scale", type=float, default=1.0)
    midi.set_defaults(func=cmd_dataset_midi)

    segmented = argparse.ArgumentParser(add_help=False, parents=[published])
    segmented.add_argument("--min-segment", type=float, default=30.0, help="shortest segment in s (>= 23.8)")
    segmented.add_argument("--max-segment", type=float, default=120.0, help="longest segment in s")
    segmented.add_argument("--min-bandwidth", type=float, default=17000.0,
                           help="drop segments whose spectrum stops lower, in Hz (0 keeps band-limited audio)")
    segmented.add_argument("--keep-duplicates", action="store_true", help="keep audio repeated across recordings")

    youtube = dataset.add_parser("youtube", parents=[common, segmented],
                                 help="build or refresh a dataset from YouTube videos, playlists, channels, searches")
    youtube.add_argument("sources", nargs="+",
                         help="video/playlist/channel URLs, search queries (ytsearch10:...) or files listing them")
    youtube.add_argument("--max-items", type=int, help="at most this many videos per source")
    youtube.add_argument("--min-duration", type=float, default=30.0, help="skip shorter videos (s)")
    youtube.add_argument("--max-duration", type=float, default=4 * 3600.0, help="skip longer videos (s)")
    youtube.add_argument("--sleep", type=float, default=3.0, help="pause between downloads (s)")
    youtube.add_argument("--retries", type=int, default=3, help="retries after HTTP 429/403/5xx or timeouts")
    youtube.add_argument("--cookies", help="Netscape cookies.txt for sites that need a login")
    youtube.add_argument("--proxy", help="proxy URL, e.g. socks5://127.0.0.1:1080")
    youtube.set_defaults(func=cmd_dataset_youtube)

    audio = dataset.add_parser("audio", parents=[common, segmented],
                               help="build a dataset from recordings (wav/flac/mp3/ogg, any rate, mono or stereo)")
    audio.add_argument("sources", nargs="+", help="folders, files or glob patterns of recordings")
    audio.set_defaults(func=cmd_dataset_audio)

    dataset.add_parser("ls", parents=[common], help="list datasets").set_defaults(func=cmd_dataset_ls)
    show = dataset.add_parser("show", parents=[common], help="show a version with its lineage")
    show.add_argument("ref", help="NAME, NAME@VERSION, NAME@latest or NAME@TAG")
    show.set_defaults(func=cmd_dataset_show)
    diff = dataset.add_parser("diff", parents=[common], help="compare two versions")
    diff.add_argument("a")
    diff.add_argument("b")
    diff.set_defaults(func=cmd_dataset_diff)
    export = dataset.add_parser("export", parents=[common], help="copy a version out as a plain folder")
    export.add_argument("ref")
    export.add_argument("dest")
    export.set_defaults(func=cmd_dataset_export)
    tag = dataset.add_parser("tag", parents=[common], help="give a version a name")
    tag.add_argument("ref")
    tag.add_argument("tag")
    tag.set_defaults(func=cmd_dataset_tag)

    encode = commands.add_parser("encode", parents=[common],
                                 help="encode a normalized dataset version into a latents dataset version")
    encode.add_argument("dataset", help="dataset to encode: NAME, NAME@VERSION or NAME@TAG")
    encode.add_argument("--autoencoder", required=True,
                        help="model holding an autoencoder item (NAME or NAME@VERSION, e.g. from import-musika)")
    encode.add_argument("--name", help="latents dataset name (default <dataset name>-latents)")
    encode.add_argument("--batch-size", type=int, default=32)
    encode.set_defaults(func=cmd_encode)

    _add_training_commands(commands, common)
    for module in _COMMAND_MODULES:
        module.add_parser(commands, common)

    store = commands.add_parser("store", help="check and clean the artifact store").add_subparsers(
        dest="store_command", required=True)
    store.add_parser("verify", parents=[common], help="re-hash every file").set_defaults(func=cmd_store_verify)
    gc = store.add_parser("gc", parents=[common], help="delete objects no dataset version needs")
    gc.add_argument("--dry-run", action="store_true")
    gc.add_argument("--min-age-seconds", type=float, default=3600.0,
                    help="never delete objects younger than this (a running pipeline's fresh objects)")
    gc.set_defaults(func=cmd_store_gc)

    demo = commands.add_parser("demo", parents=[common], help="run the whole pipeline on the bundled demo MIDI")
    demo.add_argument("--autoencoder", help="encode with this stored model (e.g. imported official weights) "
                      "instead of training the demo's small autoencoder")
    demo.set_defaults(func=cmd_demo)

    imported = commands.add_parser("import-musika", parents=[common],
                                   help="import an official Musika weight folder (enc/dec/gen/critic .h5) into the store")
    imported.add_argument("folder")
    imported.add_argument("--name", help="model name in the store (default musika-<folder name>)")
    imported.set_defaults(func=cmd_import_musika)

    model = commands.add_parser("model", help="inspect the Musika networks").add_subparsers(
        dest="model_command", required=True)
    info = model.add_parser("info", parents=[common], help="parameter counts and shapes of every network")
    info.add_argument("--base-channels", type=int, default=128)
    info.add_argument("--small", action="store_true")
    info.set_defaults(func=cmd_model_info)
    return parser


def _add_training_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    train = commands.add_parser("train", help="train the autoencoder, pretrain or fine-tune the GAN").add_subparsers(
        dest="train_command", required=True)
    config = argparse.ArgumentParser(add_help=False)
    _add_settings_flags(config, TrainingSettings, skip=["preset"], parse={"lr_phases": _lr_phases})
    datasets_help = "latents datasets NAME[@V][:WEIGHT] (from musika-piano encode)"

    pre = train.add_parser("pretrain", parents=[common, config], help="train a GAN from scratch on latents")
    pre.add_argument("datasets", nargs="+", help=datasets_help)
    pre.add_argument("--name", required=True, help="model name")
    _add_setting_flag(pre, TrainingSettings, "preset", default="piano_pretrain")
    pre.set_defaults(func=cmd_train_pretrain)

    fine = train.add_parser("finetune", parents=[common, config], help="fine-tune a stored model on new latents")
    fine.add_argument("parent", help="model to start from: NAME or NAME@V (trained here or imported)")
    fine.add_argument("datasets", nargs="+", help=datasets_help)
    fine.add_argument("--name", help="model name (default <parent name>-ft)")
    fine.add_argument("--replay", type=float, default=0.0,
                      help="share of each batch drawn from the parent's own training data (0 to <1)")
    _add_setting_flag(fine, TrainingSettings, "preset", default="finetune_recordings")
    fine.set_defaults(func=cmd_train_finetune)

    autoencoder = train.add_parser("autoencoder", parents=[common],
                                   help="train a small autoencoder on a normalized dataset (no official weights)")
    autoencoder.add_argument("dataset", help="normalized dataset: NAME or NAME@V")
    autoencoder.add_argument("--name", help="model name (default <dataset name>-ae)")
    _add_settings_flags(autoencoder, AutoencoderTrainingSettings)
    autoencoder.set_defaults(func=cmd_train_autoencoder)

    generate = commands.add_parser("generate", parents=[common], help="generate samples with a stored model")
    generate.add_argument("model", help="NAME or NAME@V of a model with autoencoder and gan items")
    generate.add_argument("--seconds", type=float, default=30.0)
    generate.add_argument("--count", type=int, default=4)
    generate.add_argument("--truncation", type=float, default=2.0)
    generate.add_argument("--seed", type=int, default=0, help="sample i uses seed + i")
    generate.add_argument("--base-channels", type=int, help="refuse a checkpoint of another width")
    generate.add_argument("--name", help="samples dataset name (default <model name>-samples)")
    generate.add_argument("--output", help="also copy the WAV files into this folder")
    generate.set_defaults(func=cmd_generate)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS + _stage_errors() as error:
        print(f"musika-piano: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
