"""Encode stage: each item of a normalized dataset version -> float32 (T, 128) latents.

One item per dataset item; its object key hashes the upstream object and the autoencoder
object, so a re-run with the same model finds every latents object in the store and a new
model gives new keys. Items are whole segments: no fixed-length chunking here (docs/stage-contracts.md §7).
The autoencoder is loaded once per worker process and reused by every batch it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from prefect import get_run_logger, task

from tasks.pipeline.audio_io import single_audio_file
from tasks.pipeline.batching import ItemFailed, ItemOutcome, WorkItem, count_statuses, run_batch
from tasks.pipeline.caching import STORE_OBJECTS
from tasks.pipeline.models import load_autoencoder
from tasks.store import ArtifactStore, DatasetVersion, object_key

if TYPE_CHECKING:
    from musika_model.codec import Autoencoder

STAGE = "encode"
STAGE_VERSION = 1
LATENTS_FILE = "latents.npy"
_UPSTREAM_STATS = ("duration_s", "notes", "note_density", "lufs_after")


def plan_encode_items(dataset: DatasetVersion, ae_key: str) -> list[WorkItem]:
    """One encode item per dataset item, keyed by the item's object and the autoencoder object."""
    return [
        WorkItem(
            item.item_id,
            object_key(STAGE, STAGE_VERSION, {}, (item.key, ae_key)),
            (item.key, ae_key),
            {},
            {"dataset": dataset.ref, **{name: item.stats[name] for name in _UPSTREAM_STATS if name in item.stats}},
        )
        for item in dataset.items
    ]


def encode_item(store: ArtifactStore, autoencoder: Autoencoder, item: WorkItem, out_dir: Path) -> dict[str, Any]:
    """Encode the upstream object's audio into `out_dir/latents.npy`; bad audio becomes `ItemFailed`."""
    from musika_model.audio import AudioError
    from musika_model.codec import CodecError, check_latents

    audio_path = single_audio_file(store.local_path(item.inputs[0]))
    try:
        result = autoencoder.encode_file(audio_path)
        latents = check_latents(result.latents)
    except (AudioError, CodecError) as error:
        raise ItemFailed("encode", f"{audio_path}: cannot encode ({type(error).__name__}: {error})") from error
    np.save(out_dir / LATENTS_FILE, latents)
    return {
        "latent_frames": int(latents.shape[0]),
        "padded_samples": int(result.padded_samples),
        "duration_s": round(result.duration, 3),
        "mean": round(float(latents.mean()), 6),
        "std": round(float(latents.std()), 6),
    }


@task(name="encode-batch", cache_policy=STORE_OBJECTS, persist_result=True)
def encode_batch(items: list[WorkItem], store_root: str, ae_key: str, retry_failed: bool = False) -> list[ItemOutcome]:
    """Encode a batch of items into the store with this worker's cached autoencoder."""
    logger = get_run_logger()
    store = ArtifactStore(store_root)
    autoencoder = load_autoencoder(store_root, ae_key)
    outcomes = run_batch(
        store, STAGE, STAGE_VERSION, items, lambda item, out_dir: encode_item(store, autoencoder, item, out_dir),
        log=logger.warning, retry_failed=retry_failed,
    )
    logger.info("encode: %s", count_statuses(outcomes))
    return outcomes
