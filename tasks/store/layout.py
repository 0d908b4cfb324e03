"""Where things live under a store root, and the JSON conventions of the files there.

::

    objects/<key[:2]>/<key>/             one object: the stage's files, manifest.json, COMPLETE
    datasets/<name>/versions/000001.json one dataset version manifest per file (never rewritten)
    datasets/<name>/tags/<tag>.json      a user tag pointing at a version
    datasets/<name>/reports/000001.html  the HTML report of a version (rewritable, not an object)
    failures/<key[:2]>/<key>.json        why producing an object failed (a corrupt or empty input)
    tmp/                                 staging directories and scratch files (local roots only)
    quarantine/<stamp>/                  what one repair moved aside (never read by the store again):
        objects/<key>/                   a damaged object (a file missing, of another size or sha256,
                                         an unreadable manifest), or only the stray files of an
                                         intact one
        datasets/<name>/versions/000001.json  an unreadable version file (its number is not reused)
        repair.json                      what was moved, why, and what rebuilds it

``<stamp>`` is the UTC time of the repair plus a random suffix (``20250102T030405.678Z-1a2b3c``).
gc and verify look only under ``objects/`` and ``datasets/``: quarantine is kept until a person
deletes it.

The object path depends on the key alone; the stage name is in the manifest, not the path.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from tasks.store.errors import CorruptManifestError

OBJECTS_DIR = "objects"
DATASETS_DIR = "datasets"
FAILURES_DIR = "failures"
QUARANTINE_DIR = "quarantine"
REPAIR_NOTE_NAME = "repair.json"
MANIFEST_NAME = "manifest.json"
MARKER_NAME = "COMPLETE"
RESERVED_NAMES = frozenset({MANIFEST_NAME, MARKER_NAME})


def object_rel(key: str) -> str:
    return f"{OBJECTS_DIR}/{key[:2]}/{key}"


def marker_rel(key: str) -> str:
    return f"{object_rel(key)}/{MARKER_NAME}"


def failure_rel(key: str) -> str:
    return f"{FAILURES_DIR}/{key[:2]}/{key}.json"


def versions_rel(name: str) -> str:
    return f"{DATASETS_DIR}/{name}/versions"


def version_rel(name: str, version: int) -> str:
    return f"{versions_rel(name)}/{version:06d}.json"


def tags_rel(name: str) -> str:
    return f"{DATASETS_DIR}/{name}/tags"


def report_rel(name: str, version: int) -> str:
    return f"{DATASETS_DIR}/{name}/reports/{version:06d}.html"


def quarantine_stamp() -> str:
    """A new, sortable quarantine folder name without characters that trouble other filesystems."""
    now = datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z-{uuid.uuid4().hex[:6]}"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def parse_utc(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


def json_bytes(document: Any) -> bytes:
    """Readable, deterministic JSON for manifests (strict: no NaN)."""
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode()


def load_json(raw: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptManifestError(f"{where} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise CorruptManifestError(f"{where} holds a {type(document).__name__}, expected an object")
    return document
