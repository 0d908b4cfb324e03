"""`musika-piano evaluate CHECKPOINT [CHECKPOINT...] --reference DATASET`: the evaluate flow.

The flow (Prefect, librosa, TensorFlow) is imported only when the command runs; its input errors
(a ref that is no model, a base_channels mismatch, a reference without readable items) are among
the stages' user errors (`flows.cli.commands.is_user_error`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from flows.cli import checks
from flows.cli.options import JsonFlag, StoreRoot, cli_model, emit, panel, params
from tasks.evaluate.params import EvaluateParams
from tasks.pipeline.params import RunSettings

EvaluateFlags = cli_model(EvaluateParams)
Evaluation = Annotated[EvaluateFlags, panel("Evaluation (EvaluateParams)", 1)]
DEFAULT_SETTINGS = EvaluateFlags()

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


def evaluate_command(checkpoints: list[str], /, *, reference: str, name: str | None = None,
                     settings: Evaluation = DEFAULT_SETTINGS,
                     store: StoreRoot = None, as_json: JsonFlag = False) -> int:
    """Measure checkpoints' samples (loudness, silence, beeps, tempo, onsets, Fréchet distance) next
    to their training data.

    Parameters
    ----------
    checkpoints
        Model refs: NAME or NAME@VERSION.
    reference
        Dataset the models learned from: NAME or NAME@VERSION.
    name
        Evaluation name (default `eval-<reference name>`).
    """
    checks.names(name)
    checks.datasets(store, [reference])  # in the flow's order
    checks.models(store, checkpoints)
    from flows.evaluate import evaluate

    result = evaluate(checkpoints=checkpoints, reference=reference, name=name, settings=params(settings),
                      run=RunSettings(store=store))
    emit(as_json, result, _human)
    return 0
