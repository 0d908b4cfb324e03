"""The object layer of the store: immutable, content-addressed objects under one root.

An object is complete once its ``COMPLETE`` marker exists; a directory without it is a leftover
of a killed run, ignored and later replaced. A complete object counts as present (``has``) only
while its manifest is readable and its files are there at their recorded sizes; a damaged one is
moved to quarantine by ``verify(repair=True)`` or by the next publish of its key. Dataset
versions of these objects: ``tasks.store.artifact_store``. Layout: see ``tasks.store.layout``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from tasks.store.backends import FsspecBackend, LocalBackend, write_file_durably
from tasks.store.canonical import (
    canonical_value,
    hash_local_file,
    is_object_key,
    object_key,
    validate_object_key,
)
from tasks.store.errors import (
    REPAIR_COMMAND,
    CorruptManifestError,
    CorruptObjectError,
    ObjectNotFoundError,
    ReservedFileNameError,
    StoreError,
)
from tasks.store.integrity import check_object, describe_damage
from tasks.store.layout import (
    MANIFEST_NAME,
    MARKER_NAME,
    OBJECTS_DIR,
    RESERVED_NAMES,
    failure_rel,
    json_bytes,
    load_json,
    marker_rel,
    object_rel,
    utc_now,
)
from tasks.store.models import FileEntry, ObjectManifest, Repair
from tasks.store.quarantine import QuarantineFolder

ENV_STORE_ROOT = "MUSIKA_PIANO_DATA"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "musika-piano" / "store"


def default_store_root() -> str:
    """``$MUSIKA_PIANO_DATA`` if set, else ``<project root>/data/store``."""
    configured = os.environ.get(ENV_STORE_ROOT)
    if configured:
        return configured
    return str(PROJECT_ROOT / "data" / "store")


@dataclass
class StagingObject:
    """The object being written inside ``publish_object``.

    Write files into ``dir`` (a local directory), put small JSON statistics into ``stats`` and
    provenance into ``extra``. After the ``with`` block, ``manifest`` is the published object's
    manifest and ``reused`` says another publisher of the same key got there first (theirs is
    kept, ours discarded).
    """

    key: str
    dir: Path
    stage: str
    item: str | None
    stats: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    manifest: ObjectManifest | None = None
    reused: bool = False


class ObjectStore:
    """Content-addressed objects under one root (local path, ``file://`` or any fsspec URL);
    ``ArtifactStore`` adds the dataset versions that list them."""

    def __init__(
        self, root: str | os.PathLike[str] | None = None, *, cache_dir: Path | None = None
    ) -> None:
        root = default_store_root() if root is None else root
        if isinstance(root, os.PathLike) or "://" not in root:
            self._backend: LocalBackend | FsspecBackend = LocalBackend(
                Path(root).expanduser().resolve()
            )
        else:
            fs, base = url_to_fs(root)
            if isinstance(fs, LocalFileSystem):
                self._backend = LocalBackend(Path(base).resolve())
            else:
                self._backend = FsspecBackend(fs, base)
        self.root = self._backend.uri("")
        self._cache_dir = cache_dir or DEFAULT_CACHE_DIR

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None) -> Self:
        """The store at ``root``, or at ``default_store_root()`` when None."""
        return cls(root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"

    @property
    def is_local(self) -> bool:
        return self._backend.is_local

    @property
    def backend(self) -> LocalBackend | FsspecBackend:
        return self._backend

    # ------------------------------------------------------------------ objects

    def has(self, key: str) -> bool:
        """True when a complete object that passes the cheap checks of ``damage`` is under ``key``.

        This is the check that decides "reuse or rebuild": a damaged object reads as absent, so
        the caller makes it again and ``publish_object`` moves the damaged one to quarantine.
        """
        return self.damage(key) is None

    def damage(self, key: str) -> str | None:
        """Why no usable object is under ``key``, or None when there is one.

        Cheap checks only: the marker exists, the manifest is readable and names this key, and
        every file it lists is there at its recorded size (one stat each; on an fsspec root one
        listing request). Content is re-hashed only by ``verify`` and ``export``: a flipped byte
        that keeps the size passes here until a verify finds it and its repair moves it out.
        """
        if not self._backend.exists(marker_rel(validate_object_key(key))):
            return f"no complete object {key} in store {self.root}"
        try:
            found = check_object(self, key, full=False).damage
        except ObjectNotFoundError:  # moved or deleted meanwhile
            return f"no complete object {key} in store {self.root}"
        if not found:
            return None
        return f"object {key} in store {self.root} is damaged: {describe_damage(found)}"

    def manifest(self, key: str) -> ObjectManifest:
        """The manifest of a complete object (its files are not checked: see ``damage``)."""
        if not self._backend.exists(marker_rel(validate_object_key(key))):
            raise ObjectNotFoundError(f"no complete object {key} in store {self.root}")
        rel = f"{object_rel(key)}/{MANIFEST_NAME}"
        try:
            raw = self._backend.read_bytes(rel)
        except FileNotFoundError:
            raise CorruptManifestError(
                f"object {key} in {self.root} has a completion marker but no {MANIFEST_NAME}"
            ) from None
        where = self._backend.uri(rel)
        return ObjectManifest.from_dict(load_json(raw, where), where)

    def object_uri(self, key: str) -> str:
        return self._backend.uri(object_rel(validate_object_key(key)))

    def object_keys(self) -> list[str]:
        """Keys of every complete object (marker present; damaged ones too: ``verify`` tells)."""
        return [key for key in self.iter_object_dirs() if self._backend.exists(marker_rel(key))]

    def iter_object_dirs(self) -> Iterator[str]:
        """Keys of every object directory, complete or not."""
        for prefix in self._backend.list_names(OBJECTS_DIR):
            for name in self._backend.list_names(f"{OBJECTS_DIR}/{prefix}"):
                if is_object_key(name) and name[:2] == prefix:
                    yield name

    def local_path(self, key: str) -> Path:
        """A local directory holding the object's files.

        For a local root that is the object directory itself (read it, never write into it).
        For a remote root the object is downloaded once into the cache directory. A damaged
        object raises CorruptObjectError (see ``damage``).
        """
        if self._backend.is_local:
            self._require_usable(key)
            return self._backend.path(object_rel(key))
        namespace = hashlib.sha256(self.root.encode()).hexdigest()[:16]
        cached = self._cache_dir / namespace / key
        if (cached / MARKER_NAME).exists():
            return cached
        self._require_usable(key)
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.parent / f".partial-{key}-{uuid.uuid4().hex}"
        try:
            self._backend.fetch_tree(object_rel(key), partial)
            os.rename(partial, cached)
        except OSError:
            if not (cached / MARKER_NAME).exists():
                raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return cached

    def _require_usable(self, key: str) -> None:
        problem = self.damage(key)
        if problem is None:
            return
        if not self._backend.exists(marker_rel(key)):
            raise ObjectNotFoundError(problem)
        raise CorruptObjectError(
            f"{problem}. Run `{REPAIR_COMMAND}` to move it to quarantine, then re-run the build "
            "that made it (`musika-piano store verify` names the datasets that need it)",
            key=key,
        )

    def quarantine_object(self, key: str, reason: str) -> Repair | None:
        """Move a damaged object to a new quarantine folder (None when it is gone already).

        ``publish_object`` calls this when the key it publishes holds a damaged object; a repair
        of many objects goes through ``verify(repair=True)`` instead (one folder for all).
        """
        folder = QuarantineFolder(self._backend)
        try:
            manifest: ObjectManifest | None = self.manifest(key)
        except (ObjectNotFoundError, CorruptManifestError):
            manifest = None
        try:
            moved = folder.move_object(validate_object_key(key))
        except FileNotFoundError:
            return None
        repair = Repair(
            kind="object",
            subject=key,
            moved_to=moved,
            reason=reason,
            stage=manifest.stage if manifest is not None else None,
            item=manifest.item if manifest is not None else None,
            referenced_by=[],
            rebuild="made again under the same key by the publish that found it damaged",
        )
        folder.repairs.append(repair)
        folder.write_note()
        return repair

    def delete_object(self, key: str) -> bool:
        """Remove an object (marker first, so it turns invisible at once). False if absent."""
        rel = object_rel(validate_object_key(key))
        if not self._backend.exists(rel):
            return False
        self._backend.remove_file(f"{rel}/{MARKER_NAME}")
        self._backend.remove_tree(rel)
        return True

    # ------------------------------------------------------------------ failure records

    def record_failure(self, key: str, *, stage: str, item: str | None, reason: str, message: str) -> None:
        """Remember that producing `key` failed for a reason its inputs decide (corrupt, empty).

        The key hashes every input and parameter, so the same key would fail the same way;
        a re-run reports the recorded failure instead of trying again (unless told to retry).
        """
        document = {"key": validate_object_key(key), "stage": stage, "item": item, "reason": reason,
                    "message": message, "recorded_at": utc_now()}
        self._backend.write_atomic(failure_rel(key), json_bytes(document))

    def recorded_failure(self, key: str) -> dict[str, Any] | None:
        """The failure recorded for `key`, or None."""
        rel = failure_rel(validate_object_key(key))
        try:
            raw = self._backend.read_bytes(rel)
        except FileNotFoundError:
            return None
        return load_json(raw, self._backend.uri(rel))

    def clear_failure(self, key: str) -> bool:
        """Forget a recorded failure so the next run tries again. False if none was recorded."""
        rel = failure_rel(validate_object_key(key))
        if not self._backend.exists(rel):
            return False
        self._backend.remove_file(rel)
        return True

    @contextmanager
    def publish_object(
        self,
        stage: str,
        stage_version: int,
        params: Mapping[str, Any],
        inputs: Sequence[str],
        *,
        item: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Iterator[StagingObject]:
        """Write an object atomically: all of it becomes visible on clean exit, nothing on error.

        If another publisher committed the same key first, ours is discarded and theirs kept
        (``staging.reused``); the files are never mixed. A damaged object under the key (see
        ``damage``) is moved to quarantine and ours takes its place.
        """
        key = object_key(stage, stage_version, params, inputs)
        clean_params = canonical_value(params, "params")
        if item is not None and not isinstance(item, str):
            raise TypeError(
                f"item of an object of stage {stage!r} must be a string id, got {item!r}"
            )
        staging = StagingObject(
            key=key,
            dir=self._backend.new_staging_dir(f"obj-{key[:16]}-"),
            stage=stage,
            item=item,
            extra=dict(extra or {}),
        )
        try:
            yield staging
            manifest = ObjectManifest(
                key=key,
                stage=stage,
                stage_version=stage_version,
                params=clean_params,
                inputs=list(inputs),
                item=item,
                created_at=utc_now(),
                files=_hash_staged_files(staging.dir),
                stats=canonical_value(staging.stats, f"stats of object {key}"),
                extra=canonical_value(staging.extra, f"extra of object {key}"),
                input_objects=[
                    entry for entry in inputs
                    if is_object_key(entry) and self._backend.exists(marker_rel(entry))
                ],
            )
            write_file_durably(staging.dir / MANIFEST_NAME, json_bytes(manifest.to_dict()))
            write_file_durably(staging.dir / MARKER_NAME, json_bytes({"key": key}))
            installed = self._backend.install_object(
                staging.dir, object_rel(key), marker=MARKER_NAME, manifest=MANIFEST_NAME
            )
            if not installed:
                problem = self.damage(key)
                if problem is not None:
                    self.quarantine_object(key, problem)
                    installed = self._backend.install_object(
                        staging.dir, object_rel(key), marker=MARKER_NAME, manifest=MANIFEST_NAME
                    )
            staging.manifest = manifest if installed else self.manifest(key)
            staging.reused = not installed
        finally:
            shutil.rmtree(staging.dir, ignore_errors=True)


def _hash_staged_files(staging: Path) -> dict[str, FileEntry]:
    files: dict[str, FileEntry] = {}
    for path in sorted(staging.rglob("*")):
        rel = path.relative_to(staging).as_posix()
        if path.is_symlink():
            raise StoreError(f"{path} is a symlink; objects hold regular files only")
        if path.is_dir():
            continue
        if rel in RESERVED_NAMES:
            raise ReservedFileNameError(
                f"{path}: {rel!r} is reserved for the store; name the stage's file differently"
            )
        size, sha256 = hash_local_file(path, sync=True)
        files[rel] = FileEntry(size=size, sha256=sha256)
    return files
