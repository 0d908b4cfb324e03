"""The temporary Prefect server of a CLI run dies with the CLI process (Linux).

Without PREFECT_API_URL, Prefect starts a temporary API server as a child process the first time
something needs the API (`SubprocessASGIServer` in prefect/server/api/server.py) and stops it at
interpreter exit (atexit). A CLI killed outright (SIGKILL: the OOM killer, `kill -9`) runs no
atexit, and the server, handed to init, used to keep running, holding its port and database.

How: the server child runs a watchdog thread that stops it once its parent process is gone
(`os.getppid()` changes when the parent dies and the child is handed to init or a subreaper).
prctl(PR_SET_PDEATHSIG) would be immediate, but it fires when the *thread* that forked the child
exits, and Prefect forks the server from whichever thread first needs the API (the flow engine's,
a task runner's, the events or logs worker's): a short-lived one would take the server down in
the middle of a run. It also needs a preexec_fn, which Python documents as unsafe in a process
with threads (Prefect's loops, TensorFlow's pools). The watchdog costs one getppid() per
POLL_SECONDS and ties the server to the process, not a thread.

The hook: Prefect shares one default server instance (`SubprocessASGIServer._instances[None]`,
as `prefect.testing.utilities.prefect_test_harness` uses it); `die_with_this_process` makes that
instance one whose child runs `create_app` below. Prefect's server module takes seconds to import,
so it is not imported here: the instance is registered when Prefect imports that module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from flows.cli.import_hooks import around_first_import

SERVER_MODULE = "prefect.server.api.server"
PARENT_ENV = "MUSIKA_PIANO_SERVER_PARENT"
"""In the server's environment: the pid of the process it lives for."""
POLL_SECONDS = 0.2
SHUTDOWN_GRACE_SECONDS = 10.0
"""How long the orphaned server's graceful shutdown (uvicorn's, on SIGTERM) may take before the
watchdog ends the process."""


def die_with_this_process() -> None:
    """Make the temporary Prefect server this process may start stop when this process dies,
    however it dies (Linux only; elsewhere Prefect's atexit stop is all there is)."""
    if sys.platform != "linux":
        return
    module = sys.modules.get(SERVER_MODULE)
    if module is not None:
        _register(module)
    else:
        around_first_import(SERVER_MODULE, _run_and_register)


def _run_and_register(module: ModuleType, run: Callable[[ModuleType], None]) -> None:
    run(module)
    _register(module)


def _register(module: ModuleType) -> None:
    """Make Prefect's default temporary server one whose child watches this process. A default
    already there (Prefect's test harness, a server already started) stays."""
    base = module.SubprocessASGIServer
    if None in base._instances:
        return

    class ServerDyingWithParent(base):  # type: ignore[misc,valid-type]
        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            """Prefect 3.8.8's command, with `create_app` below as the app factory and this
            process's pid in the environment."""
            import prefect
            from prefect.settings import get_current_settings

            return subprocess.Popen(
                args=[sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent),
                      "--factory", f"{__name__}:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                      "--log-level", "error", "--lifespan", "on"],
                env={**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                     "PREFECT__SERVER_FINAL": "1", **get_current_settings().to_environment_variables(exclude_unset=True),
                     PARENT_ENV: str(os.getpid())},
            )

    base._instances[None] = ServerDyingWithParent()


def create_app() -> Any:
    """The server child's app (uvicorn --factory): Prefect's, with the watchdog started."""
    from prefect.server.api.server import create_app as prefect_app

    parent = int(os.environ[PARENT_ENV])
    threading.Thread(target=_stop_when_orphaned, args=(parent,), name="parent-watchdog", daemon=True).start()
    return prefect_app()


def _stop_when_orphaned(parent: int) -> None:
    """Once `parent` is no longer this process's parent, stop the server as SIGTERM does
    (uvicorn's graceful shutdown); end the process if that takes too long."""
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(SHUTDOWN_GRACE_SECONDS)
    os._exit(1)
