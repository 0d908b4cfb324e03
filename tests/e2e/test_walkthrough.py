"""The README's deployment walkthrough, scripts/deployment_walkthrough.sh, run as a user runs it:
after `musika-piano demo` (what `make demo` runs) into a temporary store, the script starts a real
`prefect server start` on a free port, creates the pools and the `gpu` limit, registers every
deployment, starts real process workers and runs the chain of deployments, the fine-tune trigger
included. Then the store and the server are checked: every run's output and lineage, the trigger's
run and what it fine-tuned on, the `gpu` slot held around each training, the paused YouTube schedule,
the workers stopped and the server left running; a second run of the script on the same server
with an autoencoder that does not exist stops at the failed run and names its logs command.
Also: the README shows the script as it is, and prefect.yaml's defaults name what the demo leaves."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tasks.store import ArtifactStore
from tests.e2e.prefect_helpers import (
    BIN,
    PROJECT_ROOT,
    api,
    assert_slot_held_while_training,
    concurrency_limit,
    flow_runs,
    free_port,
    prefect,
    wait_for_health,
)

SCRIPT = PROJECT_ROOT / "scripts" / "deployment_walkthrough.sh"
README = PROJECT_ROOT / "README.md"
README_BEGIN = "<!-- walkthrough: begin (scripts/deployment_walkthrough.sh as it is; tests/e2e/test_walkthrough.py checks) -->\n"
README_END = "<!-- walkthrough: end -->\n"

# The deployments' parameters that name something to read from the store, and how.
DEFAULT_INPUTS = {
    "encode": {"dataset": "one", "autoencoder": "one"},
    "pretrain": {"datasets": "many"},
    "finetune": {"parent": "one", "datasets": "many"},
    "train-autoencoder": {"dataset": "one"},
    "generate": {"model": "one"},
    "evaluate": {"checkpoints": "many", "reference": "one"},
}


def test_the_readme_shows_the_walkthrough_script_as_it_is():
    readme = README.read_text()
    assert readme.count(README_BEGIN) == 1 and readme.count(README_END) == 1, "the README lost its markers"
    block = readme.split(README_BEGIN)[1].split(README_END)[0]
    assert block.startswith("```bash\n") and block.endswith("```\n"), block[:80]
    assert block[len("```bash\n"):-len("```\n")] == SCRIPT.read_text(), \
        "README's walkthrough differs from scripts/deployment_walkthrough.sh: paste the file between the markers"


def _processes_with(marker: str) -> list[int]:
    """The ids of the processes whose environment holds `marker` (a NAME=value only this test sets)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in environ:
                found.append(int(entry.name))
    return found


