"""Evaluate stage: checkpoints and their reference data measured the same way (`tasks.evaluate.metrics`).

Subjects and their store objects (each holds `metrics.json`, and `embedding_stats.npz` with
the Gaussian fit of its clips' embedding frames when it has clips):

    reference   crops of `seconds` from the middle of up to `reference_items` items of a
                dataset version (first items by item id); stage `evaluate-reference`, keyed by
                the reference ref, `seconds` and the chosen items' object keys
    model       `samples` clips of `seconds` generated with seeds seed, seed + 1, ...
                (samples/sample-NN.wav, 16-bit) when the model has a `gan` item, and the
                autoencoder round trip error on crops of each `segment_lengths` of the same
                reference items; stage `evaluate-model`, keyed by the model ref, the settings,
                its gan/autoencoder object keys and the reference items' keys

The subject's ref is part of each key so that `metrics.json` names it exactly; the same
settings on the same objects find the object in the store and recompute nothing. The
comparison (Fréchet distances to the reference, the table) is cheap and built by the flow
from the stored objects.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from musika_model.audio import (
    AudioError,
    EmptyAudioError,
    audio_info,
    read_audio_window,
    resample,
    write_pcm16_wav,
)
from tasks.evaluate.metrics import (
    METRICS,
    SAMPLE_RATE,
    count_flags,
    embedding_frames,
    embedding_stats,
    frechet_distance,
    measure_clip,
    summarize,
)
from tasks.evaluate.params import EvaluateParams
from tasks.pipeline.audio_io import single_audio_file
from tasks.pipeline.batching import StageFailed
from tasks.pipeline.models import StoredModel
from tasks.store import ArtifactStore, DatasetItem, DatasetVersion, object_key

STAGE = "evaluate"
REFERENCE_STAGE = "evaluate-reference"
MODEL_STAGE = "evaluate-model"
STAGE_VERSION = 1
METRICS_FILE = "metrics.json"
EMBEDDING_FILE = "embedding_stats.npz"
SAMPLES_DIR = "samples"
REFERENCE_ITEM = "reference"

Kind = Literal["reference", "model"]


class NoUsableReference(StageFailed):
    """A reference dataset version without an item whose audio can be measured."""


@dataclass(frozen=True)
class SubjectPlan:
    """One subject's store object, known before anything runs."""

    subject: str
    kind: Kind
    stage: str
    params: Mapping[str, Any]
    inputs: tuple[str, ...]
    gan_key: str | None = None
    ae_key: str | None = None
    reference_keys: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return object_key(self.stage, STAGE_VERSION, self.params, self.inputs)


@dataclass(frozen=True)
class Crop:
    """A stretch of a reference item's audio (44.1 kHz stereo float32)."""

    item_id: str
    key: str
    offset_s: float
    audio: np.ndarray


# ---- planning ------------------------------------------------------------------------------------


def chosen_reference_items(reference: DatasetVersion, limit: int) -> list[DatasetItem]:
    """The first `limit` items of the reference by item id; NoUsableReference when it has none."""
    if not reference.items:
        raise NoUsableReference(f"reference {reference.ref} has no items to measure")
    return sorted(reference.items, key=lambda item: item.item_id)[:limit]


def plan_reference(reference: DatasetVersion, items: Sequence[DatasetItem], params: EvaluateParams) -> SubjectPlan:
    keys = tuple(item.key for item in items)
    return SubjectPlan(reference.ref, "reference", REFERENCE_STAGE,
                       {"subject": reference.ref, "seconds": params.seconds}, keys, reference_keys=keys)


