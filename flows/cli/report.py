"""`musika-piano report REF [--output PATH]`: write the HTML report of a version on demand.

Registered by `flows/cli/commands.py` through `add_parser`; `USER_ERRORS` are the errors it prints as
one line with exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tasks.store import ArtifactStore, StoreError


class ReportOutputError(ValueError):
    """An --output path the report cannot be copied to."""


def _checked_output(path: str) -> Path:
    output = Path(path).expanduser()
    if output.is_dir():
        raise ReportOutputError(f"--output {output} is a folder; name a file (report.html)")
    if not output.parent.is_dir():
        raise ReportOutputError(f"--output {output}: folder {output.parent} does not exist")
    return output


def cmd_report(args: argparse.Namespace) -> int:
    from tasks.reports.report import copy_report, write_report

    output = _checked_output(args.output) if args.output else None
    store = ArtifactStore.open(args.store)
    location = write_report(store, args.ref)
    copied = copy_report(store, args.ref, output) if output is not None else None
    if args.json:
        print(json.dumps({"ref": args.ref, "report": location,
                          "output": None if copied is None else str(copied)}))
    else:
        print(location)
        if copied is not None:
            print(f"copied to {copied}")
    return 0


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register `report` on the CLI's subcommands (`common` adds --json)."""
    report = commands.add_parser(
        "report", parents=[common],
        help="write the HTML report (plots, tables, audio) of a dataset, model or evaluation",
    )
    report.add_argument("ref", help="NAME, NAME@VERSION, NAME@latest or NAME@TAG")
    report.add_argument("--output", help="also copy the report to this file (its audio still "
                                         "plays from the store)")
    report.set_defaults(func=cmd_report)


USER_ERRORS: tuple[type[Exception], ...] = (StoreError, ReportOutputError)
"""Errors that mean "fix your input": one line, exit code 2."""
