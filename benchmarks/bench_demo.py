"""Wall time of the whole demo (`musika-piano demo`) on a fresh store, then its unchanged re-run.

Each run is a fresh process with a fresh PREFECT_HOME, as a user runs it; the re-run must
compute nothing (the figures include what it computed, which should be zero).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = Path(sys.executable).parent / "musika-piano"


def _demo(scratch: Path, env: dict[str, str]) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run([str(CLI), "--store", str(scratch / "store"), "demo", "--json"],
                          env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, json.loads(done.stdout)


def run() -> dict[str, float]:
    scratch = Path(tempfile.mkdtemp(prefix="musika-bench-demo-"))
    env = {**os.environ, "PREFECT_HOME": str(scratch / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "TF_CPP_MIN_LOG_LEVEL": "2"}
    figures: dict[str, float] = {}
    try:
        for label in ("demo_first_run", "demo_unchanged_rerun"):
            seconds, result = _demo(scratch, env)
            figures[f"{label}_s"] = round(seconds, 1)
            models = result["models"].values()
            figures[f"{label}_models_trained"] = sum(bool(model["trained"]) for model in models)
            figures[f"{label}_samples_generated"] = result["samples"]["stages"]["generate"]["computed"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return figures


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:40s} {value}")
