"""The command line's output carries none of TensorFlow's own log lines (absl's warning, oneDNN's
notice, the graph optimizer's remapper error); -v/--verbose shows them. Real commands in a
subprocess whose environment has no TF_CPP_MIN_LOG_LEVEL (the Makefile and tests/conftest.py set
one), as a user's shell has none."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.checkpoint_import.stage import import_official_checkpoint
from tasks.pipeline.models import resolve_model
from tasks.store import ArtifactStore
from tests.helpers import write_official_tiny_model

NOISE = {
    "absl": re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\)", re.MULTILINE),
    "oneDNN": re.compile(r"oneDNN custom operations are on"),
    "remapper": re.compile(r"remapper failed: INVALID_ARGUMENT"),
    "native log line": re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ", re.MULTILINE),
}
"""What TensorFlow's C++ code writes to stderr, by kind."""


def _musika_piano(*argv: str) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main())", *argv],
                          env=environment, capture_output=True, text=True, timeout=600, check=False)


def _noise(output: str) -> set[str]:
    return {kind for kind, pattern in NOISE.items() if pattern.search(output)}


def test_a_command_that_loads_tensorflow_prints_none_of_its_log_lines_unless_verbose():
    argv = ("model", "info", "--base-channels", "16", "--small")
    quiet = _musika_piano(*argv)
    assert quiet.returncode == 0 and "generator" in quiet.stdout
    assert quiet.stderr == ""
    verbose = _musika_piano(*argv, "-v")
    assert verbose.returncode == 0 and verbose.stdout == quiet.stdout
    assert {"absl", "native log line"} <= _noise(verbose.stderr), verbose.stderr


def _latents_store(root: Path) -> str:
    """A store with the tiny imported model `tiny` and `latents`, one item of random latents
    encoded by its autoencoder."""
    store = ArtifactStore(str(root / "store"))
    import_official_checkpoint(store, write_official_tiny_model(root / "official"), "tiny")
    autoencoder = resolve_model(store, "tiny").autoencoder_key
    with store.publish_object("encode", 1, {"test": "quiet output"}, [autoencoder]) as staged:
        np.save(staged.dir / "latents.npy", np.random.default_rng(0).normal(0.0, 0.02, (300, 128)).astype(np.float32))
    store.publish_dataset("latents", stage="encode", params={"autoencoder": autoencoder},
                          items=[{"item_id": "a", "key": staged.key}])
    return store.root


@pytest.mark.slow  # two training runs, ~40 s each on 2 cores
def test_a_training_run_prints_none_of_tensorflows_log_lines_unless_verbose(tmp_path):
    store = _latents_store(tmp_path)
    train = ("--store", store, "train", "pretrain", "latents", "--name", "gan", "--preset", "tiny")
    quiet = _musika_piano(*train)
    assert quiet.returncode == 0 and "gan@1: trained" in quiet.stdout, quiet.stderr
    assert _noise(quiet.stdout + quiet.stderr) == set(), quiet.stderr
    verbose = _musika_piano(*train, "--seed", "1", "--verbose")  # another run: one that trains again
    assert verbose.returncode == 0 and "gan@2: trained" in verbose.stdout, verbose.stderr
    assert _noise(verbose.stderr) == set(NOISE), verbose.stderr