def plan_model(model: StoredModel, reference_keys: Sequence[str], params: EvaluateParams) -> SubjectPlan:
    """A model with a gan is sampled (with its own autoencoder); one with an autoencoder is also
    measured on reconstructions of the reference items. NotAModelError subclasses say what is
    missing (a gan without an autoencoder cannot make audio)."""
    ae_key, _ = model.require_autoencoder()
    settings: dict[str, Any] = {"subject": model.ref, "segment_lengths": list(params.segment_lengths)}
    inputs: list[str] = [ae_key, *reference_keys]
    if model.gan_key is not None:
        settings.update(samples=params.samples, seconds=params.seconds, truncation=params.truncation,
                        seed=params.seed)
        inputs.insert(0, model.gan_key)
    return SubjectPlan(model.ref, "model", MODEL_STAGE, settings, tuple(inputs), gan_key=model.gan_key,
                       ae_key=ae_key, reference_keys=tuple(reference_keys))


def check_base_channels(model: StoredModel, base_channels: int | None) -> None:
    """Refuse a base_channels that differs from the model's GAN checkpoint, cheaply (no networks
    built), before anything is computed or found in the store."""
    if base_channels is None or model.gan_dir is None:
        return
    from musika_model.checkpoints import CheckpointMismatchError, read_checkpoint_info

    found = read_checkpoint_info(model.gan_dir, verify_hashes=False).gan.base_channels
    if found != base_channels:
        raise CheckpointMismatchError(
            f"{model.ref}: its checkpoint has base_channels={found}, but base_channels={base_channels} was asked for"
        )


# ---- audio in and out ----------------------------------------------------------------------------


def read_middle(path: Path, seconds: float) -> tuple[np.ndarray, float]:
    """(audio, offset in s) of the `seconds` around the middle of a file (the whole file when
    shorter), as 44.1 kHz stereo float32."""
    info = audio_info(path)
    wanted = min(info.frames, round(seconds * info.sample_rate))
    start = (info.frames - wanted) // 2
    audio, rate = read_audio_window(path, start, wanted)
    return resample(audio, rate), start / rate


def load_crops(
    store: ArtifactStore, items: Sequence[DatasetItem], seconds: float, min_seconds: float = 0.0
) -> tuple[list[Crop], list[dict[str, str]]]:
    """Middle crops of the items' audio (items shorter than `min_seconds` are left out), and
    the items that could not be read, with why."""
    crops, skipped = [], []
    for item in items:
        try:
            path = single_audio_file(store.local_path(item.key))
            if audio_info(path).duration < min_seconds:
                continue
            audio, offset = read_middle(path, seconds)
        except EmptyAudioError:
            skipped.append({"item_id": item.item_id, "reason": "empty audio"})
            continue
        except AudioError as error:
            skipped.append({"item_id": item.item_id, "reason": f"{type(error).__name__}: {error}"})
            continue
        if len(audio) == 0:
            skipped.append({"item_id": item.item_id, "reason": "empty audio"})
            continue
        crops.append(Crop(item.item_id, item.key, round(offset, 3), audio))
    return crops, skipped