def _command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _end_processes_with(marker: str) -> None:
    """Stop what this test started and is still running (the server the script leaves, or anything
    a failed script left behind), by their ids: SIGTERM, then SIGKILL for what outlives 20 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [pid for pid in _processes_with(marker) if _running(pid)]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 20
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if _running(pid)]
            time.sleep(0.5)


def _run_script(env: dict[str, str], log_path: Path, timeout: float) -> tuple[int, str]:
    """Run the walkthrough as `bash scripts/deployment_walkthrough.sh` from the project root; its
    exit code and output. On a timeout it gets SIGTERM, so its exit trap stops the workers."""
    with open(log_path, "wb") as log:
        script = subprocess.Popen(["bash", str(SCRIPT)], cwd=PROJECT_ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = script.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            script.send_signal(signal.SIGTERM)
            script.wait(timeout=60)
            raise AssertionError(f"the walkthrough ran past {timeout:.0f} s:\n{log_path.read_text()[-5000:]}")
    return code, log_path.read_text()


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> Iterator[Path]:
    """A store holding what `make demo` leaves: `musika-piano demo` run into it. A store the
    project's `make demo` made (CI runs it first) is copied in first, so the demo finds its work done
    and recomputes nothing; without one the demo computes everything (about 2 minutes on 2 cores)."""
    root = tmp_path_factory.mktemp("demo")
    store = root / "store"
    made = PROJECT_ROOT / "data" / "store"
    if (made / "datasets").is_dir():
        shutil.copytree(made, store, symlinks=True)
    env = dict(os.environ, MUSIKA_PIANO_DATA=str(store), MUSIKA_PIANO_RUNS=str(root / "runs"),
               PREFECT_HOME=str(root / "prefect-home"))
    env.pop("PREFECT_API_URL", None)
    started = time.monotonic()
    demo = subprocess.run([str(BIN / "musika-piano"), "demo"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    print(f"musika-piano demo into {store}: {time.monotonic() - started:.0f} s"
          f"{' (seeded from data/store)' if made.is_dir() else ''}")
    yield store


@pytest.mark.slow
def test_the_deployments_defaults_name_what_the_demo_leaves(demo_store):
    store = ArtifactStore(str(demo_store))
    deployments = {d["name"]: d for d in yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]}
    checked = []
    for name, inputs in DEFAULT_INPUTS.items():
        parameters = deployments[name]["parameters"]
        for parameter, count in inputs.items():
            refs = parameters[parameter] if count == "many" else [parameters[parameter]]
            assert refs, (name, parameter)
            for ref in refs:
                store.resolve(ref)  # raises on a name the store does not hold
                checked.append(ref)
    for name in ("midi-dataset", "audio-dataset"):  # folders, relative to the project (the runs' directory)
        missing = [s for s in deployments[name]["parameters"]["sources"] if not (PROJECT_ROOT / s).exists()]
        assert not missing or name == "audio-dataset", (name, missing)  # audio-dataset: the user's recordings
    assert len(checked) >= 10


def _automation_of(server_url: str, deployment_id: str) -> dict:
    """The one automation that runs deployment `deployment_id`, as the server stores it."""
    found = [automation for automation in api(server_url, "POST", "/automations/filter", {})
             if any(action.get("deployment_id") == deployment_id for action in automation["actions"])]
    assert len(found) == 1, found
    return found[0]


def _prefect_file_with_the_trigger_on(tmp_path: Path, dataset: str, parameters: dict) -> Path:
    """A copy of prefect.yaml with the `finetune` trigger enabled for `dataset` the way the README
    says (enabled: true, the dataset in `match`), `parameters` added to the trigger's."""
    config = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    [finetune] = [deployment for deployment in config["deployments"] if deployment["name"] == "finetune"]
    [trigger] = finetune["triggers"]
    trigger.update(enabled=True, match={"prefect.resource.id": f"musika.dataset.{dataset}"})
    trigger["parameters"].update(parameters)
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_walkthrough_runs_on_a_real_server_and_workers(demo_store, tmp_path):
    port = free_port()
    server_url = f"http://127.0.0.1:{port}/api"
    home = tmp_path / "prefect-home"
    marker = f"PREFECT_HOME={home}"
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_API_PORT=str(port),
               MUSIKA_PIANO_DATA=str(demo_store), MUSIKA_PIANO_RUNS=str(tmp_path / "runs"),
               WALKTHROUGH_LOGS=str(tmp_path / "logs"), PREFECT_WORKER_QUERY_SECONDS="1",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PREFECT_API_URL", None)
    env.pop("AUTOENCODER", None)
    store = ArtifactStore(str(demo_store))
    try:
        started = time.monotonic()
        code, output = _run_script(env, tmp_path / "walkthrough.log", timeout=1500)
        print(f"walkthrough: {time.monotonic() - started:.0f} s")
        assert code == 0, output[-8000:]

        # The workers stopped with the script; the server it started runs on, as its last lines say.
        left = [_command_line(pid) for pid in _processes_with(marker)]
        assert not [line for line in left if "worker" in line], left
        [server_pid] = re.findall(r"kill (\d+)\s+to stop it", output)
        assert "prefect server start" in _command_line(int(server_pid)), left
        wait_for_health(server_url, timeout=10)
        client = dict(env, PREFECT_API_URL=server_url)

        # The chain, as the store holds it.
        ae_key = next(item.key for item in store.resolve("demo-ae").items if item.item_id == "autoencoder")
        assert len(store.resolve("my-piano@1").items) == 8
        assert len(store.resolve("my-piano@2").items) == 12  # the new pieces that fire the trigger
        for number in (1, 2):
            latents = store.resolve(f"my-piano-latents@{number}")
            assert latents.lineage.parents == [f"my-piano@{number}"] and latents.params["autoencoder"] == ae_key
        pretrained = store.resolve("my-gan")
        assert pretrained.lineage.parents == ["my-piano-latents@1"]
        assert {item.item_id for item in pretrained.items} == {"autoencoder", "gan"}
        tuned = store.resolve("my-gan-ft")
        assert tuned.lineage.extra["datasets"] == [{"ref": "my-piano-latents@2", "weight": 0.8},
                                                   {"ref": "my-piano-latents@1", "weight": 0.2}]
        assert tuned.lineage.extra["parent_checkpoint"]["ref"] == pretrained.ref
        samples = store.resolve("my-gan-ft-samples@1")
        assert len(samples.items) == 2 and samples.lineage.parents == [tuned.ref]
        evaluation = store.resolve("eval-my-piano@1")
        assert evaluation.lineage.parents == ["my-piano@2", pretrained.ref, tuned.ref], evaluation.lineage
        assert len(evaluation.items) == 3, evaluation.items  # the reference and the two models

        # The server: every deployment, the trigger's run, the slot, the paused schedule.
        deployments = api(server_url, "POST", "/deployments/filter", {})
        assert len(deployments) == len(yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"])
        [triggered_run] = flow_runs(server_url, "finetune")
        assert triggered_run["parameters"]["datasets"] == "my-piano-latents@2"
        assert triggered_run["state_type"] == "COMPLETED"
        limit = concurrency_limit(client, "gpu")
        assert limit["limit"] == 1 and limit["active_slots"] == 0  # nothing held once the runs are over
        [pretrain_run] = flow_runs(server_url, "pretrain")
        for flow_run in (pretrain_run, triggered_run):
            assert_slot_held_while_training(server_url, limit["id"], flow_run, "train-gan")
        youtube = api(server_url, "GET", "/deployments/name/refresh-youtube-dataset/youtube-refresh")
        assert [schedule["active"] for schedule in youtube["schedules"]] == [False]
        assert "sources" not in youtube["parameters"]
        assert "cron: 0 3 * * 1" in output  # the script showed the schedule

        # prefect.yaml's own trigger, enabled as the README says, makes the same automation as the
        # script's --trigger (which the run above proved), for its dataset.
        [finetune] = [d for d in deployments if d["name"] == "finetune"]
        by_script = _automation_of(server_url, finetune["id"])
        trigger_parameters = by_script["actions"][0]["parameters"]
        prefect_file = _prefect_file_with_the_trigger_on(
            tmp_path, "my-piano-latents", {k: v for k, v in trigger_parameters.items() if k != "datasets"})
        prefect(client, "--no-prompt", "deploy", "--prefect-file", str(prefect_file), "--name", "finetune")
        by_yaml = _automation_of(server_url, finetune["id"])
        for automation in (by_script, by_yaml):
            automation["trigger"].pop("id", None)
        assert by_yaml["trigger"] == by_script["trigger"] and by_yaml["enabled"] is True
        assert by_yaml["actions"][0]["parameters"] == trigger_parameters
        assert trigger_parameters["datasets"] == "{{ event.payload.ref }}"

        # Again on the same server (the pools, the limit and the deployments exist): an
        # autoencoder that does not exist fails the first encode, which stops the script with the
        # run's logs command; the workers stop all the same.
        code, output = _run_script(dict(env, AUTOENCODER="no-such-model"), tmp_path / "walkthrough-2.log",
                                   timeout=900)
        assert code == 1, output[-8000:]
        assert "the server is still running" not in output, "the second run started a server of its own"
        [failed_id] = re.findall(r"did not complete; its logs: prefect flow-run logs ([0-9a-f-]{36})", output)
        failed = api(server_url, "GET", f"/flow_runs/{failed_id}")
        assert failed["state_type"] == "FAILED" and failed["parameters"]["autoencoder"] == "no-such-model"
        logs = prefect(client, "flow-run", "logs", failed_id).stdout
        assert "no-such-model" in logs, logs[-3000:]
        assert "Creating flow run for deployment 'pretrain/pretrain'" not in output
        left = [_command_line(pid) for pid in _processes_with(marker)]
        assert not [line for line in left if "worker" in line], left
    finally:
        _end_processes_with(marker)
