"""What the end-to-end tests share: free ports, a real `prefect server start` and its health,
stopping process groups, the `prefect` command line, and reading runs and events from the
server's API (the gpu concurrency slot held around training)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, process: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    """Wait until the Prefect API at `url` answers /health; fail early when `process` (the server)
    exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"prefect server exited early with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"prefect server at {url} not healthy after {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """Stop `process`, started with start_new_session=True, and its process group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def running_server(folder: Path, timeout: float = 120.0, **settings: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `prefect server start` on a free loopback port, with a home and database of its own
    under `folder` (its output in folder/prefect-server.log) and no PREFECT_* setting of this
    process: (its API URL, the environment of a process that uses it). `settings` are more
    PREFECT_* variables for the server. The port is also the UI's (PREFECT_SERVER_API_PORT and
    PREFECT_UI_API_URL: `--port` alone leaves the UI calling the API at 4200)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(folder / "prefect-home"), PREFECT_SERVER_API_HOST="127.0.0.1",
               PREFECT_SERVER_API_PORT=str(port), PREFECT_UI_API_URL=url, **settings)
    log = folder / "prefect-server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        try:
            wait_for_health(url, server, timeout=timeout)
        except (RuntimeError, TimeoutError) as error:
            raise AssertionError(f"{error}\n{log.read_text(errors='replace')[-3000:]}") from None
        yield url, {**env, "PREFECT_API_URL": url}
    finally:
        stop(server)


def prefect(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`prefect ARGS` from the project root; it must succeed."""
    result = subprocess.run(
        [str(BIN / "prefect"), *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def api(server_url: str, method: str, path: str, body: dict | None = None) -> dict | list:
    response = httpx.request(method, f"{server_url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def when(value: dict | str) -> datetime:
    """An event's `occurred`, or an API timestamp, as a datetime."""
    return datetime.fromisoformat(value["occurred"] if isinstance(value, dict) else value)


def events(server_url: str, complete: Callable[[list[dict]], bool], timeout: float = 60.0,
           **event_filter: dict) -> list[dict]:
    """The events matching `event_filter` (`POST /api/events/filter`), oldest first, read until
    `complete` holds of them or `timeout`: the server stores the events a flow run sent a few
    seconds after they arrive."""
    deadline = time.monotonic() + timeout
    while True:
        page = api(server_url, "POST", "/events/filter", {"filter": event_filter, "limit": 50})
        found = sorted(page["events"], key=when)
        if complete(found) or time.monotonic() > deadline:
            return found
        time.sleep(1.0)


def related(event: dict, role: str) -> list[str]:
    """The ids of the resources related to `event` in `role` (e.g. "flow-run")."""
    return [resource["prefect.resource.id"] for resource in event["related"]
            if resource.get("prefect.resource.role") == role]


def flow_runs(server_url: str, deployment: str) -> list[dict]:
    """The flow runs of the deployment named `deployment`, oldest first."""
    runs = api(server_url, "POST", "/flow_runs/filter", {"deployments": {"name": {"any_": [deployment]}}})
    return sorted(runs, key=lambda run: when(run["created"]))


def concurrency_limit(env: dict[str, str], name: str) -> dict:
    """The global concurrency limit `name` as `prefect gcl inspect` shows it."""
    return json.loads(prefect(env, "gcl", "inspect", name, "--output", "json").stdout)


def assert_slot_held_while_training(server_url: str, limit_id: str, flow_run: dict, task: str) -> None:
    """One slot of the global concurrency limit `limit_id` was acquired by the completed
    `flow_run` before its `task` started and released after the task completed, before the run
    finished: Prefect's `concurrency` context emits prefect.concurrency-limit.acquired / .released
    events from the run that holds the slot."""
    assert flow_run["state_type"] == "COMPLETED", flow_run
    holder = [f"prefect.flow-run.{flow_run['id']}"]
    slot_names = ["prefect.concurrency-limit.acquired", "prefect.concurrency-limit.released"]
    slot_events = events(server_url, lambda found: {e["event"] for e in found} == set(slot_names),
                         event={"name": slot_names}, resource={"id": [f"prefect.concurrency-limit.{limit_id}"]},
                         related={"id": holder})
    assert [event["event"] for event in slot_events] == slot_names, slot_events  # one of each
    acquired, released = slot_events
    assert acquired["resource"]["slots-acquired"] == "1"
    assert related(acquired, "flow-run") == holder and related(released, "flow-run") == holder, slot_events

    task_names = ["prefect.task-run.Running", "prefect.task-run.Completed"]

    def of_task(found: list[dict]) -> list[dict]:
        return [e for e in found if e["resource"]["prefect.resource.name"].startswith(f"{task}-")]

    task_events = of_task(events(server_url, lambda found: len(of_task(found)) >= 2,
                                 event={"name": task_names}, related={"id": holder}))
    assert [event["event"] for event in task_events] == task_names, task_events
    started, finished = task_events
    assert (when(flow_run["start_time"]) <= when(acquired) < when(started) < when(finished)
            < when(released) <= when(flow_run["end_time"])), (slot_events, task_events, flow_run)
