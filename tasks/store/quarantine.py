"""The quarantine: damaged objects and unreadable version files moved out of the store's way.

Moving (not deleting) keeps the evidence for a person to look at, and frees the object's key so
that a rebuild can publish it again. Layout: see ``tasks.store.layout``.
"""

from __future__ import annotations

from tasks.store.backends import FsspecBackend, LocalBackend
from tasks.store.layout import (
    OBJECTS_DIR,
    QUARANTINE_DIR,
    REPAIR_NOTE_NAME,
    json_bytes,
    object_rel,
    quarantine_stamp,
    utc_now,
    version_rel,
    versions_rel,
)
from tasks.store.models import Repair


class QuarantineFolder:
    """One ``quarantine/<stamp>/`` folder; ``repair.json`` in it lists what was moved there.

    Nothing is written until the first move, so a repair that finds nothing leaves no folder.
    """

    def __init__(self, backend: LocalBackend | FsspecBackend) -> None:
        self._backend = backend
        self.rel = f"{QUARANTINE_DIR}/{quarantine_stamp()}"
        self.repairs: list[Repair] = []

    @property
    def uri(self) -> str:
        return self._backend.uri(self.rel)

    def move_object(self, key: str) -> str:
        """Move a whole object directory here (FileNotFoundError when it is already gone)."""
        dest = f"{self.rel}/{OBJECTS_DIR}/{key}"
        self._backend.move(object_rel(key), dest)
        return self._backend.uri(dest)

    def move_files(self, key: str, paths: list[str]) -> str:
        """Move some files of an object here, under the object's key; files gone meanwhile are skipped."""
        dest = f"{self.rel}/{OBJECTS_DIR}/{key}"
        for path in paths:
            try:
                self._backend.move(f"{object_rel(key)}/{path}", f"{dest}/{path}")
            except FileNotFoundError:
                continue
        return self._backend.uri(dest)

    def move_version(self, name: str, version: int) -> str:
        """Move a version file here, keeping its ``datasets/<name>/versions/`` path."""
        dest = f"{self.rel}/{version_rel(name, version)}"
        self._backend.move(version_rel(name, version), dest)
        return self._backend.uri(dest)

    def write_note(self) -> None:
        """Write ``repair.json`` (when anything was moved)."""
        if not self.repairs:
            return
        document = {
            "written_at": utc_now(),
            "repairs": [repair.to_dict() for repair in self.repairs],
        }
        self._backend.write_atomic(f"{self.rel}/{REPAIR_NOTE_NAME}", json_bytes(document))


def quarantined_versions(backend: LocalBackend | FsspecBackend, name: str) -> dict[int, str]:
    """{version: URI} of the version files of ``name`` that a repair moved to quarantine.

    A publish does not reuse these numbers: a reference such as ``name@3`` recorded before the
    repair must not come to mean other content.
    """
    found: dict[int, str] = {}
    for stamp in backend.list_names(QUARANTINE_DIR):
        folder = f"{QUARANTINE_DIR}/{stamp}/{versions_rel(name)}"
        for entry in backend.list_names(folder):
            stem, dot, suffix = entry.partition(".")
            if stem.isdigit() and dot and suffix == "json":
                found[int(stem)] = backend.uri(f"{folder}/{entry}")
    return found
