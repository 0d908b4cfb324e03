"""Loudness normalization to an integrated LUFS target under a true-peak ceiling.

Pure functions, no Prefect and no store. Loudness is ITU-R BS.1770-4 integrated loudness with
pyloudnorm's K-weighting filters, blocks and gates (the same figures, computed without its
per-block Python loop); true peak is the sample peak of the signal oversampled 4x (BS.1770-4
Annex 2), here with the windowed-sinc interpolator scipy's ``resample_poly`` uses for 4x.

Both scale exactly with a linear gain, so the common case measures each once, on the input.
Only audio that went through the limiter is measured again.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Literal

import numpy as np
import pyloudnorm
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import firwin, lfilter

from musika_model.audio import (
    AudioError,
    NonFiniteAudioError,
    to_stereo_float,
)
from tasks.normalize.params import PYLOUDNORM_MIN_SECONDS, LoudnessParams
from tasks.pipeline.audio_io import amplitude_to_db

_BLOCK_STEP = 0.25  # gating blocks overlap by 75 %
_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = 10.0
_LOUDNESS_OFFSET = -0.691
_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # L, R, C, Ls, Rs

OVERSAMPLING = 4
_HALF_TAPS = 10 * OVERSAMPLING
_INTERPOLATOR = (
    firwin(2 * _HALF_TAPS + 1, 1.0 / OVERSAMPLING, window=("kaiser", 5.0)) * OVERSAMPLING
)
_REACH = _HALF_TAPS // OVERSAMPLING  # input samples on each side an interpolated value depends on
_FRAME = 32  # input samples per frame, the unit in which the true peak is screened and computed
_WINDOW = _FRAME + 2 * _REACH  # input samples the interpolated values of one frame depend on
_SCREEN_BATCH = 4096  # frames screened at once (keeps temporaries in cache)
# Relative allowance, of the largest sample within a frame's reach, for rounding in the float32
# screening bounds (a second difference of float32 samples is off by < 1e-6 of that sample).
_BOUND_SLACK = 1e-6

LIMITER_RAMP_S = 0.005  # attack and release ramps of the gain envelope
LIMITER_HOLD_S = 0.020  # gain stays down this long around a peak before releasing
LIMITER_MARGIN_DB = 0.1  # limiter threshold under the ceiling (modulation adds a little peak)
LIMITER_PASSES = 5
LOUDNESS_CONVERGENCE_LU = 0.1
LOUDNESS_TOLERANCE_LU = 0.5  # the stage's promise (docs/stage-contracts.md §6)

ReasonCode = Literal[
    "silent", "too_short", "peak_exceeds_ceiling", "excessive_gain", "non_finite", "bad_shape"
]


class ItemRejected(Exception):
    """An item the loudness stage drops, with a machine-readable reason for the manifest."""

    def __init__(self, reason_code: ReasonCode, message: str) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message


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
        """Everything but the audio, for manifests and reports (``asdict`` would deep-copy it)."""
        return {item.name: getattr(self, item.name) for item in fields(self) if item.name != "audio"}



class UnmeasurableAudio(ValueError):
    """Audio that has no integrated loudness: wrong sample type or layout, or too short."""


def _reduce_segments(
    ufunc: np.ufunc, values: np.ndarray, starts: np.ndarray, stops: np.ndarray
) -> np.ndarray:
    """``ufunc.reduce(values[start:stop])`` for each pair, in one ``reduceat``. Segments must be
    non-empty, and only the last may reach the end of ``values``."""
    bounds = np.empty(2 * starts.size, dtype=np.int64)
    bounds[0::2], bounds[1::2] = starts, stops
    if bounds[-1] == values.size:
        bounds = bounds[:-1]
    return ufunc.reduceat(values, bounds)[0::2]


@lru_cache(maxsize=8)
def _k_weighting(sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """BS.1770 K-weighting at this rate as one 4th-order filter (b, a): pyloudnorm's shelving
    pre-filter and RLB high-pass multiplied out (one lfilter pass costs half of two)."""
    shelf = pyloudnorm.IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sample_rate, "high_shelf")
    high_pass = pyloudnorm.IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass")
    return np.convolve(shelf.b, high_pass.b), np.convolve(shelf.a, high_pass.a)


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness in LUFS; -inf when everything is under the absolute gate.

    The figure of pyloudnorm 0.2's ``Meter.integrated_loudness`` (same filters, block bounds and
    gates) without its Python loop over blocks. Accepts (n,) or (n, channels) float audio with
    up to 5 channels; raises UnmeasurableAudio otherwise or when shorter than one block.
    """
    samples = np.asarray(audio)
    if samples.ndim == 1:
        samples = samples[:, None]
    if not np.issubdtype(samples.dtype, np.floating):
        raise UnmeasurableAudio(f"loudness needs float samples, got {samples.dtype}")
    if samples.ndim != 2 or not 1 <= samples.shape[1] <= len(_CHANNEL_WEIGHTS):
        raise UnmeasurableAudio(
            f"audio of shape {samples.shape}: expected (n,) or (n, channels) with at most "
            f"{len(_CHANNEL_WEIGHTS)} channels"
        )
    rate = int(sample_rate)
    count = samples.shape[0]
    if count < PYLOUDNORM_MIN_SECONDS * rate:
        raise UnmeasurableAudio(
            f"{count} samples at {rate} Hz are shorter than one {PYLOUDNORM_MIN_SECONDS} s "
            "gating block"
        )
    block_s = PYLOUDNORM_MIN_SECONDS
    blocks = int(np.round((count / rate - block_s) / (block_s * _BLOCK_STEP))) + 1
    offsets = np.arange(blocks) * _BLOCK_STEP  # block starts in block lengths, as pyloudnorm
    lower = (block_s * offsets * rate).astype(np.int64)
    upper = np.minimum((block_s * (offsets + 1) * rate).astype(np.int64), count)
    # The block bounds cut the signal into segments (hops, usually): sum the power per segment,
    # then each block over its few segments. A trailing zero keeps every block end inside.
    cuts = np.unique(np.concatenate((lower, upper[upper < count])))
    segment_energy = np.zeros(cuts.size + 1)
    b, a = _k_weighting(rate)
    for channel, weight in zip(range(samples.shape[1]), _CHANNEL_WEIGHTS):
        filtered = lfilter(b, a, samples[:, channel])
        np.multiply(filtered, filtered, out=filtered)
        segment_energy[:-1] += weight * np.add.reduceat(filtered, cuts)
    energy = _reduce_segments(
        np.add, segment_energy, np.searchsorted(cuts, lower), np.searchsorted(cuts, upper)
    )
    power = energy * (1.0 / (block_s * rate))
    with np.errstate(divide="ignore"):
        block_lufs = _LOUDNESS_OFFSET + 10.0 * np.log10(power)
    audible = block_lufs >= _ABSOLUTE_GATE_LUFS
    if not audible.any():
        return float("-inf")
    relative_gate = _LOUDNESS_OFFSET + 10.0 * np.log10(power[audible].mean()) - _RELATIVE_GATE_LU
    gated = (block_lufs > relative_gate) & (block_lufs > _ABSOLUTE_GATE_LUFS)
    if not gated.any():
        return float("-inf")
    return float(_LOUDNESS_OFFSET + 10.0 * np.log10(power[gated].mean()))


