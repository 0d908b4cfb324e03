"""Prefect caching on top of the artifact store.

Prefect's stock `INPUTS` policy hashes argument values: a path string, not the files behind
it, so a task stays `Cached` after its output was deleted. Here the cache key of a batch task
is derived from the store keys of the objects it produces (which already hash the stage,
its version, its parameters and its inputs), and a batch whose objects are not all in the
store is submitted with `refresh_cache=True`, so it recomputes and overwrites the record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture
from prefect.tasks import Task

from tasks.pipeline.batching import ItemOutcome, WorkItem
from tasks.store import ArtifactStore, is_object_key


def batch_cache_key(task_name: str, items: Sequence[WorkItem]) -> str:
    """The cache key of a batch task: its name and the sorted object keys it publishes."""
    digest = hashlib.sha256(task_name.encode())
    for key in sorted(item.key for item in items):
        digest.update(key.encode())
    return f"{task_name}-{digest.hexdigest()}"


@dataclass
class StoreObjectsPolicy(CachePolicy):
    """Cache key = the store keys of the batch passed as the task's `items` argument."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        items = inputs.get("items")
        if not items:
            return None
        return batch_cache_key(task_ctx.task.name, items)


STORE_OBJECTS = StoreObjectsPolicy()


def is_settled(store: ArtifactStore, item: WorkItem, retry_failed: bool = False) -> bool:
    """True when the item's object is in the store, or a recorded failure (its own, or an
    upstream object's, which keeps it from running) says what became of it."""
    if store.has(item.key):
        return True
    if retry_failed:
        return False
    keys = [item.key, *(key for key in item.inputs if is_object_key(key))]
    return any(store.recorded_failure(key) is not None for key in keys)


def submit_batch(
    task: Task, store: ArtifactStore, items: Sequence[WorkItem], retry_failed: bool = False, **kwargs: Any
) -> PrefectFuture:
    """Submit a batch task; force a recompute when any of its items is not settled in the store."""
    complete = all(is_settled(store, item, retry_failed) for item in items)
    return task.with_options(refresh_cache=not complete).submit(items=list(items), retry_failed=retry_failed,
                                                                **kwargs)


def batch_outcomes(future: PrefectFuture) -> list[ItemOutcome]:
    """A batch task's outcomes; when Prefect answered from its cache, nothing was computed this
    run, so the recorded `computed` outcomes are reported as `reused`."""
    outcomes = future.result()
    if future.state.name != "Cached":
        return outcomes
    return [replace(o, status="reused") if o.status == "computed" else o for o in outcomes]
