"""A deployment run's partial model parameters, laid over the deployment's own values.

Prefect merges a run's parameters over its deployment's one level deep only: a run (CLI, API,
schedule, automation or UI form) that passes `settings: {"preset": "tiny"}` replaces the
deployment's whole `settings`, its `concurrency_limit: gpu` included. The flows pass each of their
pydantic-model parameters through `over_deployment_defaults`: the fields the caller set (the validated
model's `model_fields_set`, which are the keys the run gave) are laid over the deployment's value
of that parameter, so every field left unset keeps the deployment's value, and below that the
model's own default (for the training settings: the preset's). `prefect.runtime.deployment.parameters`
cannot serve as the defaults: it holds the run's parameters, already merged, so they are read from
the deployment itself.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, TypeVar
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.runtime import deployment, flow_run
from pydantic import BaseModel

Model = TypeVar("Model", bound=BaseModel)


def deployment_parameters() -> dict[str, Any]:
    """The parameters recorded on the deployment that runs this flow; {} outside a deployment run."""
    deployment_id = deployment.id
    return _parameters_of(deployment_id, flow_run.id) if deployment_id else {}


@lru_cache(maxsize=32)
def _parameters_of(deployment_id: str, flow_run_id: str | None) -> dict[str, Any]:
    """Read once per flow run: a flow asks for several of its parameters. Bounded, since a
    long-lived process (`flow.serve`) runs flow after flow."""
    with get_client(sync_client=True) as client:
        return dict(client.read_deployment(UUID(deployment_id)).parameters or {})


def over_deployment_default(name: str, given: Model) -> Model:
    """The flow's model parameter `name`, its set fields laid over the deployment's value of it
    (`over_default`); `given` itself outside a deployment run."""
    return over_default(given, deployment_parameters().get(name))


def over_default(given: Model, default: Any) -> Model:
    """`given`'s set fields over `default` (the deployment's value of that parameter, a mapping of
    the same model's fields); `given` itself when the deployment has no such mapping."""
    if not isinstance(default, dict):
        return given
    return type(given).model_validate({**default, **given.model_dump(exclude_unset=True)})