def _phase_taps() -> np.ndarray:
    """(4, 2 * _REACH + 1): weight of x[m + d], d = -_REACH.._REACH, in the value at m + phase/4,
    i.e. in output 4 * m + phase of ``resample_poly(x, 4, 1)`` (zeros outside the signal)."""
    offsets = np.arange(-_REACH, _REACH + 1)
    index = _HALF_TAPS + np.arange(OVERSAMPLING)[:, None] - OVERSAMPLING * offsets[None, :]
    inside = (index >= 0) & (index < _INTERPOLATOR.size)
    return np.where(inside, _INTERPOLATOR[np.clip(index, 0, _INTERPOLATOR.size - 1)], 0.0)


def _smoothness_gains(phase_taps: np.ndarray) -> tuple[float, float]:
    """(near, curvature): every interpolated |value| at m + phase/4 is at most
    near * max(|x[m]|, |x[m+1]|) + curvature * (largest |second difference| within its reach).

    Each phase's taps split into two taps on x[m], x[m+1] with the same sum and first moment, and
    a remainder whose sum and first moment vanish. Such a remainder is a filter q applied to the
    second difference (q is the remainder summed twice), so sum |q| bounds its gain. Music is
    smooth where it is loud, so this bound is tight where sum |taps| (2.24) is not.
    """
    offsets = np.arange(-_REACH, _REACH + 1)
    near, curvature = 0.0, 0.0
    for taps in phase_taps:
        total, moment = float(taps.sum()), float((taps * offsets).sum())
        remainder = taps.copy()
        remainder[_REACH] -= total - moment
        remainder[_REACH + 1] -= moment
        near = max(near, abs(total - moment) + abs(moment))
        curvature = max(curvature, float(np.abs(np.cumsum(np.cumsum(remainder))).sum()))
    return near, curvature


