"""Comparing one complete object with its manifest.

The check under both ``ArtifactStore.damage`` (cheap: every listed file present at its size) and
``verify`` (full: every file re-hashed, files the manifest does not name listed too).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.store.canonical import HASH_CHUNK_BYTES
from tasks.store.errors import CorruptManifestError
from tasks.store.layout import MANIFEST_NAME, RESERVED_NAMES, object_rel
from tasks.store.models import ObjectManifest, VerifyProblem

if TYPE_CHECKING:
    from tasks.store.objects import ObjectStore

DAMAGE_KINDS = frozenset(
    {
        "missing_manifest",
        "corrupt_manifest",
        "key_mismatch",
        "missing_file",
        "size_mismatch",
        "checksum_mismatch",
    }
)
"""Problems that make an object unusable: a repair moves it to quarantine, a rebuild makes it again."""


@dataclass
class ObjectCheck:
    """What comparing one complete object with its manifest found."""

    manifest: ObjectManifest | None
    problems: list[VerifyProblem] = field(default_factory=list)
    files_checked: int = 0
    bytes_hashed: int = 0

    @property
    def damage(self) -> list[VerifyProblem]:
        return [problem for problem in self.problems if problem.kind in DAMAGE_KINDS]


def check_object(store: ObjectStore, key: str, *, full: bool) -> ObjectCheck:
    """Compare a complete object with its manifest: every listed file present at its size.

    ``full`` (verify) also re-hashes every file and lists the directory for files the manifest
    does not name (``unexpected_file``); without it this is a manifest read and a stat per file.
    Raises ObjectNotFoundError when the object's marker is gone (moved or deleted meanwhile).
    """
    backend = store.backend
    rel = object_rel(key)
    try:
        manifest = store.manifest(key)
    except CorruptManifestError as error:
        kind = (
            "corrupt_manifest" if backend.exists(f"{rel}/{MANIFEST_NAME}") else "missing_manifest"
        )
        return ObjectCheck(None, [VerifyProblem(kind, key, MANIFEST_NAME, str(error))])
    check = ObjectCheck(manifest)
    if manifest.key != key:
        check.problems.append(
            VerifyProblem("key_mismatch", key, MANIFEST_NAME, f"manifest names key {manifest.key}")
        )
    if full:
        present = {
            path: size
            for path, size in backend.list_files(rel).items()
            if path not in RESERVED_NAMES
        }
    else:
        present = backend.sizes(rel, manifest.files)
    for path, entry in sorted(manifest.files.items()):
        if path not in present:
            check.problems.append(
                VerifyProblem("missing_file", key, path, "listed in the manifest, not found")
            )
            continue
        check.files_checked += 1
        if present[path] != entry.size:
            check.problems.append(
                VerifyProblem(
                    "size_mismatch",
                    key,
                    path,
                    f"size {present[path]} bytes, manifest says {entry.size}",
                )
            )
            continue
        if not full:
            continue
        try:
            with backend.open_read(f"{rel}/{path}") as handle:
                digest = _sha256_of_stream(handle)
        except FileNotFoundError:
            check.problems.append(
                VerifyProblem("missing_file", key, path, "listed in the manifest, not found")
            )
            continue
        check.bytes_hashed += entry.size
        if digest != entry.sha256:
            check.problems.append(
                VerifyProblem(
                    "checksum_mismatch", key, path, f"sha256 {digest}, manifest says {entry.sha256}"
                )
            )
    for path in sorted(set(present) - set(manifest.files)):  # only a full listing finds any
        check.problems.append(
            VerifyProblem("unexpected_file", key, path, "present but not in the manifest")
        )
    return check


def describe_damage(problems: Iterable[VerifyProblem]) -> str:
    return "; ".join(f"{problem.path}: {problem.detail}" for problem in problems)


def _sha256_of_stream(handle: Any) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(HASH_CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()
