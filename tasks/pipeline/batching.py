"""Item-parallel stage execution: plan work items, group them into stable batches, run a batch.

A stage turns each item into one store object. Every object key is known before anything
runs (it hashes the stage, its version, its parameters and its input keys), so a batch can
skip items whose object is already in the store and a flow can tell which batches are
complete without running them. Failures are per item: recorded with their reason, never
raised, so one corrupt file does not sink the other items of its batch. Faults of the machine
(no space, a read-only filesystem, a denied permission, an I/O error) are the exception: every
later item would fail the same way, so they stop the stage (`EnvironmentFault`).
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

from tasks.pipeline.environment import Fault, probed_fault, reported_fault
from tasks.store import ArtifactStore
from tasks.store.backends import FsspecBackend, LocalBackend


class StageFailed(RuntimeError):
    """A whole stage failed: nothing succeeded, or too many items failed."""


class EnvironmentFault(StageFailed):
    """The machine failed the stage, not an item: see `tasks.pipeline.environment`. The message
    names the cause and the path (and for space, what is free and roughly what is needed)."""

    def __init__(self, message: str, fault: Fault) -> None:
        super().__init__(message)
        self.fault = fault

    def __reduce__(self) -> tuple[type[EnvironmentFault], tuple[str, Fault]]:
        # Prefect pickles a failed task's exception; the default would call __init__(message).
        return type(self), (str(self), self.fault)


class _Faulted(Exception):
    """Internal: an item hit a fault; `staged_bytes` is what it had written by then."""

    def __init__(self, fault: Fault, staged_bytes: int = 0) -> None:
        super().__init__(fault.kind)
        self.fault = fault
        self.staged_bytes = staged_bytes


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

    A fault of the machine raises `EnvironmentFault` instead, whichever step hit it: the item's
    staging directory is discarded, the objects finished before it stay in the store.
    """
    backend = store.backend
    batch = _BatchRun(
        store, stage, stage_version, compute, log, retry_failed,
        available=None if upstream is None else {outcome.key for outcome in upstream if outcome.ok},
        where=str(backend.root) if isinstance(backend, LocalBackend) else store.root,
        remote_uri=(lambda path: None) if isinstance(backend, LocalBackend) else partial(_remote_uri, backend),
    )
    outcomes = []
    for index, item in enumerate(items):
        try:
            outcomes.append(batch.run_item(item))
        except Exception as error:
            faulted = error if isinstance(error, _Faulted) else batch.reported(error)
            if faulted is None:
                raise
            left = len(items) - index
            made = batch.made
            per_item = max(sum(made) // len(made) if made else 0, faulted.staged_bytes)
            fault = replace(faulted.fault, needed_bytes=left * per_item or None,
                            needed_for=f"the {left} item{'s' if left > 1 else ''} left in this batch")
            cause = error.__cause__ if isinstance(error, _Faulted) else error
            raise EnvironmentFault(fault.describe(stage, item.item_id), fault) from cause
    return outcomes


def _remote_uri(backend: FsspecBackend, path: str) -> str | None:
    """The URI of a path on an fsspec store's filesystem; None for a local one (staging)."""
    if not path.startswith(backend.base) or Path(path).exists():
        return None
    return backend.uri(path[len(backend.base):].lstrip("/"))


def _staged_bytes(directory: Path) -> int:
    try:
        return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
    except OSError:
        return 0


@dataclass
class _BatchRun:
    """What the items of one `run_batch` call share.

    `where`: the store's location, named by a fault whose error names no path; `remote_uri`: the
    URI of a path on an fsspec store, None for a local path; `made`: the sizes of the objects made or found so far, from
    which a fault tells roughly what the items left need.
    """

    store: ArtifactStore
    stage: str
    stage_version: int
    compute: ComputeFn
    log: Callable[[str], None]
    retry_failed: bool
    available: set[str] | None
    where: str
    remote_uri: Callable[[str], str | None]
    made: list[int] = field(default_factory=list)

    def reported(self, error: BaseException) -> _Faulted | None:
        fault = reported_fault(error, self.where, self.remote_uri)
        return None if fault is None else _Faulted(fault)

    def run_item(self, item: WorkItem) -> ItemOutcome:
        """One item's outcome; raises `_Faulted` (or the OSError of a fault outside the item's
        work, such as reading the store) for a fault of the machine."""
        store, stage = self.store, self.stage
        source = dict(item.source)
        if self.available is not None and item.inputs[0] not in self.available:
            return ItemOutcome(item.item_id, item.key, stage, "skipped", source=source)
        if store.has(item.key):
            manifest = store.manifest(item.key)
            self.made.append(sum(entry.size for entry in manifest.files.values()))
            return ItemOutcome(item.item_id, item.key, stage, "reused", dict(manifest.stats), source)
        recorded = None if self.retry_failed else store.recorded_failure(item.key)
        if recorded is not None:
            return ItemOutcome(item.item_id, item.key, stage, "failed", {}, source, recorded["reason"],
                               recorded["message"])
        started = time.perf_counter()
        try:
            with store.publish_object(stage, self.stage_version, item.params, list(item.inputs),
                                      item=item.item_id) as staged:
                if staged.key != item.key:
                    raise RuntimeError(
                        f"planned key {item.key} differs from the store's key {staged.key} for {item.item_id}"
                    )
                try:
                    staged.stats.update(self.compute(item, staged.dir))
                except ItemFailed:
                    raise
                except Exception as error:
                    # Probed here, while the item's partial files still fill the filesystem.
                    fault = (reported_fault(error, str(staged.dir), self.remote_uri)
                             or probed_fault(error, staged.dir))
                    if fault is not None:
                        raise _Faulted(fault, _staged_bytes(staged.dir)) from error
                    raise
                staged.extra.update({"source": source})
                stats = dict(staged.stats)
        except _Faulted:
            raise
        except ItemFailed as failure:
            faulted = self.reported(failure)
            if faulted is not None:
                raise faulted from failure
            self.log(f"{stage}: {item.item_id} failed ({failure.reason}): {failure}")
            store.record_failure(item.key, stage=stage, item=item.item_id, reason=failure.reason,
                                 message=str(failure))
            return ItemOutcome(item.item_id, item.key, stage, "failed", {}, source, failure.reason, str(failure))
        except Exception as error:  # a per-item failure must not sink the batch
            faulted = self.reported(error)
            if faulted is not None:
                raise faulted from error
            self.log(f"{stage}: {item.item_id} raised {type(error).__name__}: {error}\n{traceback.format_exc()}")
            return ItemOutcome(item.item_id, item.key, stage, "failed", {}, source, "error",
                               f"{type(error).__name__}: {error}")
        if staged.manifest is not None:
            self.made.append(sum(entry.size for entry in staged.manifest.files.values()))
        stats["seconds"] = round(time.perf_counter() - started, 4)
        return ItemOutcome(item.item_id, item.key, stage, "computed", stats, source)


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
