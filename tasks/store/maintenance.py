"""Whole-store operations: verify, garbage-collect, export, diff."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.store.backends import STAGING_DIR
from tasks.store.canonical import HASH_CHUNK_BYTES, is_object_key, validate_object_key
from tasks.store.errors import CorruptManifestError, DestinationNotEmptyError
from tasks.store.layout import (
    MANIFEST_NAME,
    RESERVED_NAMES,
    json_bytes,
    object_rel,
    parse_utc,
    utc_now,
)
from tasks.store.models import (
    DatasetDiff,
    DatasetVersion,
    GcReport,
    ItemChange,
    ValueChange,
    VerifyProblem,
    VerifyReport,
)

if TYPE_CHECKING:
    from tasks.store.artifact_store import ArtifactStore

EXPORT_MANIFEST_NAME = "dataset.json"
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_FOLDER_CHARS = 80


# ---------------------------------------------------------------------- verify


def verify_store(store: ArtifactStore, keys: Sequence[str] | None = None) -> VerifyReport:
    """Re-hash every file of every complete object (or of ``keys``) against its manifest.

    Without ``keys`` it also checks that every dataset version's objects are present.
    """
    backend = store.backend
    problems: list[VerifyProblem] = []
    whole_store = keys is None
    candidates = (
        list(store.iter_object_dirs()) if whole_store else [validate_object_key(k) for k in keys]
    )
    objects_checked = files_checked = bytes_hashed = incomplete = 0

    for key in candidates:
        rel = object_rel(key)
        if not store.has(key):
            if whole_store:
                incomplete += 1
            else:
                problems.append(
                    VerifyProblem("missing_object", key, None, "no complete object under this key")
                )
            continue
        objects_checked += 1
        try:
            manifest = store.manifest(key)
        except CorruptManifestError as error:
            kind = (
                "corrupt_manifest"
                if backend.exists(f"{rel}/{MANIFEST_NAME}")
                else "missing_manifest"
            )
            problems.append(VerifyProblem(kind, key, MANIFEST_NAME, str(error)))
            continue
        if manifest.key != key:
            problems.append(
                VerifyProblem(
                    "key_mismatch", key, MANIFEST_NAME, f"manifest names key {manifest.key}"
                )
            )
        present = {
            path: size
            for path, size in backend.list_files(rel).items()
            if path not in RESERVED_NAMES
        }
        for path, entry in sorted(manifest.files.items()):
            if path not in present:
                problems.append(
                    VerifyProblem("missing_file", key, path, "listed in the manifest, not found")
                )
                continue
            files_checked += 1
            if present[path] != entry.size:
                problems.append(
                    VerifyProblem(
                        "size_mismatch",
                        key,
                        path,
                        f"size {present[path]} bytes, manifest says {entry.size}",
                    )
                )
                continue
            with backend.open_read(f"{rel}/{path}") as handle:
                digest = _sha256_of_stream(handle)
            bytes_hashed += entry.size
            if digest != entry.sha256:
                problems.append(
                    VerifyProblem(
                        "checksum_mismatch",
                        key,
                        path,
                        f"sha256 {digest}, manifest says {entry.sha256}",
                    )
                )
        for path in sorted(set(present) - set(manifest.files)):
            problems.append(
                VerifyProblem("unexpected_file", key, path, "present but not in the manifest")
            )

    versions_checked = 0
    if whole_store:
        presence: dict[str, bool] = {}
        for name in store.dataset_names():
            for number in store.version_numbers(name):
                ref = f"{name}@{number}"
                try:
                    version = store.read_version(name, number)
                except CorruptManifestError as error:
                    problems.append(VerifyProblem("corrupt_dataset", ref, None, str(error)))
                    continue
                versions_checked += 1
                for item in version.items:
                    if item.key not in presence:
                        presence[item.key] = store.has(item.key)
                    if not presence[item.key]:
                        problems.append(
                            VerifyProblem(
                                "dataset_missing_object",
                                ref,
                                item.item_id,
                                f"object {item.key} is not in the store",
                            )
                        )
    return VerifyReport(
        objects_checked=objects_checked,
        files_checked=files_checked,
        bytes_hashed=bytes_hashed,
        dataset_versions_checked=versions_checked,
        incomplete_objects=incomplete,
        problems=problems,
    )


def _sha256_of_stream(handle: Any) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(HASH_CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------- gc


def reachable_keys(store: ArtifactStore) -> set[str]:
    """Keys listed in any dataset version, plus, transitively, the object keys among their inputs."""
    pending = [
        item.key
        for name in store.dataset_names()
        for number in store.version_numbers(name)
        for item in store.read_version(name, number).items
    ]
    reachable: set[str] = set()
    while pending:
        key = pending.pop()
        if key in reachable:
            continue
        reachable.add(key)
        if not store.has(key):
            continue
        try:
            inputs = store.manifest(key).inputs
        except CorruptManifestError:
            continue
        pending.extend(entry for entry in inputs if is_object_key(entry) and entry not in reachable)
    return reachable


def collect_garbage(
    store: ArtifactStore, *, dry_run: bool = False, min_age_seconds: float = 3600
) -> GcReport:
    """Delete unreachable objects older than ``min_age_seconds``, and stale leftovers of killed runs.

    Age of a complete object = time since its manifest's ``created_at``; of a leftover = time
    since anything in it last changed. Younger things may belong to a running pipeline.
    """
    backend = store.backend
    now = time.time()
    reachable = reachable_keys(store)
    deleted: list[str] = []
    deleted_bytes = kept_young = removed_incomplete = removed_staging = garbage_bytes = 0

    for key in list(store.iter_object_dirs()):
        if key in reachable:
            continue
        rel = object_rel(key)
        if store.has(key):
            try:
                manifest = store.manifest(key)
                born: float | None = parse_utc(manifest.created_at)
                size = manifest.total_bytes
            except CorruptManifestError:
                born = backend.newest_mtime(rel)
                size = sum(backend.list_files(rel).values())
            if born is None or now - born < min_age_seconds:
                kept_young += 1
                continue
            deleted.append(key)
            deleted_bytes += size
            if not dry_run:
                store.delete_object(key)
        else:
            changed = backend.newest_mtime(rel)
            if changed is None or now - changed < min_age_seconds:
                continue
            removed_incomplete += 1
            garbage_bytes += sum(backend.list_files(rel).values())
            if not dry_run:
                backend.remove_tree(rel)

    if backend.is_local:
        for name in backend.list_names(STAGING_DIR):
            rel = f"{STAGING_DIR}/{name}"
            changed = backend.newest_mtime(rel)
            if changed is None or now - changed < min_age_seconds:
                continue
            removed_staging += 1
            garbage_bytes += sum(backend.list_files(rel).values())
            if not dry_run:
                backend.remove_tree(rel)

    return GcReport(
        dry_run=dry_run,
        min_age_seconds=min_age_seconds,
        reachable_objects=len(reachable),
        deleted_objects=deleted,
        deleted_bytes=deleted_bytes,
        kept_young_objects=kept_young,
        removed_incomplete=removed_incomplete,
        removed_staging=removed_staging,
        garbage_bytes=garbage_bytes,
    )


# ---------------------------------------------------------------------- export


def item_folder_names(item_ids: Sequence[str]) -> dict[str, str]:
    """A readable, filesystem-safe, unique folder name per item id (deterministic for a set of ids)."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for item_id in sorted(item_ids):
        base = _UNSAFE_CHARS.sub("_", item_id).strip("._-")[:_MAX_FOLDER_CHARS] or "item"
        name = base
        if name.lower() in taken:
            name = f"{base}-{hashlib.sha256(item_id.encode()).hexdigest()[:10]}"
        taken.add(name.lower())
        folders[item_id] = name
    return folders


