"""Whole-store operations besides verify (``tasks.store.verify``): garbage-collect, export, diff."""

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
from tasks.store.canonical import HASH_CHUNK_BYTES, is_object_key
from tasks.store.errors import (
    REPAIR_COMMAND,
    CorruptManifestError,
    CorruptObjectError,
    DestinationNotEmptyError,
    ObjectNotFoundError,
)
from tasks.store.layout import json_bytes, marker_rel, object_rel, parse_utc, utc_now
from tasks.store.models import (
    DatasetDiff,
    DatasetVersion,
    FileEntry,
    GcReport,
    ItemChange,
    ValueChange,
)

if TYPE_CHECKING:
    from tasks.store.artifact_store import ArtifactStore

EXPORT_MANIFEST_NAME = "dataset.json"
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_FOLDER_CHARS = 80


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
        if not store.backend.exists(marker_rel(key)):
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
    An unreadable version file stops it (CorruptVersionError): which objects that version lists
    is unknown. The quarantine folder is not looked at.
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
        if backend.exists(marker_rel(key)):  # complete, intact or not
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

    Every file is hashed while it is copied; one that differs from its manifest stops the export
    (CorruptObjectError). The folder is assembled beside ``dest`` and renamed into place, so
    ``dest`` never holds a partial export, and a failed export removes what it created. Refuses a
    ``dest`` that exists and is not an empty directory.
    """
    dest = dest.expanduser().absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DestinationNotEmptyError(
            f"export destination {dest} exists and is not an empty directory"
        )
    created = [folder for folder in dest.parents if not folder.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex}"
    partial.mkdir()
    try:
        folders = item_folder_names([item.item_id for item in version.items])
        for item in version.items:
            try:
                manifest = store.manifest(item.key)
            except ObjectNotFoundError:
                raise ObjectNotFoundError(
                    f"refusing to export {version.ref}: object {item.key} of item "
                    f"{item.item_id!r} is not in the store; {_rebuild_dataset(version)}"
                ) from None
            for path, entry in sorted(manifest.files.items()):
                target = partial / folders[item.item_id] / path
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_verified(store, version, item.item_id, item.key, path, entry, target)
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
        for folder in created:  # deepest first; stop at one that is not empty (someone else's)
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return dest


def _copy_verified(
    store: ArtifactStore,
    version: DatasetVersion,
    item_id: str,
    key: str,
    path: str,
    entry: FileEntry,
    target: Path,
) -> None:
    """Copy one file of an object to ``target``, hashing it on the way; refuse one that differs."""
    digest = hashlib.sha256()
    size = 0
    try:
        with store.backend.open_read(f"{object_rel(key)}/{path}") as source, open(target, "wb") as out:
            while chunk := source.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
    except FileNotFoundError:
        actual = "missing"
    else:
        actual = f"sha256:{digest.hexdigest()}"
    expected = f"sha256:{entry.sha256}"
    if actual == expected:
        return
    found = (
        "is missing"
        if actual == "missing"
        else f"has {actual} ({size} bytes), the manifest says {expected} ({entry.size} bytes)"
    )
    raise CorruptObjectError(
        f"refusing to export {version.ref}: file {path!r} of item {item_id!r} (object {key}) "
        f"{found}; nothing was exported. Run `{REPAIR_COMMAND}` to move the object to "
        f"quarantine, then {_rebuild_dataset(version)}",
        key=key,
        item_id=item_id,
        path=path,
        expected=expected,
        actual=actual,
    )


def _rebuild_dataset(version: DatasetVersion) -> str:
    return (
        f"re-run the build of {version.ref} (stage {version.stage}; its sources and settings: "
        f"`musika-piano dataset show {version.ref}`) to make it again; intact items are reused"
    )


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
