"""Exceptions raised by the artifact store; every one names the offending value."""

from __future__ import annotations

REPAIR_COMMAND = "musika-piano store verify --repair"
"""The command that moves damaged objects and unreadable version files to the store's quarantine."""


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class CanonicalJSONError(StoreError, ValueError):
    """A value cannot be written as canonical JSON (NaN, infinity, non-string key, unknown type)."""


class InvalidNameError(StoreError, ValueError):
    """A dataset name, tag, stage name or reference does not follow the naming rules."""


class InvalidKeyError(StoreError, ValueError):
    """A string is neither an object key (64 hex digits) nor a content digest (sha256:<hex>)."""


class ReservedFileNameError(StoreError, ValueError):
    """A stage wrote a file whose name the store reserves for itself."""


class ObjectNotFoundError(StoreError, KeyError):
    """No complete object exists under the key."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "object not found"


class MissingObjectsError(StoreError):
    """A dataset version would reference objects that are not present in the store."""

    def __init__(self, name: str, missing: list[str]) -> None:
        self.name = name
        self.missing = missing
        shown = ", ".join(missing[:20]) + (
            f", ... ({len(missing)} in all)" if len(missing) > 20 else ""
        )
        super().__init__(
            f"refusing to publish dataset {name!r}: {len(missing)} listed object(s) are not in the "
            f"store or are damaged (`musika-piano store verify` tells which): {shown}"
        )


class DuplicateItemError(StoreError, ValueError):
    """The same item_id is listed twice in one dataset version."""


class DatasetNotFoundError(StoreError, LookupError):
    """No dataset of that name has any version."""


class VersionNotFoundError(StoreError, LookupError):
    """The dataset exists but not in the requested version."""


class TagNotFoundError(StoreError, LookupError):
    """The dataset has no tag of that name."""


class CorruptManifestError(StoreError):
    """A manifest file exists but cannot be read as the expected JSON document."""


class CorruptVersionError(CorruptManifestError):
    """A dataset's version file cannot be read; ``reason`` is why, without the advice."""

    def __init__(self, name: str, version: int, uri: str, reason: str) -> None:
        self.name = name
        self.version = version
        self.uri = uri
        self.reason = reason
        super().__init__(
            f"version {version} of dataset {name!r} is unreadable: {reason}. The next build of "
            f"the dataset publishes a new version past it; `{REPAIR_COMMAND}` moves the file to "
            f"the store's quarantine folder (or delete {uri})"
        )


class CorruptObjectError(ObjectNotFoundError):
    """An object is present but its files do not match its manifest (missing, other size or sha256).

    A subclass of ObjectNotFoundError: there is no usable object under the key. ``path`` is the
    file inside the object, ``expected``/``actual`` the manifest's and the found size or digest.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str,
        item_id: str | None = None,
        path: str | None = None,
        expected: str | None = None,
        actual: str | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.item_id = item_id
        self.path = path
        self.expected = expected
        self.actual = actual


class DestinationNotEmptyError(StoreError, FileExistsError):
    """An export was asked to write into a folder that already holds files."""


class InvalidLineageError(StoreError, ValueError):
    """A dataset's lineage mapping has unknown fields or values of the wrong type."""
