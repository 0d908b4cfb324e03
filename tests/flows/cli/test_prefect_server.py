"""The CLI's temporary Prefect server ends with the CLI process, even one killed outright."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from flows.cli import prefect_server

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="the watchdog is Linux-only")]


def _children(pid: int) -> list[int]:
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_text().split("\0")


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for init, which need not reap it soon)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(condition, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval)
    return None


def _healthy_server(cli: subprocess.Popen) -> tuple[int, int] | None:
    """(pid, port) of the CLI's temporary Prefect server once it answers, else None."""
    for child in _children(cli.pid):
        args = _cmdline(child)
        if f"{prefect_server.__name__}:create_app" in args:
            port = int(args[args.index("--port") + 1])
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                    return child, port
            except httpx.HTTPError:
                return None
    return None


def test_killing_the_cli_alone_ends_its_temporary_server(tmp_path):
    console_script = Path(sys.executable).with_name("musika-piano")
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    log = (tmp_path / "cli.log").open("w")
    # The demo runs for minutes, so the CLI is still at work when it is killed.
    cli = subprocess.Popen([str(console_script), "--store", str(tmp_path / "store"), "demo"], env=env,
                           cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    server = None
    try:
        found = _wait_for(lambda: cli.poll() is None and _healthy_server(cli), timeout=180, interval=0.2)
        assert found, f"no temporary server came up; the CLI said:\n{(tmp_path / 'cli.log').read_text()[-3000:]}"
        server, port = found
        os.kill(cli.pid, signal.SIGKILL)  # the CLI process alone, not its process group
        assert cli.wait(timeout=10) == -signal.SIGKILL
        assert _wait_for(lambda: not _running(server), timeout=prefect_server.SHUTDOWN_GRACE_SECONDS + 5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
    finally:
        if cli.poll() is None:
            cli.kill()
        if server is not None and _running(server):
            os.kill(server, signal.SIGKILL)
        log.close()


def test_the_server_module_is_registered_when_prefect_imports_it():
    # In a fresh interpreter: the hook costs nothing until Prefect imports its server module, and
    # then Prefect's default temporary server is the one that watches its parent.
    script = (
        "import sys\n"
        "from flows.cli.prefect_server import SERVER_MODULE, die_with_this_process\n"
        "die_with_this_process()\n"
        "assert SERVER_MODULE not in sys.modules\n"
        "from prefect.server.api.server import SubprocessASGIServer\n"
        "print(type(SubprocessASGIServer()).__name__, type(SubprocessASGIServer._instances[None]).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert re.fullmatch(r"ServerDyingWithParent ServerDyingWithParent\n", done.stdout)
