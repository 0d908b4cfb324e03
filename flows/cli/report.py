"""`musika-piano report REF [--output PATH]`: write the HTML report of a version on demand."""

from __future__ import annotations

import json
from pathlib import Path

from flows.cli.options import JsonFlag, StoreRoot
from tasks.store import ArtifactStore


class ReportOutputError(ValueError):
    """An --output path the report cannot be copied to."""


def _checked_output(path: Path) -> Path:
    output = path.expanduser()
    if output.is_dir():
        raise ReportOutputError(f"--output {output} is a folder; name a file (report.html)")
    if not output.parent.is_dir():
        raise ReportOutputError(f"--output {output}: folder {output.parent} does not exist")
    return output


def report_command(ref: str, /, *, output: Path | None = None, store: StoreRoot = None,
                   as_json: JsonFlag = False) -> int:
    """Write the HTML report (plots, tables, audio) of a dataset, model or evaluation.

    Parameters
    ----------
    ref
        NAME, NAME@VERSION, NAME@latest or NAME@TAG.
    output
        Also copy the report to this file (its audio still plays from the store).
    """
    checked = _checked_output(output) if output is not None else None
    opened = ArtifactStore.open(store)
    opened.resolve(ref)  # a ref that names nothing is refused before the report module loads Prefect
    from tasks.reports.report import copy_report, write_report

    location = write_report(opened, ref)
    copied = copy_report(opened, ref, checked) if checked is not None else None
    if as_json:
        print(json.dumps({"ref": ref, "report": location, "output": None if copied is None else str(copied)}))
    else:
        print(location)
        if copied is not None:
            print(f"copied to {copied}")
    return 0
