"""TensorFlow's own log lines kept out of the command line's output (unless -v/--verbose).

TensorFlow's C++ code writes them straight to file descriptor 2, past Python's sys.stderr.
Measured on TensorFlow 2.21 (x86 CPU):

- TF_CPP_MIN_LOG_LEVEL=3 hides what is logged once TensorFlow is loaded, errors included
  (`E0000 ... meta_optimizer.cc:...] remapper failed: INVALID_ARGUMENT: ...` at a training
  run's first step, the CUDA driver's); 2 still lets those error lines through.
- It does not hide what the libraries log while they load, before absl's logging is set up:
  `WARNING: All log messages before absl::InitializeLog() is called are written to STDERR` and
  `I0000 ... port.cc:153] oneDNN custom operations are on ...`, once per library. absl reads no
  environment variable for its threshold, so these are caught while `import tensorflow` runs and
  dropped; whatever else reaches descriptor 2 meanwhile is passed on afterwards.

TF_ENABLE_ONEDNN_OPTS stays as it is: it changes the numerics, not only the log.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType

from flows.cli.import_hooks import around_first_import

LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LOG_LEVEL = "3"
"""Fatal errors only: 2 still prints the remapper's error line."""
LOADING_LOG_LINE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.-]+:\d+\] )")
"""absl's warning, and a line in absl's format below fatal (`I0000 00:00:1796233409.337527  5622
port.cc:153] ...`): what the libraries log while they load."""


def hide_tensorflow_logs() -> None:
    """Keep TensorFlow's own log lines out of this process's output and its children's (the
    environment variable is inherited). Call before TensorFlow is imported."""
    os.environ[LOG_LEVEL_ENV] = QUIET_LOG_LEVEL
    around_first_import("tensorflow", _load_quietly)


def _load_quietly(module: ModuleType, run: Callable[[ModuleType], None]) -> None:
    with loading_log_lines_dropped():
        run(module)


@contextmanager
def loading_log_lines_dropped() -> Iterator[None]:
    """Catch what reaches file descriptor 2 meanwhile; then write it there, less the lines
    `LOADING_LOG_LINE` matches."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True) if not LOADING_LOG_LINE.match(line)]
            with open(2, "wb", closefd=False) as stderr:
                stderr.writelines(kept)
