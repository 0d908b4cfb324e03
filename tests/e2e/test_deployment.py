"""End to end: a real `prefect server start` and the GPU job templates of deploy/ as Docker and
Kubernetes work pools. The deployments themselves (process pools, `prefect deploy --all`, workers,
`prefect deployment run --watch`, the `gpu` concurrency slot held around training, the `finetune`
trigger) run in tests/e2e/test_walkthrough.py, through the README's walkthrough script."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.prefect_helpers import PROJECT_ROOT, prefect, running_server

pytestmark = pytest.mark.slow


@pytest.fixture()
def prefect_server(tmp_path):
    with running_server(tmp_path) as (url, _):
        yield url


def _client_env(server_url: str, tmp_path: Path, store: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PREFECT_API_URL=server_url, PREFECT_HOME=str(tmp_path / "client-home"), MUSIKA_PIANO_DATA=str(store),
               MUSIKA_PIANO_RUNS=str(tmp_path / "runs"))
    return env


def test_the_gpu_job_templates_make_docker_and_kubernetes_pools(prefect_server, tmp_path):
    env = _client_env(prefect_server, tmp_path, tmp_path / "store")
    for pool_type in ("docker", "kubernetes"):
        template = PROJECT_ROOT / "deploy" / f"{pool_type}-gpu-job-template.json"
        prefect(env, "work-pool", "create", f"gpu-{pool_type}", "--type", pool_type, "--base-job-template",
                str(template))
        pool = json.loads(prefect(env, "work-pool", "inspect", f"gpu-{pool_type}", "--output", "json").stdout)
        text = json.dumps(pool["base_job_template"])
        assert ("device_requests" if pool_type == "docker" else "nvidia.com/gpu") in text
