"""End to end: a real `prefect server start`, process work pools, `prefect deploy`, workers, and
`prefect deployment run --watch`: building a dataset from MIDI written by the test, pretraining a
tiny GAN on the `gpu` pool under the `gpu` global concurrency limit (a slot held while training,
as the server's events show, though the run's `settings` leave the limit out), and the `finetune`
trigger fine-tuning it on a newly published latents version."""

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
import numpy as np
import pytest
import yaml

from tasks.checkpoint_import.stage import import_official_checkpoint
from tasks.pipeline.publishing import DATASET_PUBLISHED_EVENT
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


@contextmanager
def _worker(env: dict[str, str], pool: str, log_path: Path) -> Iterator[None]:
    """A process worker on `pool` while the block runs, its output in `log_path`."""
    with open(log_path, "wb") as worker_log:
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--install-policy", "never"],
            cwd=PROJECT_ROOT, env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            yield
        finally:
            _stop(worker)


def _run_deployment(env: dict[str, str], deployment: str, params: dict, worker_log: Path) -> str:
    """Run `deployment` with `params` and wait for it (a worker must be up); the run's output."""
    run = _prefect(env, "deployment", "run", deployment, "--params", json.dumps(params), "--watch", timeout=600)
    assert "completed" in run.stdout.lower(), run.stdout + worker_log.read_text()
    return run.stdout


def _run_on_worker(env: dict[str, str], pool: str, log_path: Path, deployment: str, params: dict) -> str:
    """Start a worker on `pool`, run `deployment` with `params` and wait for it; the run's output."""
    with _worker(env, pool, log_path):
        return _run_deployment(env, deployment, params, log_path)


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


def _flow_runs(server_url: str, deployment: str) -> list[dict]:
    """The flow runs of the deployment named `deployment`."""
    return _api(server_url, "POST", "/flow_runs/filter", {"deployments": {"name": {"any_": [deployment]}}})


