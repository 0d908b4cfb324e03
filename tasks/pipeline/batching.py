"""Item-parallel stage execution: plan work items, group them into stable batches, run a batch.

A stage turns each item into one store object. Every object key is known before anything
runs (it hashes the stage, its version, its parameters and its input keys), so a batch can
skip items whose object is already in the store and a flow can tell which batches are
complete without running them. Failures are per item: recorded with their reason, never
raised, so one corrupt file does not sink the other items of its batch.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tasks.store import ArtifactStore


class StageFailed(RuntimeError):
    """A whole stage failed: nothing succeeded, or too many items failed."""


class ItemFailed(Exception):
    """An expected, per-item failure with a machine-readable reason code (e.g. 'silent', 'no_notes')."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class WorkItem:
    """One unit of a stage: the object it produces and what it is made from.

    `key` hashes the stage, its version, `params` and `inputs` (upstream object keys or content
    digests); `source` is small JSON provenance (paths, soundfont, the upstream item).
    """

    item_id: str
    key: str
    inputs: tuple[str, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)


Status = Literal["computed", "reused", "failed", "skipped"]
"""`skipped`: not attempted because the upstream item failed (its failure is recorded upstream)."""


@dataclass
class ItemOutcome:
    """What happened to one item: its object key when it succeeded, its reason when it failed."""

    item_id: str
    key: str
    stage: str
    status: Status
    stats: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("computed", "reused")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ComputeFn = Callable[[WorkItem, Path], dict[str, Any]]
"""Writes an item's files into the given staging directory and returns its statistics."""


def partition(items: Sequence[WorkItem], batch_size: int) -> list[list[WorkItem]]:
    """Group items into batches whose membership depends only on each item's own key.

    Items are bucketed by a slice of their key into a power-of-two number of buckets (about
    `batch_size` items each), so adding one source changes one batch (and one Prefect cache
    entry) rather than every batch after it in sorted order; only when the count crosses a
    power of two do all buckets split.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not items:
        return []
    n_batches = 1 << max(0, math.ceil(math.log2(math.ceil(len(items) / batch_size))))
    buckets: list[list[WorkItem]] = [[] for _ in range(n_batches)]
    for item in items:
        buckets[int(item.key[:12], 16) % n_batches].append(item)
    return [sorted(bucket, key=lambda it: it.item_id) for bucket in buckets if bucket]


def run_batch(
    store: ArtifactStore,
    stage: str,
    stage_version: int,
    items: Sequence[WorkItem],
    compute: ComputeFn,
    log: Callable[[str], None] = lambda message: None,
    retry_failed: bool = False,
    upstream: Sequence[ItemOutcome] | None = None,
) -> list[ItemOutcome]:
    """Publish one object per item, reusing objects already in the store.

    With `upstream` (the outcomes of the stage that made the items' first input), an item whose
    input did not come out of it is `skipped`: its failure is already recorded upstream.

    `ItemFailed` and any other exception from `compute` become a failed outcome carrying the
    reason; the staging directory of a failed item is discarded by the store. An `ItemFailed`
    is recorded in the store (the same inputs fail the same way), so a re-run reports it
    without trying again unless `retry_failed`; other exceptions may be transient and are not.
    """
    available = None if upstream is None else {outcome.key for outcome in upstream if outcome.ok}
    outcomes = []
    for item in items:
        source = dict(item.source)
        if available is not None and item.inputs[0] not in available:
            outcomes.append(ItemOutcome(item.item_id, item.key, stage, "skipped", source=source))
            continue
        if store.has(item.key):
            stats = store.manifest(item.key).stats
            outcomes.append(ItemOutcome(item.item_id, item.key, stage, "reused", dict(stats), source))
            continue
        recorded = None if retry_failed else store.recorded_failure(item.key)
        if recorded is not None:
            outcomes.append(ItemOutcome(item.item_id, item.key, stage, "failed", {}, source,
                                        recorded["reason"], recorded["message"]))
            continue
        started = time.perf_counter()
        try:
            with store.publish_object(stage, stage_version, item.params, list(item.inputs), item=item.item_id) as staged:
                if staged.key != item.key:
                    raise RuntimeError(
                        f"planned key {item.key} differs from the store's key {staged.key} for {item.item_id}"
                    )
                staged.stats.update(compute(item, staged.dir))
                staged.extra.update({"source": source})
                stats = dict(staged.stats)
        except ItemFailed as failure:
            log(f"{stage}: {item.item_id} failed ({failure.reason}): {failure}")
            store.record_failure(item.key, stage=stage, item=item.item_id, reason=failure.reason, message=str(failure))
            outcomes.append(ItemOutcome(item.item_id, item.key, stage, "failed", {}, source, failure.reason, str(failure)))
            continue
        except Exception as error:  # noqa: BLE001 - a per-item failure must not sink the batch
            log(f"{stage}: {item.item_id} raised {type(error).__name__}: {error}\n{traceback.format_exc()}")
            outcomes.append(
                ItemOutcome(item.item_id, item.key, stage, "failed", {}, source, "error", f"{type(error).__name__}: {error}")
            )
            continue
        stats["seconds"] = round(time.perf_counter() - started, 4)
        outcomes.append(ItemOutcome(item.item_id, item.key, stage, "computed", stats, source))
    return outcomes


def check_failure_bound(stage: str, outcomes: Sequence[ItemOutcome], max_failure_ratio: float) -> None:
    """Fail the stage when nothing succeeded or the failure ratio passes the bound."""
    if not outcomes:
        raise StageFailed(f"{stage}: there were no items to process")
    failed = [o for o in outcomes if not o.ok]
    if len(failed) == len(outcomes):
        reasons = sorted({o.reason or "error" for o in failed})
        examples = "; ".join(f"{o.item_id}: {o.message}" for o in failed[:3])
        raise StageFailed(
            f"{stage}: all {len(outcomes)} items failed (reasons: {', '.join(reasons)}). First failures: {examples}"
        )
    ratio = len(failed) / len(outcomes)
    if ratio > max_failure_ratio:
        raise StageFailed(
            f"{stage}: {len(failed)} of {len(outcomes)} items failed ({ratio:.0%}), "
            f"more than the allowed {max_failure_ratio:.0%}; nothing was published"
        )


def count_statuses(outcomes: Sequence[ItemOutcome]) -> dict[str, int]:
    """How many items a stage computed, reused from the store, or failed."""
    return {status: sum(o.status == status for o in outcomes) for status in ("computed", "reused", "failed")}
