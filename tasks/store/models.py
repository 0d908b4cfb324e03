"""The store's records. Every one has ``to_dict()`` returning plain JSON types (the CLI's ``--json``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tasks.store.errors import CorruptManifestError

MANIFEST_FORMAT = 1


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def _require(document: Mapping[str, Any], names: tuple[str, ...], what: str) -> None:
    missing = [name for name in names if name not in document]
    if missing:
        raise CorruptManifestError(f"{what} lacks field(s) {', '.join(missing)}")


@dataclass(frozen=True)
class FileEntry(_Record):
    size: int
    sha256: str


@dataclass(frozen=True)
class ObjectManifest(_Record):
    """What ``manifest.json`` of a complete object says about it."""

    key: str
    stage: str
    stage_version: int
    params: dict[str, Any]
    inputs: list[str]
    item: str | None
    created_at: str
    files: dict[str, FileEntry]
    stats: dict[str, Any]
    extra: dict[str, Any]
    input_objects: list[str] | None = None
    """The inputs that were store objects when this one was published (an input may also be the
    digest of a source file, which looks the same); None in manifests written before this field,
    whose object inputs cannot be told apart."""

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files.values())

    def to_dict(self) -> dict[str, Any]:
        return {"format": MANIFEST_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(
        cls, document: Mapping[str, Any], where: str = "object manifest"
    ) -> ObjectManifest:
        names = ("key", "stage", "stage_version", "params", "inputs", "item", "created_at", "files")
        _require(document, names, where)
        try:
            files = {
                path: FileEntry(size=int(entry["size"]), sha256=str(entry["sha256"]))
                for path, entry in document["files"].items()
            }
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise CorruptManifestError(f"{where} has a malformed 'files' table: {error}") from None
        try:
            return cls(
                key=document["key"],
                stage=document["stage"],
                stage_version=document["stage_version"],
                params=dict(document["params"]),
                inputs=list(document["inputs"]),
                item=document["item"],
                created_at=document["created_at"],
                files=files,
                stats=dict(document.get("stats") or {}),
                extra=dict(document.get("extra") or {}),
                input_objects=(
                    None if document.get("input_objects") is None
                    else list(document["input_objects"])
                ),
            )
        except (TypeError, ValueError) as error:
            raise CorruptManifestError(f"{where} is malformed: {error!r}") from None


@dataclass(frozen=True)
class DatasetItem(_Record):
    """One item of a dataset version: its id, the key of the object holding it, small statistics."""

    item_id: str
    key: str
    stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def coerce(cls, value: DatasetItem | Mapping[str, Any]) -> DatasetItem:
        if isinstance(value, DatasetItem):
            return value
        return cls(item_id=value["item_id"], key=value["key"], stats=dict(value.get("stats") or {}))


@dataclass(frozen=True)
class Failure(_Record):
    """An item a stage could not process, and why (recorded, never fatal on its own)."""

    item_id: str
    stage: str
    reason: str

    @classmethod
    def coerce(cls, value: Failure | Mapping[str, Any]) -> Failure:
        if isinstance(value, Failure):
            return value
        return cls(item_id=value["item_id"], stage=value["stage"], reason=value["reason"])


@dataclass(frozen=True)
class Lineage(_Record):
    """Where a dataset version came from.

    ``parents`` are exact ``name@version`` references (resolved at publish time), ``sources``
    free-form JSON descriptions of raw inputs (paths with digests, URLs), ``code_version`` e.g. a
    git commit, ``extra`` any further JSON fields (stored beside the others, flat).
    """

    parents: list[str] = field(default_factory=list)
    sources: list[Any] = field(default_factory=list)
    code_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "parents": list(self.parents),
            "sources": list(self.sources),
            "code_version": self.code_version,
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Lineage:
        known = ("parents", "sources", "code_version")
        return cls(
            parents=list(document.get("parents") or []),
            sources=list(document.get("sources") or []),
            code_version=document.get("code_version"),
            extra={name: value for name, value in document.items() if name not in known},
        )


@dataclass(frozen=True)
class DatasetVersion(_Record):
    """One immutable, numbered version of a named dataset.

    ``created`` is not stored: it tells the caller of ``publish_dataset`` whether this call made
    the version (False when the content equalled the latest version's and that one came back).
    ``notes`` say why the store did something unusual when publishing it (it skipped past an
    unreadable version file); stored only when there are any, not part of the content digest.
    """

    name: str
    version: int
    created_at: str
    stage: str
    params: dict[str, Any]
    items: list[DatasetItem]
    lineage: Lineage
    stats: dict[str, Any]
    failures: list[Failure]
    totals: dict[str, int]
    content_digest: str
    notes: list[str] = field(default_factory=list)
    created: bool = False

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def keys(self) -> list[str]:
        return [item.key for item in self.items]

    def manifest_dict(self) -> dict[str, Any]:
        """The document stored in the version file."""
        document = dataclasses.asdict(self)
        del document["created"]
        if not self.notes:
            del document["notes"]  # version files written before notes existed stay byte-identical
        document["lineage"] = self.lineage.to_dict()
        return {"format": MANIFEST_FORMAT, **document}

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.manifest_dict(),
            "notes": list(self.notes),
            "ref": self.ref,
            "created": self.created,
        }

    @classmethod
    def from_dict(
        cls, document: Mapping[str, Any], where: str = "dataset manifest"
    ) -> DatasetVersion:
        names = (
            "name",
            "version",
            "created_at",
            "stage",
            "params",
            "items",
            "lineage",
            "content_digest",
        )
        _require(document, names, where)
        try:
            return cls(
                name=document["name"],
                version=int(document["version"]),
                created_at=document["created_at"],
                stage=document["stage"],
                params=dict(document["params"]),
                items=[DatasetItem.coerce(item) for item in document["items"]],
                lineage=Lineage.from_dict(document["lineage"]),
                stats=dict(document.get("stats") or {}),
                failures=[Failure.coerce(failure) for failure in document.get("failures") or []],
                totals=dict(document.get("totals") or {}),
                content_digest=document["content_digest"],
                notes=[str(note) for note in document.get("notes") or []],
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise CorruptManifestError(f"{where} is malformed: {error!r}") from None


@dataclass(frozen=True)
class VersionSummary(_Record):
    """One line of ``list_versions``; for an unreadable version file only ``problem`` (why) is
    set and the fields read from the file are None."""

    name: str
    version: int
    created_at: str | None
    stage: str | None
    items: int | None
    failures: int | None
    total_bytes: int | None
    content_digest: str | None
    tags: list[str]
    problem: str | None = None


@dataclass(frozen=True)
class DatasetSummary(_Record):
    """One line of ``list_datasets``.

    ``corrupt_versions`` are the unreadable version files met while reading the first and the
    latest version (verify reads every one), ``problems`` say why, one line each (also an
    unreadable tag). ``created_at``/``latest_created_at`` come from the oldest/newest readable
    version (None when none is).
    """

    name: str
    versions: int
    latest_version: int
    tags: dict[str, int]
    created_at: str | None
    latest_created_at: str | None
    corrupt_versions: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LineageNode(_Record):
    """A parent dataset version in a lineage tree; ``missing`` when its manifest cannot be found
    or read (``problem`` says which)."""

    ref: str
    stage: str | None
    created_at: str | None
    items: int | None
    sources: list[Any]
    parents: list[LineageNode]
    missing: bool = False
    problem: str | None = None


@dataclass(frozen=True)
class DatasetShow(_Record):
    """A version, the tags pointing at it, and the tree of its parent versions.

    ``to_dict`` is the version's dict plus ``tags`` and ``lineage_tree``.
    """

    version: DatasetVersion
    tags: list[str]
    lineage: list[LineageNode]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.version.to_dict(),
            "tags": list(self.tags),
            "lineage_tree": [node.to_dict() for node in self.lineage],
        }


@dataclass(frozen=True)
class ItemChange(_Record):
    item_id: str
    key_a: str
    key_b: str


@dataclass(frozen=True)
class ValueChange(_Record):
    """A value at a dotted path in ``a`` and ``b`` (None where absent); ``delta`` = b - a for numbers."""

    path: str
    a: Any
    b: Any
    delta: float | int | None = None


@dataclass(frozen=True)
class DatasetDiff(_Record):
    a: str
    b: str
    stage_a: str
    stage_b: str
    added: list[str]
    removed: list[str]
    changed: list[ItemChange]
    unchanged: list[str]
    stats_deltas: list[ValueChange]
    params_changes: list[ValueChange]
    failures_a: int
    failures_b: int

    @property
    def identical_items(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document["counts"] = {
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "unchanged": len(self.unchanged),
        }
        return document


@dataclass(frozen=True)
class VerifyProblem(_Record):
    """One finding of ``verify``.

    kind: missing_object, missing_manifest, corrupt_manifest, key_mismatch, missing_file,
    size_mismatch, checksum_mismatch (the object is damaged), unexpected_file, missing_input
    (an object needed by a dataset version lacks an object it was made from),
    dataset_missing_object, corrupt_dataset (an unreadable version file).
    ``subject`` is an object key or a ``name@version`` reference; ``path`` a file inside the
    object, an item id (dataset_missing_object), the missing input's key (missing_input) or the
    version file (corrupt_dataset). ``fix`` says what to do, or what the repair did.
    """

    kind: str
    subject: str
    path: str | None
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Repair(_Record):
    """What ``verify(repair=True)`` or a publish over a damaged object moved to quarantine.

    kind: ``object`` (the whole damaged object), ``stray_files`` (only files its manifest does
    not list) or ``dataset_version`` (an unreadable version file). ``referenced_by`` are the
    dataset versions that list the object or an object made from it; ``rebuild`` says what
    makes it again (empty when nothing needs it).
    """

    kind: str
    subject: str
    moved_to: str
    reason: str
    stage: str | None
    item: str | None
    referenced_by: list[str]
    rebuild: str


@dataclass(frozen=True)
class VerifyReport(_Record):
    """``next_steps``: what to do now, one line each (also in ``to_dict``)."""

    objects_checked: int
    files_checked: int
    bytes_hashed: int
    dataset_versions_checked: int
    incomplete_objects: int
    problems: list[VerifyProblem]
    repairs: list[Repair] = field(default_factory=list)
    quarantine: str | None = None
    next_steps: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}


@dataclass(frozen=True)
class GcReport(_Record):
    """``deleted_bytes``: unreachable complete objects; ``garbage_bytes``: leftovers of killed runs
    (marker-less object directories, staging directories). With ``dry_run`` nothing was removed."""

    dry_run: bool
    min_age_seconds: float
    reachable_objects: int
    deleted_objects: list[str]
    deleted_bytes: int
    kept_young_objects: int
    removed_incomplete: int
    removed_staging: int
    garbage_bytes: int

    @property
    def bytes_freed(self) -> int:
        return self.deleted_bytes + self.garbage_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "bytes_freed": self.bytes_freed}
