"""Faults of the machine, not of an item: a full or read-only filesystem, a denied permission,
a failing disk. A stage stops on them (`batching.EnvironmentFault`); an item that fails for one
of them is no per-item failure, since every item after it would fail the same way.

Two ways to tell them:

- an OSError whose errno is one of `FAULT_KINDS` anywhere in an exception's chain (`__cause__`,
  `__context__`): how Python, fsspec (PermissionError, OSError with errno) and
  `musika_model.audio` report them;
- for an error that carries no errno (libsndfile's "System error", a tool's exit status), a
  probe: write and fsync `PROBE_BYTES` in the item's staging directory while its partial files
  are still there. A full filesystem refuses the probe as it refused the item; a filesystem
  with room takes it, and the error stays the item's own.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

FaultKind = Literal["space", "quota", "read-only", "permission", "io"]

FAULT_KINDS: dict[int, FaultKind] = {
    errno.ENOSPC: "space",
    errno.EDQUOT: "quota",
    errno.EROFS: "read-only",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.EIO: "io",
}

PROBE_BYTES = 1 << 20
"""Size of the probe write: an item's output is megabytes, so a filesystem that cannot take one
MiB cannot take the item either."""

_WHAT: dict[FaultKind, str] = {
    "space": "out of space",
    "quota": "disk quota exceeded",
    "read-only": "read-only filesystem",
    "permission": "permission denied",
    "io": "I/O error",
}
_ADVICE: dict[FaultKind, str] = {
    "space": "free space or use another store (--store, MUSIKA_PIANO_DATA), then run again",
    "quota": "free space within the quota or use another store (--store, MUSIKA_PIANO_DATA), then run again",
    "read-only": "remount it read-write or use another store (--store, MUSIKA_PIANO_DATA), then run again",
    "permission": "give this user access there or use another store (--store, MUSIKA_PIANO_DATA), then run again",
    "io": "check the disk or network filesystem (dmesg, fsck) before running again",
}


@dataclass(frozen=True)
class Fault:
    """What went wrong with the machine, where, and (for space) how much room there is."""

    kind: FaultKind
    path: str
    errno: int | None
    free_bytes: int | None = None
    needed_bytes: int | None = None
    needed_for: str = "the stage"
    """What `needed_bytes` covers, e.g. "the 3 items left in this batch"."""
    found_after: str = ""
    """The error the probe was run for, when the fault was found by the probe."""

    def describe(self, stage: str, item: str | None = None) -> str:
        """One line: the cause, the path, the room (for space), what to do."""
        code = f" ({errno.errorcode[self.errno]})" if self.errno in errno.errorcode else ""
        subject = f"{stage}: {_WHAT[self.kind]}{code} at {self.path}"
        if item is not None:
            subject += f" (item {item})"
        parts = [subject]
        if self.found_after:
            parts.append(f"found by a test write after {self.found_after}")
        if self.free_bytes is not None:
            room = f"{format_bytes(self.free_bytes)} free on {describe_filesystem(self.path)}"
            if self.needed_bytes:
                room += f"; roughly {format_bytes(self.needed_bytes)} more needed for {self.needed_for}"
            parts.append(room)
        advice = _ADVICE[self.kind]
        return "; ".join(parts) + f". The stage stopped and nothing was published: {advice}."


def format_bytes(count: int) -> str:
    """A size as people read it: 0 B, 512 KiB, 3.2 MiB, 1.5 GiB."""
    if count < 1 << 10:
        return f"{count} B"
    if count < 1 << 20:
        return f"{count / (1 << 10):.0f} KiB"
    if count < 1 << 30:
        return f"{count / (1 << 20):.1f} MiB"
    return f"{count / (1 << 30):.1f} GiB"


def _existing(path: str | Path) -> Path | None:
    """`path`, or its nearest existing parent (the item's directory may be gone already); None
    for a path that is not a local absolute one (an fsspec URL)."""
    current = Path(path)
    if not current.is_absolute():
        return None
    while not current.exists():
        if current.parent == current:
            return None
        current = current.parent
    return current


def free_bytes(path: str | Path) -> int | None:
    """Bytes this user may still write on the filesystem holding `path` (None: not a local path)."""
    existing = _existing(path)
    if existing is None:
        return None
    try:
        return shutil.disk_usage(existing).free
    except OSError:
        return None


def describe_filesystem(path: str | Path) -> str:
    """"the filesystem mounted at /mnt/store" for the filesystem holding `path`."""
    existing = _existing(path)
    if existing is None:
        return f"the filesystem of {path}"
    mount = existing.resolve()
    while not os.path.ismount(mount):
        mount = mount.parent
    return f"the filesystem mounted at {mount}"


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and the exceptions it was raised from or while handling, nearest first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def fault_kind(error: BaseException) -> FaultKind | None:
    """The fault an OSError reports (a PermissionError without errno, as some fsspec
    filesystems raise it, is a denied permission), or None."""
    if not isinstance(error, OSError):
        return None
    if error.errno is None and isinstance(error, PermissionError):
        return "permission"
    return FAULT_KINDS.get(error.errno) if error.errno is not None else None


def reported_fault(
    error: BaseException, fallback_path: str, remote_uri: Callable[[str], str | None] = lambda path: None
) -> Fault | None:
    """The fault an OSError in `error`'s chain reports, at the path it names (else `fallback_path`).

    `remote_uri`: the URI of a path on an fsspec store (None for a local path); such paths look
    local ("/bucket/objects/...") but are not, so they are named by URI and no free space is told.
    """
    for link in _chain(error):
        kind = fault_kind(link)
        if kind is not None and isinstance(link, OSError):
            path = str(link.filename) if link.filename is not None else fallback_path
            uri = remote_uri(path)
            return _located_fault(kind, path, link.errno) if uri is None else Fault(kind, uri, link.errno)
    return None


def probed_fault(error: BaseException, directory: Path) -> Fault | None:
    """The fault a test write into `directory` hits, for an `error` that named none."""
    try:
        _probe(directory)
    except OSError as refused:
        kind = fault_kind(refused)
        if kind is None:
            return None
        found_after = f"{type(error).__name__}: {error}".strip().rstrip(":")
        return replace(_located_fault(kind, str(directory), refused.errno), found_after=found_after)
    return None


def _located_fault(kind: FaultKind, path: str, error_number: int | None) -> Fault:
    free = free_bytes(path) if kind in ("space", "quota") else None
    return Fault(kind, path, error_number, free)


def _probe(directory: Path) -> None:
    """Write, fsync and remove `PROBE_BYTES` in `directory` (some filesystems report a full disk
    or a failing device only at fsync or close); raises the OSError it hits."""
    path = directory / f".probe-{uuid.uuid4().hex}"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            block = memoryview(bytes(PROBE_BYTES))
            while block:
                block = block[os.write(descriptor, block):]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    finally:
        path.unlink(missing_ok=True)
