"""The artifact store: the objects of ``tasks.store.objects`` plus named, numbered dataset
versions that list them, their tags, reports and listings, and whole-store maintenance (verify
and repair, gc, export, diff). Layout: see ``tasks.store.layout``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.store.canonical import (
    canonical_json,
    canonical_value,
    parse_ref,
    sha256_hex,
    validate_dataset_name,
    validate_object_key,
    validate_stage,
    validate_tag,
)
from tasks.store.errors import (
    CorruptManifestError,
    CorruptVersionError,
    DatasetNotFoundError,
    DuplicateItemError,
    InvalidLineageError,
    MissingObjectsError,
    StoreError,
    TagNotFoundError,
    VersionNotFoundError,
)
from tasks.store.layout import (
    DATASETS_DIR,
    json_bytes,
    load_json,
    report_rel,
    tags_rel,
    utc_now,
    version_rel,
    versions_rel,
)
from tasks.store.maintenance import collect_garbage, diff_versions, export_version
from tasks.store.models import (
    DatasetDiff,
    DatasetItem,
    DatasetShow,
    DatasetSummary,
    DatasetVersion,
    Failure,
    GcReport,
    Lineage,
    LineageNode,
    VerifyReport,
    VersionSummary,
)
from tasks.store.objects import ObjectStore
from tasks.store.quarantine import quarantined_versions
from tasks.store.verify import verify_store

_MAX_VERSION_ATTEMPTS = 1000


class ArtifactStore(ObjectStore):
    """Objects and dataset versions under one root (local path, ``file://`` or any fsspec URL)."""

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
        """The manifest of ``name@version`` (no reference parsing, no tag lookup).

        An unreadable file raises CorruptVersionError, which says how to get past it.
        """
        rel = version_rel(name, version)
        uri = self._backend.uri(rel)
        try:
            raw = self._backend.read_bytes(rel)
        except FileNotFoundError:
            raise self._no_version(
                name, version, f"dataset {name!r} has no version {version}"
            ) from None
        try:
            document = DatasetVersion.from_dict(load_json(raw, uri), uri)
        except CorruptManifestError as error:
            raise CorruptVersionError(name, version, uri, str(error)) from None
        if (document.name, document.version) != (name, version):
            raise CorruptVersionError(
                name, version, uri, f"it holds {document.ref}, not {name}@{version}"
            )
        return document

    def _no_version(self, name: str, version: int, message: str) -> VersionNotFoundError:
        moved = quarantined_versions(self._backend, name).get(version)
        where = f"; its unreadable file was moved to {moved}" if moved else ""
        return VersionNotFoundError(f"{message} in {self.root}{where}")

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
        must be present and undamaged (``has``). ``lineage`` may hold ``parents`` (references,
        resolved here to ``name@version``), ``sources`` (a list of JSON descriptions),
        ``code_version`` (a string) and any other JSON fields.

        When the latest version's file is unreadable, a new version is published past it
        whatever the content, and its ``notes`` say why; numbers of version files that a repair
        moved to quarantine are not reused.
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
        quarantined = quarantined_versions(self._backend, name)
        for _ in range(_MAX_VERSION_ATTEMPTS):
            numbers = self.version_numbers(name)
            notes = []
            if numbers:
                try:
                    latest = self.read_version(name, numbers[-1])
                except CorruptVersionError as error:
                    notes.append(
                        f"version {error.version}'s file is unreadable, so this version was "
                        f"published past it: {error.reason}"
                    )
                else:
                    if latest.content_digest == digest:
                        return latest
            highest = numbers[-1] if numbers else 0
            notes += [
                f"version {number} was moved to quarantine ({quarantined[number]}) by a repair; "
                "its number is not reused"
                for number in sorted(quarantined)
                if number > highest
            ]
            candidate = DatasetVersion(
                name=name,
                version=max([highest, *quarantined]) + 1,
                created_at=utc_now(),
                stage=stage,
                params=clean_params,
                items=clean_items,
                lineage=clean_lineage,
                stats=clean_stats,
                failures=clean_failures,
                totals=totals,
                content_digest=digest,
                notes=notes,
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
                raise self._no_version(
                    name,
                    selector,
                    f"dataset {name!r} has no version {selector} (versions: {_ranges(numbers)})",
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
            try:
                found[entry[: -len(".json")]] = int(document["version"])
            except (KeyError, TypeError, ValueError):
                raise CorruptManifestError(
                    f"tag file {self._backend.uri(rel)} has no version number"
                ) from None
        return found

    # ------------------------------------------------------------------ listing

    def list_datasets(self) -> list[DatasetSummary]:
        """Every dataset; an unreadable version or tag file marks its dataset, never raises.

        Reads the first and the latest version file of each (and inward past unreadable ones).
        """
        return [self._summary(name) for name in self.dataset_names()]

    def _summary(self, name: str) -> DatasetSummary:
        numbers = self.version_numbers(name)
        loaded: dict[int, DatasetVersion | None] = {}
        problems: list[str] = []

        def load(number: int) -> DatasetVersion | None:
            if number not in loaded:
                try:
                    loaded[number] = self.read_version(name, number)
                except CorruptVersionError as error:
                    loaded[number] = None
                    problems.append(f"version {number} is unreadable: {error.reason}")
            return loaded[number]

        first = next((v for n in numbers if (v := load(n)) is not None), None)
        latest = next((v for n in reversed(numbers) if (v := load(n)) is not None), None)
        try:
            tags = self.tags(name)
        except CorruptManifestError as error:
            tags = {}
            problems.append(str(error))
        return DatasetSummary(
            name=name,
            versions=len(numbers),
            latest_version=numbers[-1],
            tags=tags,
            created_at=first.created_at if first is not None else None,
            latest_created_at=latest.created_at if latest is not None else None,
            corrupt_versions=sorted(n for n, v in loaded.items() if v is None),
            problems=problems,
        )

    def list_versions(self, name: str) -> list[VersionSummary]:
        """Every version of a dataset; an unreadable one is listed with ``problem`` set."""
        tags_by_version: dict[int, list[str]] = {}
        for tag, version in sorted(self.tags(name).items()):
            tags_by_version.setdefault(version, []).append(tag)
        summaries = []
        for number in self._existing_numbers(name):
            try:
                version = self.read_version(name, number)
            except CorruptVersionError as error:
                summaries.append(
                    VersionSummary(
                        name=name,
                        version=number,
                        created_at=None,
                        stage=None,
                        items=None,
                        failures=None,
                        total_bytes=None,
                        content_digest=None,
                        tags=tags_by_version.get(number, []),
                        problem=f"unreadable: {error.reason}",
                    )
                )
                continue
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
        except (
            DatasetNotFoundError,
            VersionNotFoundError,
            TagNotFoundError,
            CorruptManifestError,
        ) as error:
            node = LineageNode(
                ref=ref,
                stage=None,
                created_at=None,
                items=None,
                sources=[],
                parents=[],
                missing=True,
                problem=str(error),
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

    def verify(self, keys: Sequence[str] | None = None, *, repair: bool = False) -> VerifyReport:
        """Re-hash objects against their manifests and check dataset versions (see
        ``tasks.store.verify.verify_store``); ``repair`` moves what is damaged to quarantine."""
        return verify_store(self, keys, repair=repair)

    def gc(self, *, dry_run: bool = False, min_age_seconds: float = 3600) -> GcReport:
        return collect_garbage(self, dry_run=dry_run, min_age_seconds=min_age_seconds)

    def export(self, ref: str, dest_dir: str | os.PathLike[str]) -> Path:
        return export_version(self, self.resolve(ref), Path(dest_dir))


def _ranges(numbers: list[int]) -> str:
    """'1-3, 5' for [1, 2, 3, 5]."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
