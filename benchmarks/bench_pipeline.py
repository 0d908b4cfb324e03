"""Wall time of the MIDI dataset flow over the demo MIDI: first run versus an unchanged re-run.

Measured as a user sees it, `musika-piano dataset midi` in a fresh process each time (so each
includes starting Prefect's ephemeral API), and in-process, where only the flow itself counts.
Uses a temporary PREFECT_HOME and store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEMO_MIDI = Path(__file__).resolve().parents[1] / "data" / "demo" / "midi"
CLI = Path(sys.executable).parent / "musika-piano"


def _cli_run(store: Path, env: dict[str, str]) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(
        [str(CLI), "--store", str(store), "dataset", "midi", str(DEMO_MIDI), "--name", "bench-cli", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )
    return time.perf_counter() - started, json.loads(done.stdout)


def run() -> dict[str, float]:
    scratch = Path(tempfile.mkdtemp(prefix="musika-bench-"))
    env = {**os.environ, "PREFECT_HOME": str(scratch / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}
    figures: dict[str, float] = {}
    for label in ("cli_first_run", "cli_unchanged_rerun"):
        seconds, result = _cli_run(scratch / "cli-store", env)
        figures[f"{label}_s"] = round(seconds, 2)
        figures[f"{label}_rendered_items"] = result["stages"]["render"]["computed"]

    os.environ.update(env)
    from flows.midi_dataset import build_midi_dataset
    from tasks.pipeline.params import RunSettings

    run_settings = RunSettings(store=str(scratch / "flow-store"))
    for label in ("flow_first_run", "flow_unchanged_rerun"):
        started = time.perf_counter()
        result = build_midi_dataset(name="bench", sources=[str(DEMO_MIDI)], run=run_settings)
        figures[f"{label}_s"] = round(time.perf_counter() - started, 2)
        figures[f"{label}_rendered_items"] = result["stages"]["render"]["computed"]
    return figures


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:40s} {value}")
