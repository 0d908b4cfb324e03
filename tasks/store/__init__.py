"""The versioned, content-addressed artifact store (pure Python; no Prefect).

Typical use by a stage::

    store = ArtifactStore()                       # $MUSIKA_PIANO_DATA or <project>/data/store
    key = object_key("render", 1, params, [file_digest(midi_path)])
    if not store.has(key):
        with store.publish_object("render", 1, params, [file_digest(midi_path)], item=item_id) as obj:
            write_audio(obj.dir / "audio.flac")
            obj.stats["duration_s"] = duration
    store.publish_dataset("piano-midi-rendered", stage="render", params=params,
                          items=[DatasetItem(item_id, key, {"duration_s": duration})],
                          lineage={"sources": [...]}, stats={...}, failures=[...])
"""

from tasks.store.artifact_store import ArtifactStore
from tasks.store.canonical import (
    canonical_json,
    file_digest,
    is_object_key,
    object_key,
    parse_ref,
    validate_dataset_name,
    validate_tag,
)
from tasks.store.errors import (
    REPAIR_COMMAND,
    CanonicalJSONError,
    CorruptManifestError,
    CorruptObjectError,
    CorruptVersionError,
    DatasetNotFoundError,
    DestinationNotEmptyError,
    DuplicateItemError,
    InvalidKeyError,
    InvalidLineageError,
    InvalidNameError,
    MissingObjectsError,
    ObjectNotFoundError,
    ReservedFileNameError,
    StoreError,
    TagNotFoundError,
    VersionNotFoundError,
)
from tasks.store.layout import MANIFEST_NAME, MARKER_NAME
from tasks.store.maintenance import EXPORT_MANIFEST_NAME, item_folder_names
from tasks.store.models import (
    DatasetDiff,
    DatasetItem,
    DatasetShow,
    DatasetSummary,
    DatasetVersion,
    Failure,
    FileEntry,
    GcReport,
    ItemChange,
    Lineage,
    LineageNode,
    ObjectManifest,
    Repair,
    ValueChange,
    VerifyProblem,
    VerifyReport,
    VersionSummary,
)
from tasks.store.objects import ENV_STORE_ROOT, StagingObject, default_store_root

__all__ = [
    "ENV_STORE_ROOT",
    "EXPORT_MANIFEST_NAME",
    "MANIFEST_NAME",
    "MARKER_NAME",
    "REPAIR_COMMAND",
    "ArtifactStore",
    "CanonicalJSONError",
    "CorruptManifestError",
    "CorruptObjectError",
    "CorruptVersionError",
    "DatasetDiff",
    "DatasetItem",
    "DatasetNotFoundError",
    "DatasetShow",
    "DatasetSummary",
    "DatasetVersion",
    "DestinationNotEmptyError",
    "DuplicateItemError",
    "Failure",
    "FileEntry",
    "GcReport",
    "InvalidKeyError",
    "InvalidLineageError",
    "InvalidNameError",
    "ItemChange",
    "Lineage",
    "LineageNode",
    "MissingObjectsError",
    "ObjectManifest",
    "ObjectNotFoundError",
    "Repair",
    "ReservedFileNameError",
    "StagingObject",
    "StoreError",
    "TagNotFoundError",
    "ValueChange",
    "VerifyProblem",
    "VerifyReport",
    "VersionNotFoundError",
    "VersionSummary",
    "canonical_json",
    "default_store_root",
    "file_digest",
    "is_object_key",
    "item_folder_names",
    "object_key",
    "parse_ref",
    "validate_dataset_name",
    "validate_tag",
]
