"""Wall time of the MIDI dataset flow: first run versus an unchanged re-run (which recomputes nothing).

Runs on Prefect's ephemeral API in a temporary PREFECT_HOME, with a temporary store, over the demo MIDI.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

DEMO_MIDI = Path(__file__).resolve().parents[1] / "data" / "demo" / "midi"


def run() -> dict[str, float]:
    scratch = Path(tempfile.mkdtemp(prefix="musika-bench-"))
    os.environ["PREFECT_HOME"] = str(scratch / "prefect-home")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    from flows.midi_dataset import build_midi_dataset
    from flows.params import RunSettings

    run_settings = RunSettings(store=str(scratch / "store"))
    figures: dict[str, float] = {}
    for label in ("first_run_s", "unchanged_rerun_s"):
        started = time.perf_counter()
        result = build_midi_dataset(name="bench", sources=[str(DEMO_MIDI)], run=run_settings)
        figures[label] = round(time.perf_counter() - started, 2)
        figures[f"{label.removesuffix('_s')}_computed_items"] = result["stages"]["render"]["computed"]
    return figures


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:40s} {value}")