def write_sample(path: Path, audio: np.ndarray) -> None:
    """16-bit PCM WAV; NaN/Inf written as 0 (they are flagged in the measures)."""
    write_pcm16_wav(path, np.nan_to_num(np.asarray(audio, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0),
                    SAMPLE_RATE)


# ---- measuring -----------------------------------------------------------------------------------


def set_flags(clips: Sequence[Mapping[str, Any]], noun: str) -> list[str]:
    """Set-level flags: e.g. "2/8 samples silent", one per clip flag that occurs."""
    return [f"{count}/{len(clips)} {noun} {flag}" for flag, count in sorted(count_flags(clips).items())]


def measure_clips(
    clips: Sequence[np.ndarray], described: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Per-clip rows (`described` fields first, then the measures) and embedding frames."""
    rows = [{**about, **measure_clip(audio)} for audio, about in zip(clips, described, strict=True)]
    return rows, [embedding_frames(audio) for audio in clips]


def subject_document(subject: str, kind: Kind, clips: list[dict[str, Any]], flags: list[str], **more: Any) -> dict[str, Any]:
    return {"subject": subject, "kind": kind, "summary": summarize(clips), "clips": clips, "flags": flags, **more}


def write_result(out_dir: Path, result: Mapping[str, Any], frames: Sequence[np.ndarray]) -> None:
    """metrics.json (strict JSON: undefined measures are null) and, with clips, the embedding
    statistics."""
    (out_dir / METRICS_FILE).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    if frames:
        mean, cov = embedding_stats(frames)
        np.savez(out_dir / EMBEDDING_FILE, mean=mean, cov=cov)


def measure_reference(crops: Sequence[Crop], skipped: Sequence[Mapping[str, str]], subject: str) -> tuple[
        dict[str, Any], list[np.ndarray]]:
    described = [{"file": None, "seed": None, "item_id": c.item_id, "offset_s": c.offset_s,
                  "seconds": round(len(c.audio) / SAMPLE_RATE, 3)} for c in crops]
    rows, frames = measure_clips([c.audio for c in crops], described)
    flags = set_flags(rows, "clips") + [f"item {s['item_id']} unreadable: {s['reason']}" for s in skipped]
    return subject_document(subject, REFERENCE_ITEM, rows, flags, skipped=list(skipped)), frames


def reconstruction_rows(
    autoencoder: Any, crops_by_length: Mapping[float, Sequence[Crop]], seed: int
) -> list[dict[str, Any]]:
    """Per segment length: mean log-spectral distance (dB) and multi-resolution STFT loss of the
    autoencoder round trip over the crops of that length (null when no item is long enough)."""
    from musika_model.ae_training import reconstruction_metrics

    rows = []
    for seconds, crops in crops_by_length.items():
        measured = [reconstruction_metrics(autoencoder, crop.audio, seed=seed) for crop in crops]
        lsd = [m["log_spectral_distance_db"] for m in measured if math.isfinite(m["log_spectral_distance_db"])]
        stft = [m["mr_stft"] for m in measured if math.isfinite(m["mr_stft"])]
        rows.append({"seconds": seconds, "lsd_db": float(np.mean(lsd)) if lsd else None,
                     "mr_stft": float(np.mean(stft)) if stft else None, "clips": len(measured),
                     "items": [crop.item_id for crop in crops]})
    return rows


def generate_clips(generator: Any, autoencoder: Any, params: EvaluateParams, log: Any) -> list[np.ndarray]:
    """One clip per seed seed + i, so a clip does not depend on how many are asked for."""
    from musika_model.generation import generate

    clips = []
    for index in range(params.samples):
        clips.extend(generate(generator, autoencoder, params.seconds, 1, params.truncation, params.seed + index))
        log(f"sample {index + 1}/{params.samples} generated")
    return clips


def measure_model(
    store: ArtifactStore,
    plan: SubjectPlan,
    reference_items: Sequence[DatasetItem],
    params: EvaluateParams,
    out_dir: Path,
    log: Any,
) -> dict[str, Any]:
    """Generate and measure samples (with a gan), measure reconstructions (with an
    autoencoder), write the object's files; returns its summary."""
    from tasks.pipeline.models import load_autoencoder, load_generator

    autoencoder = load_autoencoder(store.root, plan.ae_key)
    clips: list[dict[str, Any]] = []
    frames: list[np.ndarray] = []
    if plan.gan_key is not None:
        generator = load_generator(store.root, plan.gan_key, params.base_channels)
        audio = generate_clips(generator, autoencoder, params, log)
        described = []
        for index, sample in enumerate(audio):
            name = f"{SAMPLES_DIR}/sample-{index:02d}.wav"
            write_sample(out_dir / name, sample)
            described.append({"file": name, "seed": params.seed + index})
        clips, frames = measure_clips(audio, described)
    crops_by_length = {length: load_crops(store, reference_items, length, min_seconds=length)[0]
                       for length in params.segment_lengths}
    reconstruction = reconstruction_rows(autoencoder, crops_by_length, params.seed)
    result = subject_document(plan.subject, "model", clips, set_flags(clips, "samples"), reconstruction=reconstruction)
    write_result(out_dir, result, frames)
    return result["summary"]


# ---- the comparison ------------------------------------------------------------------------------


def read_result(store: ArtifactStore, key: str) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray] | None]:
    """A subject object's metrics.json and its (mean, cov) embedding statistics (None without clips)."""
    folder = store.local_path(key)
    result = json.loads((folder / METRICS_FILE).read_text())
    stats_path = folder / EMBEDDING_FILE
    if not stats_path.is_file():
        return result, None
    with np.load(stats_path) as stats:
        return result, (stats["mean"], stats["cov"])


