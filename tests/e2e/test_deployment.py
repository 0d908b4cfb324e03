"""End to end: a real `prefect server start`, process work pools, `prefect deploy`, workers, and
`prefect deployment run --watch`: building a dataset from MIDI written by the test, and
pretraining a tiny GAN on the `gpu` pool under the `gpu` global concurrency limit (a slot held
while training, as the server's events show)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from tasks.checkpoint_import.stage import import_official_checkpoint
from tasks.store import ArtifactStore
from tests.helpers import write_official_tiny_model, write_piano_midi

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


def _client_env(server_url: str, tmp_path: Path, store: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PREFECT_API_URL=server_url, PREFECT_HOME=str(tmp_path / "client-home"), MUSIKA_PIANO_DATA=str(store),
               MUSIKA_PIANO_RUNS=str(tmp_path / "runs"))
    return env


def _prefect(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(BIN / "prefect"), *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _run_on_worker(env: dict[str, str], pool: str, log_path: Path, deployment: str, params: dict) -> str:
    """Start a worker on `pool`, run `deployment` with `params` and wait for it; the run's output."""
    with open(log_path, "wb") as worker_log:
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--install-policy", "never"],
            cwd=PROJECT_ROOT, env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            run = _prefect(env, "deployment", "run", deployment, "--params", json.dumps(params), "--watch",
                           timeout=600)
        finally:
            _stop(worker)
    assert "completed" in run.stdout.lower(), run.stdout + log_path.read_text()
    return run.stdout