def export_version(store: ArtifactStore, version: DatasetVersion, dest: Path) -> Path:
    """Copy a version's files to ``dest/<item folder>/...`` plus ``dest/dataset.json``.

    The folder is assembled beside ``dest`` and renamed into place, so ``dest`` never holds a
    partial export. Refuses a ``dest`` that exists and is not an empty directory.
    """
    dest = dest.expanduser().absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DestinationNotEmptyError(
            f"export destination {dest} exists and is not an empty directory"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex}"
    partial.mkdir()
    try:
        folders = item_folder_names([item.item_id for item in version.items])
        for item in version.items:
            manifest = store.manifest(item.key)
            for path in sorted(manifest.files):
                target = partial / folders[item.item_id] / path
                target.parent.mkdir(parents=True, exist_ok=True)
                store.backend.fetch_file(f"{object_rel(item.key)}/{path}", target)
        document = {
            **version.manifest_dict(),
            "export": {
                "ref": version.ref,
                "store": store.root,
                "exported_at": utc_now(),
                "folders": folders,
            },
        }
        (partial / EXPORT_MANIFEST_NAME).write_bytes(json_bytes(document))
        if dest.exists():
            dest.rmdir()
        os.rename(partial, dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return dest


# ---------------------------------------------------------------------- diff


def diff_versions(a: DatasetVersion, b: DatasetVersion) -> DatasetDiff:
    """Items added, removed, changed (same id, other key) and unchanged from ``a`` to ``b``;
    every statistic side by side with its delta; the parameters that differ."""
    keys_a = {item.item_id: item.key for item in a.items}
    keys_b = {item.item_id: item.key for item in b.items}
    common = sorted(set(keys_a) & set(keys_b))
    return DatasetDiff(
        a=a.ref,
        b=b.ref,
        stage_a=a.stage,
        stage_b=b.stage,
        added=sorted(set(keys_b) - set(keys_a)),
        removed=sorted(set(keys_a) - set(keys_b)),
        changed=[
            ItemChange(item_id, keys_a[item_id], keys_b[item_id])
            for item_id in common
            if keys_a[item_id] != keys_b[item_id]
        ],
        unchanged=[item_id for item_id in common if keys_a[item_id] == keys_b[item_id]],
        stats_deltas=_value_changes(_flatten(a.stats), _flatten(b.stats), only_different=False),
        params_changes=_value_changes(_flatten(a.params), _flatten(b.params), only_different=True),
        failures_a=len(a.failures),
        failures_b=len(b.failures),
    )


_ABSENT = object()


def _flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in document.items():
        path = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _value_changes(
    a: Mapping[str, Any], b: Mapping[str, Any], *, only_different: bool
) -> list[ValueChange]:
    changes = []
    for path in sorted(set(a) | set(b)):
        value_a, value_b = a.get(path, _ABSENT), b.get(path, _ABSENT)
        if only_different and value_a == value_b and type(value_a) is type(value_b):
            continue
        delta = value_b - value_a if _is_number(value_a) and _is_number(value_b) else None
        changes.append(
            ValueChange(
                path=path,
                a=None if value_a is _ABSENT else value_a,
                b=None if value_b is _ABSENT else value_b,
                delta=delta,
            )
        )
    return changes