def _frame_taps(phase_taps: np.ndarray) -> np.ndarray:
    """(_WINDOW, _FRAME * 4): a frame's window of input samples -> its interpolated values, four
    per input sample in time order."""
    taps = np.zeros((_WINDOW, _FRAME, OVERSAMPLING))
    for position in range(_FRAME):
        taps[position : position + 2 * _REACH + 1, position, :] = phase_taps.T
    return taps.reshape(_WINDOW, _FRAME * OVERSAMPLING)


_PHASE_TAPS = _phase_taps()
_GAIN_BOUND = float(np.abs(_PHASE_TAPS).sum(axis=1).max())  # sum |taps| of the worst phase
_NEAR_GAIN, _CURVATURE_GAIN = _smoothness_gains(_PHASE_TAPS)
_FRAME_TAPS = _frame_taps(_PHASE_TAPS)


def _channel_max(values: np.ndarray) -> np.ndarray:
    """Row-wise max of (n, channels); much faster than ``max(axis=1)`` for few channels."""
    result = values[:, 0]
    for channel in range(1, values.shape[1]):
        result = np.maximum(result, values[:, channel])
    return result


def _frame_peaks(samples: np.ndarray) -> np.ndarray:
    """Largest |sample| over the channels of each frame of ``_FRAME`` samples (the last may be
    short). ``samples``: (n, channels), best C-contiguous (then no copy is made)."""
    flat = samples.reshape(-1)
    starts = np.arange(0, flat.size, _FRAME * samples.shape[1])
    return np.maximum(np.maximum.reduceat(flat, starts), -np.minimum.reduceat(flat, starts))


