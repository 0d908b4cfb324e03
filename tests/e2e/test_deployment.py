"""End to end: a real `prefect server start`, a process work pool, `prefect deploy`, a worker, and
`prefect deployment run --watch`, building a dataset from MIDI written by the test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import write_piano_midi

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_health(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited early with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"prefect server at {url} not healthy after {timeout:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture()
def prefect_server(tmp_path):
    port = _free_port()
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_HOME"] = str(tmp_path / "server-home")
    env["PREFECT_SERVER_API_HOST"] = "127.0.0.1"
    env["PREFECT_SERVER_API_PORT"] = str(port)
    url = f"http://127.0.0.1:{port}/api"
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_for_health(url, server)
            yield url
        finally:
            _stop(server)


def test_midi_dataset_deployment_runs_on_a_process_worker(prefect_server, tmp_path):
    midi_dir = tmp_path / "midi"
    midi_dir.mkdir()
    for index in range(3):
        write_piano_midi(midi_dir / f"piece-{index}.mid", seconds=4.0, seed=index)
    store = tmp_path / "store"
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=prefect_server,
        PREFECT_HOME=str(tmp_path / "client-home"),
        MUSIKA_PIANO_DATA=str(store),
    )

    def prefect(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(BIN / "prefect"), *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    prefect("work-pool", "create", "cpu", "--type", "process")
    prefect("--no-prompt", "deploy", "--name", "midi-dataset")

    with open(tmp_path / "worker.log", "wb") as worker_log:
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "cpu", "--install-policy", "never"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            params = {"name": "e2e-midi", "sources": [str(midi_dir)]}
            run = prefect(
                "deployment", "run", "build-midi-dataset/midi-dataset", "--params", json.dumps(params), "--watch",
                timeout=420,
            )
            assert "completed" in run.stdout.lower()
        finally:
            _stop(worker)

    shown = subprocess.run(
        [str(BIN / "musika-piano"), "--store", str(store), "dataset", "show", "e2e-midi", "--json"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert shown.returncode == 0, shown.stderr
    version = json.loads(shown.stdout)
    assert version["version"] == 1
    assert len(version["items"]) == 3
