"""Model checkpoints in the artifact store: importing official Musika weight folders.

An imported folder becomes one store object per network set (the autoencoder, the GAN with
its optimizer state and R1 switch), keyed by the files' contents, and a version of a named
model listing them. The files are checked by loading them into the networks first, so a
truncated file or a wrong configuration is refused before anything is published.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tasks.store import ArtifactStore, DatasetVersion, file_digest

STAGE = "checkpoint-import"
STAGE_VERSION = 1


def _official_sets() -> dict[str, list[str]]:
    from musika_model import official

    return {
        "autoencoder": list(official.AE_FILE_NAMES.values()),
        "gan": [*official.GAN_FILE_NAMES.values(), official.GENERATOR_OPTIMIZER_FILE,
                official.CRITIC_OPTIMIZER_FILE, official.SWITCH_FILE],
    }


def default_model_name(folder: Path) -> str:
    """`musika-<folder name>`, lowercased to what dataset names allow."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", folder.resolve().name.lower()).strip("-._") or "checkpoint"
    return f"musika-{slug}"


def import_official_checkpoint(store: ArtifactStore, folder: Path, name: str | None = None) -> DatasetVersion:
    """Validate an official-layout folder by loading it, then publish its network sets."""
    from musika_model.official import import_musika

    folder = Path(folder)
    metadata = import_musika(folder).metadata()
    items = []
    for kind, names in _official_sets().items():
        if kind not in metadata:
            continue
        present = [file for file in names if (folder / file).exists()]
        digests = [file_digest(folder / file) for file in present]
        with store.publish_object(STAGE, STAGE_VERSION, {"kind": kind, "files": present}, digests,
                                  item=kind) as staged:
            for file in present:
                shutil.copyfile(folder / file, staged.dir / file)
            staged.stats.update(metadata[kind])
        items.append({"item_id": kind, "key": staged.key, "stats": metadata[kind]})
    return store.publish_dataset(
        name or default_model_name(folder),
        stage="checkpoint",
        params={"format": "musika-official-h5", "sets": [item["item_id"] for item in items]},
        items=items,
        lineage={"sources": [str(folder.resolve())]},
        stats={kind: metadata[kind] for kind in ("autoencoder", "gan") if kind in metadata},
    )
