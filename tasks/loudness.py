"""Loudness normalization to an integrated LUFS target under a true-peak ceiling.

Pure functions, no Prefect and no store. Loudness is ITU-R BS.1770-4 integrated loudness
(pyloudnorm); true peak is the sample peak of the signal oversampled 4x (BS.1770-4 Annex 2),
here with the windowed-sinc interpolator scipy's ``resample_poly`` uses for 4x.

Both scale exactly with a linear gain, so the common case measures each once, on the input.
Only audio that went through the limiter is measured again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyloudnorm
from prefect import get_run_logger, task
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import firwin, upfirdn

from tasks.audio_io import (
    AudioFormatError,
    amplitude_to_db,
    as_stereo_float32,
    read_wav,
    single_audio_file,
    write_wav,
)
from tasks.batching import ItemFailed, ItemOutcome, WorkItem, count_statuses, run_batch
from tasks.caching import STORE_OBJECTS
from tasks.store import ArtifactStore, object_key

PYLOUDNORM_MIN_SECONDS = 0.4  # one gating block; pyloudnorm raises on shorter input
OVERSAMPLING = 4
_HALF_TAPS = 10 * OVERSAMPLING
_INTERPOLATOR = (
    firwin(2 * _HALF_TAPS + 1, 1.0 / OVERSAMPLING, window=("kaiser", 5.0)) * OVERSAMPLING
)
# No interpolated value can exceed this many times the largest input sample within reach of the
# filter, which bounds where inter-sample peaks above a given level can possibly hide.
_INTERPOLATOR_GAIN_BOUND = max(
    float(np.abs(_INTERPOLATOR[phase::OVERSAMPLING]).sum()) for phase in range(OVERSAMPLING)
)
_REGION_MERGE_GAP = 4096  # candidate regions closer than this are oversampled in one call

LIMITER_RAMP_S = 0.005  # attack and release ramps of the gain envelope
LIMITER_HOLD_S = 0.020  # gain stays down this long around a peak before releasing
LIMITER_MARGIN_DB = 0.1  # limiter threshold under the ceiling (modulation adds a little peak)
LIMITER_PASSES = 5
LOUDNESS_CONVERGENCE_LU = 0.1
LOUDNESS_TOLERANCE_LU = 0.5  # the stage's promise (DESIGN §2)

ReasonCode = Literal[
    "silent", "too_short", "peak_exceeds_ceiling", "excessive_gain", "non_finite", "bad_shape"
]


class ItemRejected(Exception):
    """An item the loudness stage drops, with a machine-readable reason for the manifest."""

    def __init__(self, reason_code: ReasonCode, message: str) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message


class InvalidLoudnessParams(ValueError):
    pass


@dataclass(frozen=True)
class LoudnessParams:
    """Loudness target and what happens when reaching it would push peaks over the ceiling.

    peak_policy:
      - "limit" (default): after the gain, a transparent look-ahead peak limiter (5 ms ramps,
        20 ms hold, driven by the 4x oversampled signal) keeps the true peak under
        ``peak_ceiling_dbfs``; loudness is then re-measured and the gain corrected, so the
        result stays within 0.5 LU of the target. Items that would need more than
        ``max_limiting_db`` of gain reduction are rejected: that much limiting is audible.
        Chosen as default because piano's peak-to-loudness ratio often exceeds the 19 dB that
        -20 LUFS under -1 dBTP allows on its loudest chords; rejecting those would drop the
        most dynamic pieces from a dataset.
      - "reject": such items are rejected with the gain they need and the true peak it would
        reach.
    min_duration_s: shorter items are rejected (pyloudnorm needs >= 0.4 s).
    max_gain_db: items needing more gain are near-silence and rejected.
    silence_threshold_lufs: items quieter than this count as silent (BS.1770's absolute gate).
    """

    target_lufs: float = -20.0
    peak_ceiling_dbfs: float = -1.0
    peak_policy: Literal["limit", "reject"] = "limit"
    min_duration_s: float = 1.0
    max_gain_db: float = 40.0
    max_limiting_db: float = 12.0
    silence_threshold_lufs: float = -70.0

    def __post_init__(self) -> None:
        if self.peak_policy not in ("limit", "reject"):
            raise InvalidLoudnessParams(
                f"peak_policy must be 'limit' or 'reject', got {self.peak_policy!r}"
            )
        if not self.peak_ceiling_dbfs <= 0:
            raise InvalidLoudnessParams(
                f"peak_ceiling_dbfs must be <= 0 dBFS, got {self.peak_ceiling_dbfs}"
            )
        if not self.target_lufs < self.peak_ceiling_dbfs:
            raise InvalidLoudnessParams(
                f"target_lufs ({self.target_lufs}) must be below the peak ceiling "
                f"({self.peak_ceiling_dbfs} dBFS)"
            )
        if not self.min_duration_s >= PYLOUDNORM_MIN_SECONDS:
            raise InvalidLoudnessParams(
                f"min_duration_s must be >= {PYLOUDNORM_MIN_SECONDS} s (one BS.1770 block), "
                f"got {self.min_duration_s}"
            )
        if not self.max_gain_db > 0:
            raise InvalidLoudnessParams(f"max_gain_db must be > 0, got {self.max_gain_db}")
        if not self.max_limiting_db > 0:
            raise InvalidLoudnessParams(f"max_limiting_db must be > 0, got {self.max_limiting_db}")

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


@dataclass(frozen=True)
class LoudnessResult:
    audio: np.ndarray  # (n, 2) float32
    sample_rate: int
    lufs_before: float
    lufs_after: float
    true_peak_before_dbtp: float
    true_peak_after_dbtp: float
    gain_db: float  # static gain applied before the limiter
    limited: bool
    limiter_reduction_db: float  # deepest gain reduction of the limiter, 0 when it did not act

    def stats(self) -> dict[str, float | bool]:
        """Everything but the audio, for manifests and reports."""
        fields = asdict(self)
        del fields["audio"]
        return fields


@lru_cache(maxsize=8)
def _meter(sample_rate: int) -> pyloudnorm.Meter:
    return pyloudnorm.Meter(sample_rate)


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness in LUFS; -inf when everything is under the absolute gate."""
    # pyloudnorm is about twice as fast on float64 as on float32.
    return float(_meter(int(sample_rate)).integrated_loudness(np.asarray(audio, dtype=np.float64)))


def _oversampled(block: np.ndarray) -> np.ndarray:
    """4x interpolation of (n, channels); output sample 4*i + _HALF_TAPS is input sample i."""
    return upfirdn(_INTERPOLATOR, block, up=OVERSAMPLING, axis=0)


def _channel_max(values: np.ndarray) -> np.ndarray:
    """Row-wise max of (n, channels); much faster than ``max(axis=1)`` for few channels."""
    result = values[:, 0]
    for channel in range(1, values.shape[1]):
        result = np.maximum(result, values[:, channel])
    return result


def _regions_above(envelope: np.ndarray, level: float) -> Iterator[tuple[int, int, int]]:
    """(lo, start, end) slices whose oversampled values in [start, end) may exceed ``level``.

    An interpolated value depends only on the input samples within the interpolator's reach
    and is at most (the interpolator's gain bound) times the largest of them, so only the
    neighbourhoods of samples above level / bound can exceed ``level`` (a few percent of
    typical music when ``level`` is the sample peak). ``lo`` is where to start the slice that
    is oversampled so that [start, end) has its whole filter support.
    """
    loud = np.flatnonzero(envelope * _INTERPOLATOR_GAIN_BOUND > level)
    if loud.size == 0:
        return
    n = envelope.shape[0]
    context = _HALF_TAPS // OVERSAMPLING + 1  # input samples an interpolated value depends on
    breaks = np.flatnonzero(np.diff(loud) > _REGION_MERGE_GAP)
    starts = np.maximum(np.concatenate(([loud[0]], loud[breaks + 1])) - context, 0)
    ends = np.minimum(np.concatenate((loud[breaks], [loud[-1]])) + context + 1, n)
    for start, end in zip(starts.tolist(), ends.tolist()):
        yield max(0, start - context), start, end


def _oversampled_region(samples: np.ndarray, lo: int, start: int, end: int) -> np.ndarray:
    """|4x oversampled| values at input positions [start, end), as (end - start, 4), max over
    channels. The slice reaches ``context`` samples further so the cut edges do not ring.
    """
    hi = min(samples.shape[0], end + (start - lo) + _HALF_TAPS // OVERSAMPLING + 1)
    first = _HALF_TAPS + OVERSAMPLING * (start - lo)
    upsampled = _oversampled(samples[lo:hi])[first : first + OVERSAMPLING * (end - start)]
    return _channel_max(np.abs(upsampled)).reshape(end - start, OVERSAMPLING)


def true_peak(audio: np.ndarray) -> float:
    """Largest absolute value of the 4x oversampled signal (linear, not dB).

    Only the regions that can hold a value above the sample peak are oversampled.
    """
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.shape[0] == 0:
        return 0.0
    envelope = _channel_max(np.abs(samples))
    peak = float(envelope.max())
    if peak == 0.0:
        return 0.0
    for lo, start, end in _regions_above(envelope, peak):
        peak = max(peak, float(_oversampled_region(samples, lo, start, end).max()))
    return peak


def true_peak_dbtp(audio: np.ndarray) -> float:
    return amplitude_to_db(true_peak(audio))


def _true_peak_envelope(samples: np.ndarray, level: float) -> np.ndarray:
    """Per input sample n, the largest oversampled |value| over [n - 1, n + 1), exact wherever
    it can exceed ``level`` (elsewhere the sample envelope, which is below ``level``).
    """
    envelope = _channel_max(np.abs(samples))
    for lo, start, end in _regions_above(envelope, level):
        envelope[start:end] = _oversampled_region(samples, lo, start, end).max(axis=1)
    return np.maximum(envelope, np.concatenate(([0.0], envelope[:-1])).astype(envelope.dtype))


def limit_peaks(audio: np.ndarray, sample_rate: int, threshold: float) -> tuple[np.ndarray, float]:
    """Look-ahead peak limiter: returns the limited audio and its deepest reduction in dB.

    The gain each sample needs (threshold / true-peak envelope) is spread by a minimum filter
    over twice the ramp plus the hold on each side, then smoothed by two moving averages of
    one ramp each. Every smoothed value averages minima whose windows contain the sample, so
    the gain never rises above what the sample needs: peaks are caught with no overshoot,
    and the gain moves in smooth ramps instead of sample-wise steps (no distortion).
    """
    envelope = _true_peak_envelope(audio, threshold)
    needed = np.minimum(1.0, threshold / np.maximum(envelope, 1e-12))
    if needed.min() >= 1.0:
        return audio, 0.0
    ramp = 2 * int(LIMITER_RAMP_S * sample_rate / 2) + 1
    reach = 2 * (ramp - 1) + int(LIMITER_HOLD_S * sample_rate)
    floor = minimum_filter1d(needed, size=2 * reach + 1, mode="nearest")
    gain = uniform_filter1d(uniform_filter1d(floor, ramp, mode="nearest"), ramp, mode="nearest")
    gain = np.minimum(gain, needed)  # guards float rounding in the averages
    limited = (audio * gain[:, None]).astype(np.float32)
    return limited, -amplitude_to_db(float(gain.min()))


def _prepare(audio: np.ndarray, sample_rate: int, params: LoudnessParams) -> np.ndarray:
    try:
        samples = as_stereo_float32(audio)
    except AudioFormatError as error:
        raise ItemRejected("bad_shape", str(error)) from error
    if not np.isfinite(samples).all():
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise ItemRejected("non_finite", f"audio has {bad} NaN or infinite samples")
    duration = samples.shape[0] / float(sample_rate)
    if duration < params.min_duration_s:
        raise ItemRejected(
            "too_short", f"{duration:.2f} s is shorter than the minimum {params.min_duration_s} s"
        )
    return samples


def normalize_loudness(
    audio: np.ndarray, sample_rate: int, params: LoudnessParams | None = None
) -> LoudnessResult:
    """Bring audio to ``params.target_lufs`` with its true peak under the ceiling.

    Accepts (n,), (n, 1) or (n, 2) float or integer PCM (integers are scaled by their range;
    mono is duplicated to stereo). Raises ItemRejected with a reason code for items the stage
    drops: non_finite, too_short, silent, excessive_gain, peak_exceeds_ceiling, bad_shape.
    """
    settings = params or LoudnessParams()
    samples = _prepare(audio, sample_rate, settings)
    lufs_before = integrated_loudness(samples, sample_rate)
    if not np.isfinite(lufs_before) or lufs_before < settings.silence_threshold_lufs:
        raise ItemRejected(
            "silent",
            f"integrated loudness {lufs_before:.1f} LUFS is under the silence threshold "
            f"{settings.silence_threshold_lufs} LUFS",
        )
    gain_db = settings.target_lufs - lufs_before
    if gain_db > settings.max_gain_db:
        raise ItemRejected(
            "excessive_gain",
            f"needs {gain_db:.1f} dB of gain (limit {settings.max_gain_db} dB): "
            f"{lufs_before:.1f} LUFS is near-silence",
        )
    peak_before = true_peak_dbtp(samples)
    peak_after_gain = peak_before + gain_db
    if peak_after_gain <= settings.peak_ceiling_dbfs:
        return LoudnessResult(
            audio=(samples * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32),
            sample_rate=int(sample_rate),
            lufs_before=lufs_before,
            lufs_after=lufs_before + gain_db,
            true_peak_before_dbtp=peak_before,
            true_peak_after_dbtp=peak_after_gain,
            gain_db=gain_db,
            limited=False,
            limiter_reduction_db=0.0,
        )
    overshoot = peak_after_gain - settings.peak_ceiling_dbfs
    if settings.peak_policy == "reject" or overshoot > settings.max_limiting_db:
        why = (
            ""
            if settings.peak_policy == "reject"
            else f"; limiting {overshoot:.1f} dB is over the limit of {settings.max_limiting_db} dB"
        )
        raise ItemRejected(
            "peak_exceeds_ceiling",
            f"needs {gain_db:.1f} dB of gain; true peak would reach {peak_after_gain:.1f} dBTP "
            f"(ceiling {settings.peak_ceiling_dbfs} dBTP){why}",
        )
    return _normalize_with_limiter(samples, sample_rate, settings, lufs_before, peak_before)


def _normalize_with_limiter(
    samples: np.ndarray,
    sample_rate: int,
    settings: LoudnessParams,
    lufs_before: float,
    peak_before: float,
) -> LoudnessResult:
    """Gain, limit, re-measure, correct the gain; repeat until loudness and peak both hold."""
    gain_db = settings.target_lufs - lufs_before
    threshold_db = settings.peak_ceiling_dbfs - LIMITER_MARGIN_DB
    best: tuple[np.ndarray, float, float, float, float] | None = None
    previous: tuple[float, float] | None = None  # (gain_db, lufs) of the last measured pass
    for _ in range(LIMITER_PASSES):
        amplified = samples * np.float32(10.0 ** (gain_db / 20.0))
        limited, reduction_db = limit_peaks(amplified, sample_rate, 10.0 ** (threshold_db / 20.0))
        peak_after = true_peak_dbtp(limited)
        if peak_after > settings.peak_ceiling_dbfs:
            threshold_db -= peak_after - settings.peak_ceiling_dbfs + LIMITER_MARGIN_DB
            continue
        lufs_after = integrated_loudness(limited, sample_rate)
        error = settings.target_lufs - lufs_after
        if best is None or abs(error) < abs(settings.target_lufs - best[2]):
            best = (limited, gain_db, lufs_after, peak_after, reduction_db)
        if abs(error) <= LOUDNESS_CONVERGENCE_LU:
            break
        # Secant step: the limiter eats part of every added dB, so loudness grows slower than
        # the gain; the slope seen between passes says how much slower.
        slope = 1.0
        if previous is not None and gain_db != previous[0]:
            slope = min(1.5, max(0.2, (lufs_after - previous[1]) / (gain_db - previous[0])))
        previous = (gain_db, lufs_after)
        gain_db += error / slope
    if best is None or abs(settings.target_lufs - best[2]) > LOUDNESS_TOLERANCE_LU:
        reached = "" if best is None else f" (closest: {best[2]:.1f} LUFS at {best[3]:.1f} dBTP)"
        raise ItemRejected(
            "peak_exceeds_ceiling",
            f"the limiter could not reach {settings.target_lufs} LUFS within "
            f"{LOUDNESS_TOLERANCE_LU} LU under {settings.peak_ceiling_dbfs} dBTP{reached}: the "
            "loudness sits in the peaks",
        )
    limited, gain_db, lufs_after, peak_after, reduction_db = best
    return LoudnessResult(
        audio=limited,
        sample_rate=int(sample_rate),
        lufs_before=lufs_before,
        lufs_after=lufs_after,
        true_peak_before_dbtp=peak_before,
        true_peak_after_dbtp=peak_after,
        gain_db=gain_db,
        limited=True,
        limiter_reduction_db=reduction_db,
    )


# ---- the normalize stage: plan items, normalize one into the store, the thin Prefect task ---------

STAGE = "normalize"
STAGE_VERSION = 1
NORMALIZED_AUDIO = "audio.wav"
_UPSTREAM_STATS = ("notes", "note_density", "duration_s")


def plan_normalize_items(upstream: Sequence[WorkItem], params: LoudnessParams) -> list[WorkItem]:
    """One normalize item per upstream item, keyed by the upstream object and the loudness settings."""
    settings = params.to_dict()
    return [
        WorkItem(item.item_id, object_key(STAGE, STAGE_VERSION, settings, (item.key,)), (item.key,), settings,
                 dict(item.source))
        for item in upstream
    ]


def normalize_item(store: ArtifactStore, item: WorkItem, out_dir: Path) -> dict[str, Any]:
    """Normalize the upstream object's audio file into `out_dir/audio.wav` (float32); rejections
    become `ItemFailed`."""
    upstream_key = item.inputs[0]
    audio, sample_rate = read_wav(single_audio_file(store.local_path(upstream_key)))
    try:
        result = normalize_loudness(audio, sample_rate, LoudnessParams(**item.params))
    except ItemRejected as rejected:
        raise ItemFailed(rejected.reason_code, rejected.message) from rejected
    write_wav(out_dir / NORMALIZED_AUDIO, result.audio, sample_rate)
    upstream_stats = store.manifest(upstream_key).stats
    stats = {name: upstream_stats[name] for name in _UPSTREAM_STATS if name in upstream_stats}
    stats.update({name: round(value, 3) if isinstance(value, float) else value
                  for name, value in result.stats().items()})
    return stats


@task(name="normalize-batch", cache_policy=STORE_OBJECTS, persist_result=True)
def normalize_batch(
    items: list[WorkItem], store_root: str, upstream: list[ItemOutcome], retry_failed: bool = False
) -> list[ItemOutcome]:
    """Normalize the items whose upstream object exists; the others are `skipped` (failed upstream)."""
    logger = get_run_logger()
    store = ArtifactStore(store_root)
    available = {outcome.key for outcome in upstream if outcome.ok}
    runnable = [item for item in items if item.inputs[0] in available]
    outcomes = run_batch(
        store, STAGE, STAGE_VERSION, runnable, lambda item, out_dir: normalize_item(store, item, out_dir),
        log=logger.warning, retry_failed=retry_failed,
    )
    outcomes += [ItemOutcome(item.item_id, item.key, STAGE, "skipped", source=dict(item.source))
                 for item in items if item.inputs[0] not in available]
    logger.info("normalize: %s", count_statuses(outcomes))
    return outcomes
