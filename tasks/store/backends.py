"""Storage backends: the local filesystem (atomic rename, exclusive create via hard links) and
any other fsspec filesystem (upload in order, completion marker last).

Paths handed to a backend are POSIX paths relative to the store root ("objects/ab/abcd...").
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from tasks.store.errors import StoreError

STAGING_DIR = "tmp"


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_unique_dir(parent: Path, prefix: str) -> Path:
    """Like tempfile.mkdtemp, but honouring the umask (objects are renamed into place as they are)."""
    path = parent / f"{prefix}{uuid.uuid4().hex}"
    path.mkdir()
    return path


def write_file_durably(path: Path, data: bytes) -> None:
    """Create, write and fsync ``path``; a write that fails (a full disk) leaves no partial file."""
    created = False
    try:
        with open(path, "wb") as handle:
            created = True
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        if created:
            path.unlink(missing_ok=True)
        raise


class LocalBackend:
    """A store root on a local (POSIX) filesystem."""

    is_local = True

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def uri(self, rel: str) -> str:
        return self.path(rel).as_uri()

    def staging_root(self) -> Path:
        staging = self.root / STAGING_DIR
        staging.mkdir(parents=True, exist_ok=True)
        return staging

    def new_staging_dir(self, prefix: str) -> Path:
        """A fresh directory on the store's filesystem, so that renaming it into place is atomic."""
        return make_unique_dir(self.staging_root(), prefix)

    def exists(self, rel: str) -> bool:
        return os.path.exists(self.path(rel))

    def read_bytes(self, rel: str) -> bytes:
        return self.path(rel).read_bytes()

    def open_read(self, rel: str) -> IO[bytes]:
        return open(self.path(rel), "rb")

    def write_atomic(self, rel: str, data: bytes) -> None:
        target = self.path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.staging_root() / f"write-{uuid.uuid4().hex}"
        write_file_durably(scratch, data)
        os.replace(scratch, target)

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` holding ``data`` unless it exists; readers never see it half written."""
        target = self.path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.staging_root() / f"create-{uuid.uuid4().hex}"
        write_file_durably(scratch, data)
        try:
            os.link(scratch, target)
        except FileExistsError:
            return False
        finally:
            scratch.unlink()
        _fsync_dir(target.parent)
        return True

    def list_names(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(rel)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def list_files(self, rel: str) -> dict[str, int]:
        """Every file below ``rel`` as {relative POSIX path: size}."""
        base = self.path(rel)
        if base.is_file():
            return {"": base.stat().st_size}
        found: dict[str, int] = {}
        for directory, _, names in os.walk(base):
            for name in names:
                full = Path(directory, name)
                found[full.relative_to(base).as_posix()] = full.stat().st_size
        return found

    def sizes(self, rel: str, names: Iterable[str]) -> dict[str, int]:
        """{name: size} of those files below ``rel`` that exist (one stat each, no listing)."""
        base = os.path.join(self.root, rel)
        found: dict[str, int] = {}
        for name in names:
            try:
                found[name] = os.stat(os.path.join(base, name)).st_size
            except (FileNotFoundError, NotADirectoryError):
                continue
        return found

    def newest_mtime(self, rel: str) -> float | None:
        """Latest modification time of ``rel`` or anything below it (None if it is gone)."""
        base = self.path(rel)
        newest: float | None = None
        for directory, dirs, names in os.walk(base):
            for name in [*dirs, *names, ""]:
                try:
                    mtime = os.lstat(Path(directory, name)).st_mtime
                except FileNotFoundError:
                    continue
                newest = mtime if newest is None else max(newest, mtime)
        if newest is None and base.exists():
            newest = base.stat().st_mtime
        return newest

    def remove_file(self, rel: str) -> None:
        self.path(rel).unlink(missing_ok=True)

    def remove_tree(self, rel: str) -> None:
        """Move the tree out of sight in one rename, then delete it."""
        target = self.path(rel)
        doomed = self.staging_root() / f"discard-{uuid.uuid4().hex}"
        try:
            os.rename(target, doomed)
        except FileNotFoundError:
            return
        if doomed.is_dir():
            shutil.rmtree(doomed, ignore_errors=True)
        else:
            doomed.unlink()

    def move(self, rel: str, dest_rel: str) -> None:
        """Move a file or a tree in one rename (FileNotFoundError when ``rel`` is gone)."""
        target = self.path(dest_rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.path(rel), target)

    def install_object(self, staging: Path, rel: str, *, marker: str, manifest: str) -> bool:
        """Rename the finished staging directory into place.

        Returns False (and leaves ``staging`` alone) when a complete object already sits there.
        A leftover directory without ``marker`` is garbage from a killed run and is replaced.
        ``manifest`` is already inside ``staging``; the rename publishes everything at once.
        """
        target = self.path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            try:
                os.rename(staging, target)
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            else:
                _fsync_dir(target.parent)
                return True
            if (target / marker).exists():
                return False
            self.remove_tree(rel)
        raise StoreError(f"could not move {staging} into place at {target}: it keeps reappearing")

    def fetch_tree(self, rel: str, dest: Path) -> None:
        shutil.copytree(self.path(rel), dest, dirs_exist_ok=True)

    def fetch_file(self, rel: str, dest: Path) -> None:
        shutil.copyfile(self.path(rel), dest)


def _timestamp(info: dict[str, Any]) -> float | None:
    """Modification time from an fsspec info dict, whatever the implementation calls it."""
    for name in ("mtime", "LastModified", "last_modified", "updated", "modified", "created"):
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value).timestamp()
            except ValueError:
                continue
    return None


class FsspecBackend:
    """A store root on any fsspec filesystem without atomic rename (s3://, gs://, memory://)."""

    is_local = False

    def __init__(self, fs: Any, base: str) -> None:
        self.fs = fs
        self.base = base.rstrip("/") or "/"

    def _full(self, rel: str) -> str:
        return posixpath.join(self.base, rel) if rel else self.base

    def uri(self, rel: str) -> str:
        return self.fs.unstrip_protocol(self._full(rel))

    def new_staging_dir(self, prefix: str) -> Path:
        return make_unique_dir(Path(tempfile.gettempdir()), prefix)

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self._full(rel)))

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self._full(rel))

    def open_read(self, rel: str) -> IO[bytes]:
        return self.fs.open(self._full(rel), "rb")

    def write_atomic(self, rel: str, data: bytes) -> None:
        # Object stores replace a key in one request; readers see the old or the new bytes.
        self.fs.pipe_file(self._full(rel), data)

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        path = self._full(rel)
        try:
            with self.fs.open(path, "xb") as handle:
                handle.write(data)
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError):
            # This filesystem has no exclusive create: check, then write (a small race remains).
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, data)
        return True

    def list_names(self, rel: str) -> list[str]:
        try:
            entries = self.fs.ls(self._full(rel), detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(entry.rstrip("/")) for entry in entries)

    def _find(self, rel: str, withdirs: bool = False) -> dict[str, dict[str, Any]]:
        base = self._full(rel).rstrip("/")
        try:
            found = self.fs.find(base, detail=True, withdirs=withdirs)
        except FileNotFoundError:
            return {}
        prefix = self.fs._strip_protocol(base).rstrip("/") + "/"
        return {
            path[len(prefix) :]: info for path, info in found.items() if path.startswith(prefix)
        }

    def list_files(self, rel: str) -> dict[str, int]:
        return {
            path: int(info.get("size") or 0)
            for path, info in self._find(rel).items()
            if info.get("type") != "directory"
        }

    def sizes(self, rel: str, names: Iterable[str]) -> dict[str, int]:
        """{name: size} of those files below ``rel`` that exist (one listing request)."""
        wanted = set(names)
        return {name: size for name, size in self.list_files(rel).items() if name in wanted}

    def newest_mtime(self, rel: str) -> float | None:
        times = [_timestamp(info) for info in self._find(rel, withdirs=True).values()]
        known = [value for value in times if value is not None]
        return max(known) if known else None

    def remove_file(self, rel: str) -> None:
        try:
            self.fs.rm_file(self._full(rel))
        except FileNotFoundError:
            pass

    def remove_tree(self, rel: str) -> None:
        try:
            self.fs.rm(self._full(rel), recursive=True)
        except FileNotFoundError:
            pass

    def move(self, rel: str, dest_rel: str) -> None:
        """Copy a file or a tree to ``dest_rel``, then remove the original (no rename here; an
        object half way through is seen as damaged, since ``has`` checks its files)."""
        if self.fs.isfile(self._full(rel)):
            self.fs.copy(self._full(rel), self._full(dest_rel))
            self.remove_file(rel)
            return
        names = self.list_files(rel)
        if not names:
            raise FileNotFoundError(self.uri(rel))
        for name in names:
            self.fs.copy(self._full(posixpath.join(rel, name)), self._full(posixpath.join(dest_rel, name)))
        self.remove_tree(rel)

    def install_object(self, staging: Path, rel: str, *, marker: str, manifest: str) -> bool:
        """Upload files, then ``manifest``, then ``marker`` (exclusively): the marker makes it visible.

        Without rename, two publishers of one key racing here may interleave file uploads; the
        exclusive marker still admits one of them, and a has() check right before uploading
        keeps the window small.
        """
        if self.exists(posixpath.join(rel, marker)):
            return False
        if self.exists(rel):
            self.remove_tree(rel)
        local_files = sorted(
            path.relative_to(staging).as_posix() for path in staging.rglob("*") if path.is_file()
        )
        ordered = [name for name in local_files if name not in (manifest, marker)] + [manifest]
        for name in ordered:
            self.fs.put_file(str(staging / name), self._full(posixpath.join(rel, name)))
        return self.create_exclusive(posixpath.join(rel, marker), (staging / marker).read_bytes())

    def fetch_tree(self, rel: str, dest: Path) -> None:
        for name in self.list_files(rel):
            local = dest / name
            local.parent.mkdir(parents=True, exist_ok=True)
            self.fetch_file(posixpath.join(rel, name), local)

    def fetch_file(self, rel: str, dest: Path) -> None:
        self.fs.get_file(self._full(rel), str(dest))
