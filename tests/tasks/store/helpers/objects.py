"""Small objects and damage for the store tests."""

from __future__ import annotations

from pathlib import Path

from tasks.store import ArtifactStore


def put(
    store: ArtifactStore, stage: str, payload: bytes, *, inputs=(), params=None, item=None
) -> str:
    """Publish one object holding ``data.bin`` = payload; return its key."""
    with store.publish_object(
        stage, 1, params or {"payload": payload.hex()[:32]}, list(inputs), item=item
    ) as obj:
        (obj.dir / "data.bin").write_bytes(payload)
        obj.stats["size"] = len(payload)
    return obj.key


def object_dir(store: ArtifactStore, key: str) -> Path:
    """The directory of an object in a local store, damaged or not (``local_path`` refuses damage)."""
    return store.backend.path(f"objects/{key[:2]}/{key}")


def flip_byte(path: Path, offset: int = 100) -> None:
    """Invert one byte in place: the size stays, the sha256 changes."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