def _wait_for_finished_run(server_url: str, deployment: str, timeout: float = 420.0) -> dict:
    """The first flow run of `deployment` to reach a final state, waited for up to `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished = [run for run in _flow_runs(server_url, deployment)
                    if run["state_type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}]
        if finished:
            return finished[0]
        time.sleep(2.0)
    raise TimeoutError(f"no run of {deployment} finished in {timeout:.0f} s: {_flow_runs(server_url, deployment)}")


def _assert_slot_held_while_training(server_url: str, limit_id: str, flow_run: dict, task: str) -> None:
    """One slot of the global concurrency limit `limit_id` was acquired by the completed
    `flow_run` before its `task` started and released after the task completed, before the run
    finished: Prefect's `concurrency` context emits prefect.concurrency-limit.acquired / .released
    events from the run that holds the slot."""
    assert flow_run["state_type"] == "COMPLETED", flow_run
    holder = [f"prefect.flow-run.{flow_run['id']}"]
    slot_names = ["prefect.concurrency-limit.acquired", "prefect.concurrency-limit.released"]
    slot_events = _events(server_url, lambda found: {e["event"] for e in found} == set(slot_names),
                          event={"name": slot_names}, resource={"id": [f"prefect.concurrency-limit.{limit_id}"]},
                          related={"id": holder})
    assert [event["event"] for event in slot_events] == slot_names, slot_events  # one of each
    acquired, released = slot_events
    assert acquired["resource"]["slots-acquired"] == "1"
    assert _related(acquired, "flow-run") == holder and _related(released, "flow-run") == holder, slot_events

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


def _publish_latents(store: ArtifactStore, name: str, ae_key: str, seed: int) -> str:
    """Publish a version of the latents dataset `name` as the encode stage stores them ((T, 128)
    float32 per item, two items); its ref."""
    rng = np.random.default_rng(seed)
    items = []
    for index in range(2):
        with store.publish_object("encode", 1, {"e2e": name, "index": index}, [ae_key]) as staged:
            np.save(staged.dir / "latents.npy", rng.normal(size=(300, 128)).astype(np.float32))
        items.append({"item_id": f"piece-{index}", "key": staged.key})
    return store.publish_dataset(name, stage="encode", params={"autoencoder": ae_key}, items=items).ref


def _prefect_file_with_the_trigger_on(tmp_path: Path, dataset: str, parameters: dict) -> Path:
    """A copy of the project's prefect.yaml whose `finetune` trigger is enabled, as the README
    says, for the latents dataset `dataset`, with `parameters` added to the trigger's own."""
    config = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    [finetune] = [deployment for deployment in config["deployments"] if deployment["name"] == "finetune"]
    [trigger] = finetune["triggers"]
    trigger.update(enabled=True, match={"prefect.resource.id": f"musika.dataset.{dataset}"})
    trigger["parameters"].update(parameters)
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_pretrain_under_the_gpu_limit_and_the_finetune_trigger_on_the_gpu_pool(prefect_server, tmp_path):
    store_root = tmp_path / "store"
    store = ArtifactStore(str(store_root))
    model = import_official_checkpoint(store, write_official_tiny_model(tmp_path / "official"), "tiny")
    ae_key = next(item.key for item in model.items if item.item_id == "autoencoder")
    _publish_latents(store, "e2e-latents", ae_key, seed=0)

    env = _client_env(prefect_server, tmp_path, store_root)
    _prefect(env, "work-pool", "create", "gpu", "--type", "process")
    _prefect(env, "gcl", "create", "gpu", "--limit", "1")
    tiny = {"preset": "tiny", "publish_every": 1}  # no concurrency_limit: the deployments' `gpu` stays
    prefect_file = _prefect_file_with_the_trigger_on(tmp_path, "e2e-new-latents", {"parent": "e2e-gan",
                                                                                     "settings": tiny})
    _prefect(env, "--no-prompt", "deploy", "--prefect-file", str(prefect_file), "--name", "pretrain",
             "--name", "finetune")
    worker_log = tmp_path / "gpu-worker.log"
    with _worker(env, "gpu", worker_log):
        _run_deployment(env, "pretrain/pretrain", {"datasets": ["e2e-latents"], "name": "e2e-gan", "settings": tiny},
                        worker_log)
        trained = store.resolve("e2e-gan")
        assert trained.lineage.parents == ["e2e-latents@1"]
        assert {item.item_id for item in trained.items} == {"autoencoder", "gan"}
        assert store.manifest(trained.items[1].key).stats["step"] == 8

        new_ref = _publish_latents(store, "e2e-new-latents", ae_key, seed=1)
        _prefect(env, "events", "emit", DATASET_PUBLISHED_EVENT, "--resource-id", "musika.dataset.e2e-new-latents",
                 "--payload", json.dumps({"name": "e2e-new-latents", "version": 1, "ref": new_ref}))
        triggered = _wait_for_finished_run(prefect_server, "finetune")
    assert triggered["state_type"] == "COMPLETED", worker_log.read_text()
    assert triggered["parameters"]["datasets"] == new_ref == "e2e-new-latents@1"
    tuned = store.resolve("e2e-gan-ft")
    assert tuned.lineage.extra["datasets"] == [{"ref": new_ref, "weight": 0.8}, {"ref": "e2e-latents@1", "weight": 0.2}]
    assert tuned.lineage.extra["parent_checkpoint"]["ref"] == "e2e-gan@2"

    limit = json.loads(_prefect(env, "gcl", "inspect", "gpu", "--output", "json").stdout)
    assert limit["limit"] == 1 and limit["active_slots"] == 0  # nothing held once the runs are over
    [pretrained] = _flow_runs(prefect_server, "pretrain")
    for flow_run in (pretrained, triggered):
        _assert_slot_held_while_training(prefect_server, limit["id"], flow_run, "train-gan")


def test_the_gpu_job_templates_make_docker_and_kubernetes_pools(prefect_server, tmp_path):
    env = _client_env(prefect_server, tmp_path, tmp_path / "store")
    for pool_type in ("docker", "kubernetes"):
        template = PROJECT_ROOT / "deploy" / f"{pool_type}-gpu-job-template.json"
        _prefect(env, "work-pool", "create", f"gpu-{pool_type}", "--type", pool_type, "--base-job-template",
                 str(template))
        pool = json.loads(_prefect(env, "work-pool", "inspect", f"gpu-{pool_type}", "--output", "json").stdout)
        text = json.dumps(pool["base_job_template"])
        assert ("device_requests" if pool_type == "docker" else "nvidia.com/gpu") in text