def mean_reconstruction_lsd(result: Mapping[str, Any]) -> float | None:
    values = [row["lsd_db"] for row in result.get("reconstruction") or [] if row.get("lsd_db") is not None]
    return float(np.mean(values)) if values else None


def comparison_row(
    result: Mapping[str, Any],
    stats: tuple[np.ndarray, np.ndarray] | None,
    reference_stats: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, Any]:
    """One table row: subject, kind, every METRICS measure, and the Fréchet distance of the
    subject's embedding statistics to the reference's (null when either has no clips)."""
    summary = result.get("summary") or {}
    row: dict[str, Any] = {"subject": result["subject"], "kind": result["kind"]}
    for name in METRICS:
        row[name] = summary.get(name)
    row["reconstruction_lsd_db"] = mean_reconstruction_lsd(result)
    if result["kind"] == REFERENCE_ITEM:
        row["frechet_distance"] = 0.0
    elif stats is None or reference_stats is None:
        row["frechet_distance"] = None
    else:
        row["frechet_distance"] = frechet_distance(*stats, *reference_stats)
    return {name: _rounded(value) for name, value in row.items()}


def _rounded(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def flag_lines(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """"<subject>: <flag>" for every set-level flag of every subject."""
    return [f"{result['subject']}: {flag}" for result in results for flag in result.get("flags") or []]


# ---- Prefect tasks -------------------------------------------------------------------------------


def _publish(store: ArtifactStore, plan: SubjectPlan, item: str, write: Any) -> dict[str, Any]:
    if store.has(plan.key):
        return {"subject": plan.subject, "key": plan.key, "created": False}
    with store.publish_object(plan.stage, STAGE_VERSION, plan.params, plan.inputs, item=item) as staged:
        staged.stats.update(write(staged.dir))
    return {"subject": plan.subject, "key": staged.key, "created": not staged.reused}


@task(name="evaluate-reference", cache_policy=NO_CACHE)
def evaluate_reference(store_root: str, plan: SubjectPlan, items: list[DatasetItem], seconds: float) -> dict[str, Any]:
    """Measure the reference crops into the store (or find them there); NoUsableReference when
    no item can be read."""
    logger = get_run_logger()
    store = ArtifactStore(store_root)

    def write(out_dir: Path) -> dict[str, Any]:
        crops, skipped = load_crops(store, items, seconds)
        if not crops:
            reasons = "; ".join(f"{s['item_id']}: {s['reason']}" for s in skipped[:3])
            raise NoUsableReference(f"reference {plan.subject}: none of its {len(items)} items could be read "
                                    f"({reasons})")
        result, frames = measure_reference(crops, skipped, plan.subject)
        write_result(out_dir, result, frames)
        logger.info("reference %s: %d clips measured, %d unreadable", plan.subject, len(crops), len(skipped))
        return result["summary"]

    return _publish(store, plan, REFERENCE_ITEM, write)


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_model(
    store_root: str,
    plan: SubjectPlan,
    reference_items: list[DatasetItem],
    params: EvaluateParams,
) -> dict[str, Any]:
    """Generate, reconstruct and measure one model into the store (or find it there)."""
    logger = get_run_logger()
    store = ArtifactStore(store_root)

    def log(message: str) -> None:
        logger.info("%s: %s", plan.subject, message)

    return _publish(store, plan, plan.subject,
                    lambda out_dir: measure_model(store, plan, reference_items, params, out_dir, log))
