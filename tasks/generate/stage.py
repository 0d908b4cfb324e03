"""Generate stage: samples of a stored model, one store object per (model, length, truncation, seed).

Sample i of a request uses seed `seed + i`, so asking for more samples later reuses the first
ones, and the same request twice generates nothing. Samples are 16-bit stereo WAV at 44.1 kHz.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from musika_model.audio import write_pcm16_wav
from tasks.generate.params import GenerateParams
from tasks.pipeline.batching import ItemFailed, ItemOutcome, WorkItem, count_statuses, run_batch
from tasks.pipeline.models import StoredModel, load_autoencoder, load_generator
from tasks.store import ArtifactStore, object_key

STAGE = "generate"
STAGE_VERSION = 1
SAMPLE_FILE = "sample.wav"


def plan_samples(model: StoredModel, request: GenerateParams) -> list[WorkItem]:
    """One item per sample, keyed by the model's two network objects and the sample's settings."""
    ae_key, _ = model.require_autoencoder()
    gan_key, _ = model.require_gan()
    items = []
    for index in range(request.count):
        params = request.sample_key_params(index)
        items.append(WorkItem(f"sample-{index:03d}", object_key(STAGE, STAGE_VERSION, params, (gan_key, ae_key)),
                              (gan_key, ae_key), params, {"model": model.ref}))
    return items


def generate_sample(store_root: str, item: WorkItem, out_dir: Path, base_channels: int | None) -> dict[str, Any]:
    """Generate one sample into `out_dir/sample.wav`; non-finite output becomes `ItemFailed`."""
    from musika_model.generation import generate

    gan_key, ae_key = item.inputs
    generator = load_generator(store_root, gan_key, base_channels)
    autoencoder = load_autoencoder(store_root, ae_key)
    params = item.params
    audio = generate(generator, autoencoder, params["seconds"], 1, params["truncation"], params["seed"])[0]
    if not np.isfinite(audio).all():
        raise ItemFailed("non-finite", f"seed {params['seed']}: the model produced NaN/Inf audio")
    write_pcm16_wav(out_dir / SAMPLE_FILE, audio, 44100)
    peak = float(np.abs(audio).max())
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return {"duration_s": round(len(audio) / 44100, 3), "seed": params["seed"],
            "peak_dbfs": round(20 * np.log10(max(peak, 1e-10)), 2),
            "rms_dbfs": round(20 * np.log10(max(rms, 1e-10)), 2)}


@task(name="generate-samples", cache_policy=NO_CACHE)
def generate_samples(store_root: str, items: list[WorkItem], base_channels: int | None = None) -> list[ItemOutcome]:
    """Generate the samples not yet in the store (networks loaded once per process)."""
    logger = get_run_logger()
    store = ArtifactStore(store_root)
    outcomes = run_batch(store, STAGE, STAGE_VERSION, items,
                         lambda item, out_dir: generate_sample(store_root, item, out_dir, base_channels),
                         log=logger.warning, retry_failed=True)
    logger.info("generate: %s", count_statuses(outcomes))
    return outcomes