def _api(server_url: str, method: str, path: str, body: dict | None = None) -> dict:
    response = httpx.request(method, f"{server_url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def _when(value: dict | str) -> datetime:
    """An event's `occurred`, or an API timestamp, as a datetime."""
    return datetime.fromisoformat(value["occurred"] if isinstance(value, dict) else value)


def _events(server_url: str, complete: Callable[[list[dict]], bool], timeout: float = 60.0,
            **event_filter: dict) -> list[dict]:
    """The events matching `event_filter` (`POST /api/events/filter`), oldest first, read until
    `complete` holds of them or `timeout`: the server stores the events a flow run sent a few
    seconds after they arrive."""
    deadline = time.monotonic() + timeout
    while True:
        page = _api(server_url, "POST", "/events/filter", {"filter": event_filter, "limit": 50})
        events = sorted(page["events"], key=_when)
        if complete(events) or time.monotonic() > deadline:
            return events
        time.sleep(1.0)


def _related(event: dict, role: str) -> list[str]:
    """The ids of the resources related to `event` in `role` (e.g. "flow-run")."""
    return [resource["prefect.resource.id"] for resource in event["related"]
            if resource.get("prefect.resource.role") == role]


def _assert_slot_held_while_training(server_url: str, limit_id: str, deployment: str, task: str) -> None:
    """One slot of the global concurrency limit `limit_id` was acquired by a run of `deployment`
    before its `task` started and released after the task completed, before the run finished:
    Prefect's `concurrency` context emits prefect.concurrency-limit.acquired / .released events
    from the run that holds the slot."""
    slot_names = ["prefect.concurrency-limit.acquired", "prefect.concurrency-limit.released"]
    slot_events = _events(server_url, lambda found: {e["event"] for e in found} == set(slot_names),
                          event={"name": slot_names}, resource={"id": [f"prefect.concurrency-limit.{limit_id}"]})
    assert [event["event"] for event in slot_events] == slot_names, slot_events  # one of each
    acquired, released = slot_events
    assert acquired["resource"]["slots-acquired"] == "1"
    holder = _related(acquired, "flow-run")
    assert len(holder) == 1 and _related(released, "flow-run") == holder, slot_events
    flow_run = _api(server_url, "GET", f"/flow_runs/{holder[0].removeprefix('prefect.flow-run.')}")
    assert flow_run["state_type"] == "COMPLETED" and flow_run["deployment_id"], flow_run
    assert _api(server_url, "GET", f"/deployments/{flow_run['deployment_id']}")["name"] == deployment

    task_names = ["prefect.task-run.Running", "prefect.task-run.Completed"]

    def of_task(found: list[dict]) -> list[dict]:
        return [e for e in found if e["resource"]["prefect.resource.name"].startswith(f"{task}-")]

    task_events = of_task(_events(server_url, lambda found: len(of_task(found)) >= 2,
                                  event={"name": task_names}, related={"id": holder}))
    assert [event["event"] for event in task_events] == task_names, task_events
    started, finished = task_events
    assert (_when(flow_run["start_time"]) <= _when(acquired) < _when(started) < _when(finished)
            < _when(released) <= _when(flow_run["end_time"])), (slot_events, task_events, flow_run)


def test_midi_dataset_deployment_runs_on_a_process_worker(prefect_server, tmp_path):
    midi_dir = tmp_path / "midi"
    midi_dir.mkdir()
    for index in range(3):
        write_piano_midi(midi_dir / f"piece-{index}.mid", seconds=4.0, seed=index)
    store = tmp_path / "store"
    env = _client_env(prefect_server, tmp_path, store)
    _prefect(env, "work-pool", "create", "cpu", "--type", "process")
    _prefect(env, "--no-prompt", "deploy", "--name", "midi-dataset")
    params = {"name": "e2e-midi", "sources": [str(midi_dir)]}
    _run_on_worker(env, "cpu", tmp_path / "worker.log", "build-midi-dataset/midi-dataset", params)

    shown = subprocess.run(
        [str(BIN / "musika-piano"), "--store", str(store), "dataset", "show", "e2e-midi", "--json"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert shown.returncode == 0, shown.stderr
    version = json.loads(shown.stdout)
    assert version["version"] == 1
    assert len(version["items"]) == 3


def test_pretrain_deployment_runs_on_the_gpu_pool_under_the_gpu_limit(prefect_server, tmp_path):
    store_root = tmp_path / "store"
    store = ArtifactStore(str(store_root))
    model = import_official_checkpoint(store, write_official_tiny_model(tmp_path / "official"), "tiny")
    ae_key = next(item.key for item in model.items if item.item_id == "autoencoder")
    rng = np.random.default_rng(0)
    items = []
    for index in range(2):  # latents as the encode stage stores them: (T, 128) float32 per item
        with store.publish_object("encode", 1, {"e2e": index}, [ae_key]) as staged:
            np.save(staged.dir / "latents.npy", rng.normal(size=(300, 128)).astype(np.float32))
        items.append({"item_id": f"piece-{index}", "key": staged.key})
    store.publish_dataset("e2e-latents", stage="encode", params={"autoencoder": ae_key}, items=items)

    env = _client_env(prefect_server, tmp_path, store_root)
    _prefect(env, "work-pool", "create", "gpu", "--type", "process")
    _prefect(env, "gcl", "create", "gpu", "--limit", "1")
    _prefect(env, "--no-prompt", "deploy", "--name", "pretrain", "--name", "finetune")
    params = {"datasets": ["e2e-latents"], "name": "e2e-gan",
              "settings": {"preset": "tiny", "publish_every": 1, "concurrency_limit": "gpu"}}
    _run_on_worker(env, "gpu", tmp_path / "gpu-worker.log", "pretrain/pretrain", params)

    trained = store.resolve("e2e-gan")
    assert trained.lineage.parents == ["e2e-latents@1"]
    assert {item.item_id for item in trained.items} == {"autoencoder", "gan"}
    assert store.manifest(trained.items[1].key).stats["step"] == 8
    limit = json.loads(_prefect(env, "gcl", "inspect", "gpu", "--output", "json").stdout)
    assert limit["limit"] == 1 and limit["active_slots"] == 0  # nothing held once the run is over

    _assert_slot_held_while_training(prefect_server, limit["id"], "pretrain", "train-gan")
    automations = _prefect(env, "automation", "ls").stdout
    assert "finetune" in automations.lower()


def test_the_gpu_job_templates_make_docker_and_kubernetes_pools(prefect_server, tmp_path):
    env = _client_env(prefect_server, tmp_path, tmp_path / "store")
    for pool_type in ("docker", "kubernetes"):
        template = PROJECT_ROOT / "deploy" / f"{pool_type}-gpu-job-template.json"
        _prefect(env, "work-pool", "create", f"gpu-{pool_type}", "--type", pool_type, "--base-job-template",
                 str(template))
        pool = json.loads(_prefect(env, "work-pool", "inspect", f"gpu-{pool_type}", "--output", "json").stdout)
        text = json.dumps(pool["base_job_template"])
        assert ("device_requests" if pool_type == "docker" else "nvidia.com/gpu") in text
