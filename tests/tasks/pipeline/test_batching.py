"""Batching and per-item execution against a real local store."""

from __future__ import annotations

import hashlib

import pytest

from tasks.pipeline.batching import (
    ItemFailed,
    ItemOutcome,
    StageFailed,
    WorkItem,
    check_failure_bound,
    count_statuses,
    partition,
    run_batch,
)
from tasks.store import ArtifactStore, object_key


def _items(count: int, params: dict | None = None) -> list[WorkItem]:
    items = []
    for index in range(count):
        digest = "sha256:" + hashlib.sha256(str(index).encode()).hexdigest()
        key = object_key("toy", 1, params or {}, [digest])
        items.append(WorkItem(f"item-{index:03d}", key, (digest,), params or {}, {"n": index}))
    return items


def test_partition_covers_every_item_once_and_respects_the_size_roughly():
    items = _items(100)
    batches = partition(items, 10)
    flat = [item.item_id for batch in batches for item in batch]
    assert sorted(flat) == sorted(item.item_id for item in items)
    assert len(batches) == 16  # ceil(100 / 10) = 10, rounded up to a power of two
    assert max(len(batch) for batch in batches) < 20


def test_adding_an_item_changes_only_one_batch():
    items = _items(35)
    before = partition(items, 10)
    extra = _items(36)[-1]
    after = partition(items + [extra], 10)
    before_sets = {frozenset(i.key for i in batch) for batch in before}
    after_sets = {frozenset(i.key for i in batch) for batch in after}
    assert len(after_sets - before_sets) == 1


def test_partition_rejects_a_zero_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        partition(_items(3), 0)


def test_run_batch_computes_reuses_and_records_failures(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    items = _items(3)
    calls = []

    def compute(item, out_dir):
        calls.append(item.item_id)
        if item.source["n"] == 1:
            raise ItemFailed("silent", f"{item.item_id} is silent")
        if item.source["n"] == 2:
            raise ZeroDivisionError("boom")
        (out_dir / "value.txt").write_text(item.item_id)
        return {"length": len(item.item_id)}

    first = run_batch(store, "toy", 1, items, compute)
    assert [o.status for o in first] == ["computed", "failed", "failed"]
    assert first[1].reason == "silent" and "is silent" in first[1].message
    assert first[2].reason == "error" and "ZeroDivisionError" in first[2].message
    assert store.has(items[0].key) and not store.has(items[1].key)
    assert (store.local_path(items[0].key) / "value.txt").read_text() == "item-000"

    calls.clear()
    second = run_batch(store, "toy", 1, items, compute)
    assert [o.status for o in second] == ["reused", "failed", "failed"]
    assert second[0].stats["length"] == 8
    assert calls == ["item-002"], "a recorded ItemFailed is not retried; an unexpected error is"
    assert second[1].reason == "silent" and store.recorded_failure(items[1].key)["stage"] == "toy"

    calls.clear()
    run_batch(store, "toy", 1, items, compute, retry_failed=True)
    assert calls == ["item-001", "item-002"]


def test_failure_bound():
    ok = ItemOutcome("a", "k1", "toy", "computed")
    bad = ItemOutcome("b", "k2", "toy", "failed", reason="silent", message="b is silent")
    check_failure_bound("toy", [ok, bad], 0.5)
    with pytest.raises(StageFailed, match="1 of 2 items failed"):
        check_failure_bound("toy", [ok, bad], 0.4)
    with pytest.raises(StageFailed, match="all 1 items failed"):
        check_failure_bound("toy", [bad], 1.0)
    with pytest.raises(StageFailed, match="no items"):
        check_failure_bound("toy", [], 1.0)
    assert count_statuses([ok, bad]) == {"computed": 1, "reused": 0, "failed": 1}


def test_items_whose_upstream_failed_are_skipped_in_order(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    upstream = [ItemOutcome("u0", "a" * 64, "up", "computed"), ItemOutcome("u1", "f" * 64, "up", "failed")]
    items = [
        WorkItem(f"item-{n}", object_key("toy", 1, {}, [key]), (key,), {}, {"n": n})
        for n, key in enumerate(("a" * 64, "f" * 64, "e" * 64))
    ]
    calls = []

    def compute(item, out_dir):
        calls.append(item.item_id)
        (out_dir / "x").write_text("x")
        return {}

    outcomes = run_batch(store, "toy", 1, items, compute, upstream=upstream)
    assert [o.status for o in outcomes] == ["computed", "skipped", "skipped"]
    assert calls == ["item-0"] and outcomes[1].source == {"n": 1}
