"""Write base job templates for GPU work pools on Docker and Kubernetes.

Prefect's default templates have no GPU setting. This script takes the defaults of the installed
Prefect (`prefect work-pool get-default-base-job-template`) and adds one:

- Docker: `container_create_kwargs` with an NVIDIA device request for every GPU of the host
  (the worker needs the NVIDIA Container Toolkit);
- Kubernetes: an `nvidia.com/gpu` limit on the job's container, `gpu_count` GPUs (default 1;
  the cluster needs the NVIDIA device plugin).

    python deploy/gpu_job_templates.py            # rewrites deploy/*-gpu-job-template.json
    prefect work-pool create gpu --type kubernetes --base-job-template deploy/kubernetes-gpu-job-template.json
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PREFECT = Path(sys.executable).parent / "prefect"


def default_template(pool_type: str) -> dict:
    done = subprocess.run([str(PREFECT), "work-pool", "get-default-base-job-template", "--type", pool_type],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def docker_gpu(template: dict) -> dict:
    template["job_configuration"]["container_create_kwargs"] = "{{ container_create_kwargs }}"
    template["variables"]["properties"]["container_create_kwargs"] = {
        "title": "Container create kwargs",
        "description": "Extra arguments of docker-py's containers.create; the default exposes every GPU.",
        "type": "object",
        "default": {"device_requests": [{"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}]},
    }
    return template


def kubernetes_gpu(template: dict) -> dict:
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    container["resources"]["limits"]["nvidia.com/gpu"] = "{{ gpu_count }}"
    template["variables"]["properties"]["gpu_count"] = {
        "title": "GPUs", "description": "NVIDIA GPUs per flow run (nvidia.com/gpu limit).",
        "type": "integer", "default": 1, "minimum": 1,
    }
    return template


def main() -> int:
    for pool_type, add_gpu in (("docker", docker_gpu), ("kubernetes", kubernetes_gpu)):
        path = HERE / f"{pool_type}-gpu-job-template.json"
        path.write_text(json.dumps(add_gpu(default_template(pool_type)), indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