def _frame_windows(samples: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(k, _WINDOW * channels): per frame, the interleaved input samples from
    ``frame * _FRAME - _REACH`` on, zero outside the signal as ``resample_poly`` pads.
    ``samples``: (n, channels), best C-contiguous."""
    count, channels = samples.shape
    starts = frames * _FRAME - _REACH
    if count >= _WINDOW:
        rows = sliding_window_view(samples.reshape(-1), _WINDOW * channels)[::channels]
        windows = rows[np.clip(starts, 0, count - _WINDOW)]
    else:
        windows = np.empty((frames.size, _WINDOW * channels), dtype=samples.dtype)
    edge = (starts < 0) | (starts + _WINDOW > count)  # the first frame and the last one or two
    for row in np.flatnonzero(edge).tolist():
        start = int(starts[row])
        lo, hi = max(start, 0), min(start + _WINDOW, count)
        windows[row] = 0.0
        windows[row, (lo - start) * channels : (hi - start) * channels] = samples[lo:hi].reshape(-1)
    return windows


def _frames_above(samples: np.ndarray, level: float, peaks: np.ndarray) -> np.ndarray:
    """Frames that may hold an interpolated |value| above ``level``, in ascending order
    (``peaks``: ``_frame_peaks(samples)``).

    Screened twice: by sum |taps| times the largest sample within reach, then, for the frames
    that pass, by the smoothness bound (see ``_smoothness_gains``), which on music leaves a
    fraction of a percent of the frames.
    """
    channels = samples.shape[1]
    reach = peaks.copy()  # largest |sample| a frame's values depend on (_FRAME >= _REACH)
    np.maximum(reach[1:], peaks[:-1], out=reach[1:])
    np.maximum(reach[:-1], peaks[1:], out=reach[:-1])
    candidates = np.flatnonzero(reach > level / (_GAIN_BOUND * (1.0 + _BOUND_SLACK)))
    kept = [candidates[:0]]
    row = _WINDOW * channels
    for first in range(0, candidates.size, _SCREEN_BATCH):
        batch = candidates[first : first + _SCREEN_BATCH]
        windows = _frame_windows(samples, batch).reshape(-1)
        # Second differences along time; those that straddle two frames' rows are left out.
        second = windows[2 * channels :] - 2 * windows[channels:-channels]
        second = np.abs(second + windows[: -2 * channels], out=second)
        row_starts = np.arange(batch.size) * row
        curvature = _reduce_segments(
            np.maximum, second, row_starts, row_starts + row - 2 * channels
        )
        near = _reduce_segments(
            np.maximum,
            np.abs(windows),
            row_starts + _REACH * channels,
            row_starts + (_REACH + _FRAME + 1) * channels,
        )
        bound = (
            _NEAR_GAIN * near.astype(np.float64)
            + _CURVATURE_GAIN * curvature.astype(np.float64)
            + _BOUND_SLACK * reach[batch].astype(np.float64)
        )
        kept.append(batch[bound > level])
    return np.concatenate(kept)


def _frame_true_peaks(samples: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(k, _FRAME): per input sample m of each frame, the largest |interpolated value| over the
    channels at m, m + 1/4, m + 1/2 and m + 3/4, in float64; 0 past the end of the signal."""
    channels = samples.shape[1]
    windows = _frame_windows(samples, frames).reshape(frames.size, _WINDOW, channels)
    # Frames last, so that the maxima over phases and channels are long vector operations.
    columns = windows.transpose(1, 2, 0).astype(np.float64).reshape(_WINDOW, -1)
    values = np.abs(_FRAME_TAPS.T @ columns).reshape(_FRAME, OVERSAMPLING * channels, frames.size)
    peaks = values.max(axis=1).T
    peaks[frames[:, None] * _FRAME + np.arange(_FRAME) >= samples.shape[0]] = 0.0
    return peaks


def _contiguous_float32(audio: np.ndarray) -> np.ndarray:
    """(n, channels) C-contiguous float32, copied only when it is not: frames are views."""
    samples = np.ascontiguousarray(audio, dtype=np.float32)
    return samples[:, None] if samples.ndim == 1 else samples


def true_peak(audio: np.ndarray) -> float:
    """Largest absolute value of the 4x oversampled signal (linear, not dB).

    Only the frames whose values can exceed the sample peak are oversampled. The frame holding
    the sample peak always is: its value at the peak sample is the peak times the centre tap
    (1.0006), which the screening bounds account for.
    """
    samples = _contiguous_float32(audio)
    if samples.shape[0] == 0:
        return 0.0
    peaks = _frame_peaks(samples)
    peak = float(peaks.max())
    if peak == 0.0 or not np.isfinite(peak):
        return peak
    return float(_frame_true_peaks(samples, _frames_above(samples, peak, peaks)).max())


def true_peak_dbtp(audio: np.ndarray) -> float:
    return amplitude_to_db(true_peak(audio))


def _true_peak_envelope(samples: np.ndarray, level: float) -> np.ndarray:
    """Per input sample n, the largest oversampled |value| over [n - 1, n + 1), exact wherever
    it can exceed ``level`` (elsewhere the sample envelope, which is below ``level``).
    """
    envelope = _channel_max(np.abs(samples))
    frames = _frames_above(samples, level, _frame_peaks(samples))
    if frames.size:
        positions = frames[:, None] * _FRAME + np.arange(_FRAME)
        inside = positions < samples.shape[0]
        envelope[positions[inside]] = _frame_true_peaks(samples, frames)[inside]
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
    limited = (audio * gain[:, None]).astype(np.float32, copy=False)
    return limited, -amplitude_to_db(float(gain.min()))


def _prepare(audio: np.ndarray, sample_rate: int, params: LoudnessParams) -> np.ndarray:
    try:
        samples = to_stereo_float(audio)
    except NonFiniteAudioError as error:
        raise ItemRejected("non_finite", str(error)) from error
    except AudioError as error:
        raise ItemRejected("bad_shape", str(error)) from error
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
            audio=samples * np.float32(10.0 ** (gain_db / 20.0)),  # float32 * float32
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
