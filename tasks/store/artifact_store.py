"""The artifact store: immutable content-addressed objects and named, numbered dataset versions.

An object exists once its ``COMPLETE`` marker does; a directory without it is a leftover of a
killed run, ignored and later replaced. Layout: see ``tasks.store.layout``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from tasks.store.backends import FsspecBackend, LocalBackend, write_file_durably
from tasks.store.canonical import (
    canonical_json,
    canonical_value,
    hash_local_file,
    is_object_key,
    object_key,
    parse_ref,
    sha256_hex,
    validate_dataset_name,
    validate_object_key,
    validate_stage,
    validate_tag,
)
from tasks.store.errors import (
    CorruptManifestError,
    DatasetNotFoundError,
    DuplicateItemError,
    InvalidLineageError,
    MissingObjectsError,
    ObjectNotFoundError,
    ReservedFileNameError,
    StoreError,
    TagNotFoundError,
    VersionNotFoundError,
)
from tasks.store.layout import (
    DATASETS_DIR,
    MANIFEST_NAME,
    MARKER_NAME,
    OBJECTS_DIR,
    RESERVED_NAMES,
    failure_rel,
    json_bytes,
    load_json,
    object_rel,
    report_rel,
    tags_rel,
    utc_now,
    version_rel,
    versions_rel,
)
from tasks.store.maintenance import collect_garbage, diff_versions, export_version, verify_store
from tasks.store.models import (
    DatasetDiff,
    DatasetItem,
    DatasetShow,
    DatasetSummary,
    DatasetVersion,
    Failure,
    FileEntry,
    GcReport,
    Lineage,
    LineageNode,
    ObjectManifest,
    VerifyReport,
    VersionSummary,
)

ENV_STORE_ROOT = "MUSIKA_PIANO_DATA"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "musika-piano" / "store"

_MAX_VERSION_ATTEMPTS = 1000


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


class ArtifactStore:
    """Objects and dataset versions under one root (local path, ``file://`` or any fsspec URL)."""

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
    def open(cls, root: str | os.PathLike[str] | None = None) -> ArtifactStore:
        """The store at ``root``, or at ``default_store_root()`` when None."""
        return cls(root)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    @property
    def is_local(self) -> bool:
        return self._backend.is_local

    @property
    def backend(self) -> LocalBackend | FsspecBackend:
        return self._backend

    # ------------------------------------------------------------------ objects

    def has(self, key: str) -> bool:
        """True when the object is complete (its marker exists)."""
        return self._backend.exists(f"{object_rel(validate_object_key(key))}/{MARKER_NAME}")

    def manifest(self, key: str) -> ObjectManifest:
        if not self.has(key):
            raise ObjectNotFoundError(f"no complete object {key} in store {self.root}")
        rel = f"{object_rel(key)}/{MANIFEST_NAME}"
        try:
            raw = self._backend.read_bytes(rel)
        except FileNotFoundError:
            raise CorruptManifestError(
                f"object {key} in {self.root} has a completion marker but no {MANIFEST_NAME}"
            ) from None
        return ObjectManifest.from_dict(
            load_json(raw, self._backend.uri(rel)), self._backend.uri(rel)
        )

    def object_uri(self, key: str) -> str:
        return self._backend.uri(object_rel(validate_object_key(key)))

    def object_keys(self) -> list[str]:
        """Keys of every complete object."""
        return [key for key in self.iter_object_dirs() if self.has(key)]

    def iter_object_dirs(self) -> Iterator[str]:
        """Keys of every object directory, complete or not."""
        for prefix in self._backend.list_names(OBJECTS_DIR):
            for name in self._backend.list_names(f"{OBJECTS_DIR}/{prefix}"):
                if is_object_key(name) and name[:2] == prefix:
                    yield name

    def local_path(self, key: str) -> Path:
        """A local directory holding the object's files.

        For a local root that is the object directory itself (read it, never write into it).
        For a remote root the object is downloaded once into the cache directory.
        """
        if self._backend.is_local:
            if not self.has(key):
                raise ObjectNotFoundError(f"no complete object {key} in store {self.root}")
            return self._backend.path(object_rel(key))
        namespace = hashlib.sha256(self.root.encode()).hexdigest()[:16]
        cached = self._cache_dir / namespace / key
        if (cached / MARKER_NAME).exists():
            return cached
        if not self.has(key):
            raise ObjectNotFoundError(f"no complete object {key} in store {self.root}")
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
        (``staging.reused``); the files are never mixed.
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
            )
            write_file_durably(staging.dir / MANIFEST_NAME, json_bytes(manifest.to_dict()))
            write_file_durably(staging.dir / MARKER_NAME, json_bytes({"key": key}))
            installed = self._backend.install_object(
                staging.dir, object_rel(key), marker=MARKER_NAME, manifest=MANIFEST_NAME
            )
            staging.manifest = manifest if installed else self.manifest(key)
            staging.reused = not installed
        finally:
            shutil.rmtree(staging.dir, ignore_errors=True)

    # ------------------------------------------------------------------ datasets

    def dataset_uri(self, name: str, version: int) -> str:
        """Where the manifest of ``name@version`` is stored."""
        return self._backend.uri(version_rel(validate_dataset_name(name), version))

    def version_numbers(self, name: str) -> list[int]:
        """The versions of a dataset, ascending ([] when it has none)."""
        numbers = []
        for entry in self._backend.list_names(versions_rel(name)):
            stem, dot, suffix = entry.partition(".")
            if stem.isdigit() and dot and suffix == "json":
                numbers.append(int(stem))
        return sorted(numbers)

    def _existing_numbers(self, name: str) -> list[int]:
        numbers = self.version_numbers(validate_dataset_name(name))
        if not numbers:
            raise DatasetNotFoundError(f"no dataset named {name!r} in store {self.root}")
        return numbers

    def read_version(self, name: str, version: int) -> DatasetVersion:
        """The manifest of ``name@version`` (no reference parsing, no tag lookup)."""
        rel = version_rel(name, version)
        try:
            raw = self._backend.read_bytes(rel)
        except FileNotFoundError:
            raise VersionNotFoundError(
                f"dataset {name!r} has no version {version} in {self.root}"
            ) from None
        return DatasetVersion.from_dict(
            load_json(raw, self._backend.uri(rel)), self._backend.uri(rel)
        )

    def dataset_names(self) -> list[str]:
        return [
            name for name in self._backend.list_names(DATASETS_DIR) if self.version_numbers(name)
        ]

    def publish_dataset(
        self,
        name: str,
        *,
        stage: str,
        params: Mapping[str, Any],
        items: Sequence[DatasetItem | Mapping[str, Any]],
        lineage: Lineage | Mapping[str, Any] | None = None,
        stats: Mapping[str, Any] | None = None,
        failures: Sequence[Failure | Mapping[str, Any]] = (),
    ) -> DatasetVersion:
        """Publish the next version of ``name``, or return the latest if its content is the same.

        Content = stage, params, the items' ids and keys, and the lineage except ``code_version``
        (a new commit that computes the same objects is not a new dataset). Every listed object
        must be present. ``lineage`` may hold ``parents`` (references, resolved here to
        ``name@version``), ``sources`` (a list of JSON descriptions), ``code_version`` (a
        string) and any other JSON fields.
        """
        validate_dataset_name(name)
        validate_stage(stage)
        clean_params = canonical_value(params, f"params of dataset {name!r}")
        clean_items = self._clean_items(name, items)
        clean_failures = [
            Failure(**canonical_value(dataclasses.asdict(Failure.coerce(failure)), "failure"))
            for failure in failures
        ]
        clean_lineage = self._clean_lineage(name, lineage)
        clean_stats = canonical_value(dict(stats or {}), f"stats of dataset {name!r}")

        distinct_keys = list(dict.fromkeys(item.key for item in clean_items))
        missing = [key for key in distinct_keys if not self.has(key)]
        if missing:
            raise MissingObjectsError(name, missing)
        manifests = [self.manifest(key) for key in distinct_keys]
        totals = {
            "items": len(clean_items),
            "failures": len(clean_failures),
            "objects": len(distinct_keys),
            "files": sum(len(manifest.files) for manifest in manifests),
            "bytes": sum(manifest.total_bytes for manifest in manifests),
        }
        digest = "sha256:" + sha256_hex(
            canonical_json(
                {
                    "stage": stage,
                    "params": clean_params,
                    "items": [[item.item_id, item.key] for item in clean_items],
                    "lineage": {**clean_lineage.to_dict(), "code_version": None},
                }
            )
        )
        for _ in range(_MAX_VERSION_ATTEMPTS):
            numbers = self.version_numbers(name)
            if numbers:
                latest = self.read_version(name, numbers[-1])
                if latest.content_digest == digest:
                    return latest
            candidate = DatasetVersion(
                name=name,
                version=numbers[-1] + 1 if numbers else 1,
                created_at=utc_now(),
                stage=stage,
                params=clean_params,
                items=clean_items,
                lineage=clean_lineage,
                stats=clean_stats,
                failures=clean_failures,
                totals=totals,
                content_digest=digest,
                created=True,
            )
            rel = version_rel(name, candidate.version)
            if self._backend.create_exclusive(rel, json_bytes(candidate.manifest_dict())):
                return candidate
        raise StoreError(f"could not allocate a version number for dataset {name!r} in {self.root}")

    def _clean_items(
        self, name: str, items: Sequence[DatasetItem | Mapping[str, Any]]
    ) -> list[DatasetItem]:
        cleaned: dict[str, DatasetItem] = {}
        for raw in items:
            item = DatasetItem.coerce(raw)
            if not isinstance(item.item_id, str) or not item.item_id:
                raise DuplicateItemError(
                    f"dataset {name!r}: item_id must be a non-empty string, got {item.item_id!r}"
                )
            if item.item_id in cleaned:
                raise DuplicateItemError(f"dataset {name!r} lists item_id {item.item_id!r} twice")
            validate_object_key(item.key)
            stats = canonical_value(item.stats, f"stats of item {item.item_id!r}")
            cleaned[item.item_id] = DatasetItem(item_id=item.item_id, key=item.key, stats=stats)
        return [cleaned[item_id] for item_id in sorted(cleaned)]

    def _clean_lineage(self, name: str, lineage: Lineage | Mapping[str, Any] | None) -> Lineage:
        if lineage is None:
            return Lineage()
        document = lineage.to_dict() if isinstance(lineage, Lineage) else dict(lineage)
        parents = document.get("parents") or []
        if isinstance(parents, str) or not isinstance(parents, Sequence):
            raise InvalidLineageError(
                f"lineage.parents of dataset {name!r} must be a list of references, got {parents!r}"
            )
        code_version = document.get("code_version")
        if code_version is not None and not isinstance(code_version, str):
            raise InvalidLineageError(
                f"lineage.code_version of dataset {name!r} must be a string, got {code_version!r}"
            )
        sources = document.get("sources") or []
        if isinstance(sources, (str, Mapping)) or not isinstance(sources, Sequence):
            raise InvalidLineageError(
                f"lineage.sources of dataset {name!r} must be a list, got {type(sources).__name__}"
            )
        clean = Lineage.from_dict(canonical_value(document, f"lineage of dataset {name!r}"))
        return dataclasses.replace(clean, parents=[self.resolve(parent).ref for parent in parents])

    def resolve(self, ref: str) -> DatasetVersion:
        """The version a reference names: ``name``/``name@latest`` (highest), ``name@3``, ``name@tag``."""
        name, selector = parse_ref(ref)
        numbers = self._existing_numbers(name)
        if selector == "latest":
            return self.read_version(name, numbers[-1])
        if isinstance(selector, int):
            if selector not in numbers:
                raise VersionNotFoundError(
                    f"dataset {name!r} has no version {selector} (versions: {_ranges(numbers)})"
                )
            return self.read_version(name, selector)
        tags = self.tags(name)
        if selector not in tags:
            raise TagNotFoundError(
                f"dataset {name!r} has no tag {selector!r} (tags: {', '.join(sorted(tags)) or 'none'})"
            )
        return self.read_version(name, tags[selector])

    # ------------------------------------------------------------------ reports

    def report_uri(self, name: str, version: int) -> str:
        """Where the HTML report of ``name@version`` is (or would be) stored."""
        return self._backend.uri(report_rel(validate_dataset_name(name), version))

    def has_report(self, name: str, version: int) -> bool:
        return self._backend.exists(report_rel(validate_dataset_name(name), version))

    def write_report(self, name: str, version: int, html: str) -> str:
        """Store (or replace) the report of an existing version, atomically; returns its URI.

        Reports are derived views, not objects: verify and gc leave them alone, and writing one
        again (a newer report layout) is allowed.
        """
        if version not in self._existing_numbers(name):
            raise VersionNotFoundError(
                f"dataset {name!r} has no version {version}; no report for it"
            )
        self._backend.write_atomic(report_rel(name, version), html.encode())
        return self.report_uri(name, version)

    # ------------------------------------------------------------------ tags

    def tag(self, name: str, version: int, tag: str) -> None:
        """Point ``tag`` at ``name@version`` (moving it if it pointed elsewhere)."""
        validate_tag(tag)
        if version not in self._existing_numbers(name):
            raise VersionNotFoundError(
                f"dataset {name!r} has no version {version}; cannot tag it {tag!r}"
            )
        document = {"tag": tag, "version": version, "tagged_at": utc_now()}
        self._backend.write_atomic(f"{tags_rel(name)}/{tag}.json", json_bytes(document))

    def untag(self, name: str, tag: str) -> None:
        validate_tag(tag)
        if tag not in self.tags(name):
            raise TagNotFoundError(f"dataset {name!r} has no tag {tag!r}")
        self._backend.remove_file(f"{tags_rel(name)}/{tag}.json")

    def tags(self, name: str) -> dict[str, int]:
        """{tag: version} of a dataset."""
        validate_dataset_name(name)
        found = {}
        for entry in self._backend.list_names(tags_rel(name)):
            if not entry.endswith(".json"):
                continue
            rel = f"{tags_rel(name)}/{entry}"
            try:
                document = load_json(self._backend.read_bytes(rel), self._backend.uri(rel))
            except FileNotFoundError:  # untagged meanwhile
                continue
            found[entry[: -len(".json")]] = int(document["version"])
        return found

    # ------------------------------------------------------------------ listing

    def list_datasets(self) -> list[DatasetSummary]:
        summaries = []
        for name in self.dataset_names():
            numbers = self.version_numbers(name)
            first = self.read_version(name, numbers[0])
            latest = self.read_version(name, numbers[-1]) if len(numbers) > 1 else first
            summaries.append(
                DatasetSummary(
                    name=name,
                    versions=len(numbers),
                    latest_version=numbers[-1],
                    tags=self.tags(name),
                    created_at=first.created_at,
                    latest_created_at=latest.created_at,
                )
            )
        return summaries

    def list_versions(self, name: str) -> list[VersionSummary]:
        tags_by_version: dict[int, list[str]] = {}
        for tag, version in sorted(self.tags(name).items()):
            tags_by_version.setdefault(version, []).append(tag)
        summaries = []
        for number in self._existing_numbers(name):
            version = self.read_version(name, number)
            summaries.append(
                VersionSummary(
                    name=name,
                    version=number,
                    created_at=version.created_at,
                    stage=version.stage,
                    items=len(version.items),
                    failures=len(version.failures),
                    total_bytes=int(version.totals.get("bytes", 0)),
                    content_digest=version.content_digest,
                    tags=tags_by_version.get(number, []),
                )
            )
        return summaries

    def show(self, ref: str) -> DatasetShow:
        """A version, the tags pointing at it, and its lineage tree of parent versions."""
        version = self.resolve(ref)
        tags = sorted(
            tag for tag, number in self.tags(version.name).items() if number == version.version
        )
        memo: dict[str, LineageNode] = {}
        return DatasetShow(
            version=version,
            tags=tags,
            lineage=[self._lineage_node(parent, memo) for parent in version.lineage.parents],
        )

    def _lineage_node(self, ref: str, memo: dict[str, LineageNode]) -> LineageNode:
        if ref in memo:
            return memo[ref]
        try:
            parent = self.resolve(ref)
        except (DatasetNotFoundError, VersionNotFoundError, TagNotFoundError):
            node = LineageNode(
                ref=ref,
                stage=None,
                created_at=None,
                items=None,
                sources=[],
                parents=[],
                missing=True,
            )
        else:
            node = LineageNode(
                ref=parent.ref,
                stage=parent.stage,
                created_at=parent.created_at,
                items=len(parent.items),
                sources=parent.lineage.sources,
                parents=[self._lineage_node(grand, memo) for grand in parent.lineage.parents],
            )
        memo[ref] = node
        return node

    # ------------------------------------------------------------------ maintenance

    def diff(self, ref_a: str, ref_b: str) -> DatasetDiff:
        return diff_versions(self.resolve(ref_a), self.resolve(ref_b))

    def verify(self, keys: Sequence[str] | None = None) -> VerifyReport:
        return verify_store(self, keys)

    def gc(self, *, dry_run: bool = False, min_age_seconds: float = 3600) -> GcReport:
        return collect_garbage(self, dry_run=dry_run, min_age_seconds=min_age_seconds)

    def export(self, ref: str, dest_dir: str | os.PathLike[str]) -> Path:
        return export_version(self, self.resolve(ref), Path(dest_dir))


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


def _ranges(numbers: list[int]) -> str:
    """'1-3, 5' for [1, 2, 3, 5]."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
