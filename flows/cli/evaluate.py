"""`musika-piano evaluate CHECKPOINT [CHECKPOINT...] --reference DATASET`: the evaluate flow.

Registered by `flows/cli/commands.py` through `add_parser`; `USER_ERRORS` are the errors it prints as
one line with exit code 2. The flow (Prefect, librosa, TensorFlow) is imported only when the
command runs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

from musika_model.checkpoints import CheckpointMismatchError
from tasks.pipeline.batching import StageFailed
from tasks.pipeline.models import NotAModelError

_COLUMNS = (
    ("kind", "kind", 9),
    ("loudness_lufs", "LUFS", 7),
    ("loudness_spread_lu", "spread", 6),
    ("silence_ratio", "silence", 7),
    ("beep_score", "beep", 5),
    ("tempo_ibi_cv", "ibi_cv", 6),
    ("onset_density", "onset/s", 7),
    ("bandwidth_hz", "rolloff", 7),
    ("reconstruction_lsd_db", "lsd_dB", 6),
    ("frechet_distance", "frechet", 9),
)


def _cell(value: Any, width: int) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, float):
        text = f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    else:
        text = str(value)
    return text[:width].rjust(width) if not isinstance(value, str) else text[:width].ljust(width)


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The comparison table as fixed-width text, one line per subject (as wide as the longest)."""
    columns = (("subject", "subject", max(len("subject"), *(len(str(row["subject"])) for row in rows))),
               *_COLUMNS)
    header = " ".join(label.ljust(width) if key in ("subject", "kind") else label.rjust(width)
                      for key, label, width in columns)
    lines = [header, "-" * len(header)]
    lines += [" ".join(_cell(row.get(key), width) for key, _, width in columns) for row in rows]
    return "\n".join(lines)


def _human(result: Mapping[str, Any]) -> str:
    state = "published" if result["created"] else "unchanged"
    computed = sum(status == "computed" for status in result["subjects"].values())
    lines = [f"{state} {result['ref']} ({computed} of {len(result['subjects'])} subjects computed)",
             comparison_table(result["stats"]["table"])]
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from flows.evaluate import EvaluateSettings, evaluate
    from flows.params import RunSettings

    settings = EvaluateSettings(samples=args.samples, seconds=args.seconds, seed=args.seed,
                                truncation=args.truncation, reference_items=args.reference_items,
                                segment_lengths=args.segment_lengths, base_channels=args.base_channels)
    result = evaluate(checkpoints=args.checkpoints, reference=args.reference, name=args.name,
                      settings=settings, run=RunSettings(store=args.store))
    print(json.dumps(result, indent=2, sort_keys=True, default=str) if args.json else _human(result))
    return 0


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register `evaluate` on the CLI's subcommands (`common` adds --json)."""
    command = commands.add_parser(
        "evaluate", parents=[common],
        help="measure checkpoints' samples (loudness, silence, beeps, tempo, onsets, Fréchet distance) "
             "next to their training data",
    )
    command.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="model refs: NAME or NAME@VERSION")
    command.add_argument("--reference", required=True, help="dataset the models learned from: NAME or NAME@VERSION")
    command.add_argument("--name", help="evaluation name (default eval-<reference name>)")
    command.add_argument("--samples", type=int, default=8, help="clips per checkpoint (1-64, default 8)")
    command.add_argument("--seconds", type=float, default=10.0, help="clip length in s (default 10)")
    command.add_argument("--seed", type=int, default=0, help="clip i uses seed + i (default 0)")
    command.add_argument("--truncation", type=float, default=2.0, help="latent truncation bound (default 2)")
    command.add_argument("--reference-items", type=int, default=16, help="reference items measured (default 16)")
    command.add_argument("--segment-lengths", type=float, nargs="+", default=[2.0, 5.0, 10.0], metavar="S",
                         help="crop lengths of the autoencoder round-trip error (default 2 5 10)")
    command.add_argument("--base-channels", type=int, help="refuse checkpoints of another base_channels")
    command.set_defaults(func=cmd_evaluate)


USER_ERRORS: tuple[type[Exception], ...] = (NotAModelError, CheckpointMismatchError, StageFailed)
"""Errors that mean "fix your input": one line, exit code 2 (StageFailed covers
`tasks.evaluate.stage.NoUsableReference`: a reference without readable items)."""
