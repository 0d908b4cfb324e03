"""Quality filters for segments, each a measurement compared with a threshold, plus duplicates.

Measurements (``evaluate_quality``):
- silence_ratio: share of 46 ms frames under the silence threshold (relative to the segment's
  loud level, with an absolute floor, as in the segmentation stage).
- clipping_ratio: share of samples in runs of at least ``clip_run`` consecutive samples at
  or above ``clip_level`` (flat tops, not single loud samples).
- bandwidth_hz: where the long-term spectrum of the loud frames stops. Lossy encoders cut
  everything above a low-pass frequency (about 16-17 kHz for MP3 at 128 kb/s); the detector
  looks for the lowest frequency above which the spectrum stays ``bandwidth_cliff_db`` under
  the kilohertz just below it, then reports the upper edge of the last band still within
  10 dB of the level before the drop. A spectrum with no such cliff reports the Nyquist rate.
- loudness_range_lu: an EBU R128 LRA-like spread of short-term (3 s) loudness: the 10th to
  95th percentile of K-weighted short-term loudness after the -70 LUFS absolute and -20 LU
  relative gates. Computed on the mono mix from the same spectra as the bandwidth (the
  K-weighting is applied to the power spectrum), so it costs almost nothing.

Duplicates: ``compute_fingerprint`` makes 32-bit hashes of band-energy differences over time
and frequency (signs of differences: a gain change leaves them unchanged), about 43 per
second; ``FingerprintIndex`` finds candidate alignments through exact hash hits and, at each,
the stretches whose local bit error rate is low, so the same piece is found at any offset and
a segment that only partly repeats earlier audio loses just the repeated stretch
(``FingerprintIndex.admit``: the rest is kept where it lasts long enough to be a segment).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.fft
import soxr
from scipy.signal import freqz

from musika_model.audio import (
    AudioError,
    NonFiniteAudioError,
    to_stereo_float,
)
from tasks.pipeline.batching import ItemFailed
from tasks.quality.params import QualityParams

ANALYSIS_FRAME = 2048
_ENERGY_FLOOR = 1e-12
_BAND_HZ = 250.0
_CLIFF_SPAN_BANDS = 4  # the drop is measured against the median of the 1 kHz just below
_CLIFF_SEARCH_FROM_HZ = 4000.0
_EDGE_WITHIN_DB = 10.0
_SHORT_TERM_S = 3.0
_LRA_RATE_HZ = 10.0
_LRA_ABSOLUTE_GATE_LUFS = -70.0
_LRA_RELATIVE_GATE_LU = -20.0

FINGERPRINT_RATE = 5512
FINGERPRINT_FRAME = 2048  # 0.37 s
FINGERPRINT_HOP = 128  # 23 ms: 43 hashes per second
_FINGERPRINT_BAND_EDGES_HZ = np.geomspace(300.0, 2000.0, 34)  # 33 bands -> 32 bits
_FINGERPRINT_QUIET_DB = -40.0  # frames this far under the loud level carry no hash
_INDEX_STRIDE = 4  # every 4th hash of an indexed item goes into the lookup table
_MAX_CANDIDATES = 8
_MIN_VOTES = 2
_DEGENERATE_HASHES = frozenset({0, 0xFFFFFFFF})
_MATCH_WINDOW_S = 3.0  # a hash repeats when the bit error rate over this window around it is low
_MATCH_MIN_VALID = 0.25  # a window with fewer valid hashes than this share decides nothing
_MAX_HOLE_S = 3.0  # a shorter unmatched stretch inside a repeat (a noisy patch) belongs to it


class QualityRejected(ItemFailed):
    """A segment that fails one or more filters; ``reason`` is the first, ``reasons`` all."""

    def __init__(self, reasons: list[str], message: str):
        super().__init__(reasons[0], message)
        self.reasons = reasons


class DuplicateItem(ItemFailed):
    """A segment whose audio is already in the index under ``duplicate_of``."""

    def __init__(self, duplicate_of: str, message: str):
        super().__init__("duplicate", message)
        self.duplicate_of = duplicate_of


@dataclass(frozen=True)
class QualityReport:
    """Measurements of one item and the reasons (codes) to drop it, with readable messages."""

    measurements: dict[str, float | None]
    reasons: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        return {"measurements": dict(self.measurements), "reasons": list(self.reasons),
                "messages": list(self.messages)}

    def raise_if_rejected(self) -> None:
        if self.reasons:
            raise QualityRejected(list(self.reasons), "; ".join(self.messages))


# --- measurements ----------------------------------------------------------------------------


def _frame_power_db(samples: np.ndarray, frame: int) -> np.ndarray:
    """Mean square (over channels) of consecutive ``frame``-sample frames, in dB."""
    usable = samples.shape[0] // frame * frame
    if usable == 0:
        usable, frame = samples.shape[0], max(1, samples.shape[0])
    # A frame's samples of both channels are contiguous in (n, channels) order.
    flat = np.ascontiguousarray(samples[:usable]).reshape(usable // frame, frame * samples.shape[1])
    mean_square = np.einsum("ij,ij->i", flat, flat, dtype=np.float64) / flat.shape[1]
    return 10.0 * np.log10(np.maximum(mean_square, _ENERGY_FLOOR))


def silence_ratio(audio: np.ndarray, sample_rate: int, params: QualityParams | None = None) -> float:
    """Share of 46 ms frames (at 44.1 kHz) quieter than the silence threshold."""
    settings = params or QualityParams()
    samples = to_stereo_float(audio)
    if samples.shape[0] == 0:
        return 1.0
    frame = max(1, round(ANALYSIS_FRAME * sample_rate / 44100))
    db = _frame_power_db(samples, frame)
    threshold = max(float(np.percentile(db, 95)) + settings.silence_rel_db, settings.silence_floor_dbfs)
    return float(np.mean(db < threshold))


def clipping_ratio(audio: np.ndarray, params: QualityParams | None = None) -> float:
    """Share of samples in runs of >= ``clip_run`` consecutive samples at >= ``clip_level``."""
    settings = params or QualityParams()
    samples = to_stereo_float(audio)
    if samples.size == 0:
        return 0.0
    clipped = 0
    for channel in samples.T:
        at_limit = np.abs(channel) >= settings.clip_level
        if not at_limit.any():
            continue
        edges = np.diff(np.concatenate(([0], at_limit.astype(np.int8), [0])))
        lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        clipped += int(lengths[lengths >= settings.clip_run].sum())
    return clipped / float(samples.size)


@dataclass(frozen=True)
class _Spectra:
    """Power spectra of non-overlapping Hann frames of the mono mix."""

    power: np.ndarray  # (frames, bins) float32
    sample_rate: int
    frame: int

    @property
    def bin_hz(self) -> float:
        return self.sample_rate / self.frame


@lru_cache(maxsize=8)
def _hann(size: int) -> np.ndarray:
    return np.hanning(size).astype(np.float32)


def _spectra(samples: np.ndarray, sample_rate: int) -> _Spectra | None:
    frame = ANALYSIS_FRAME if sample_rate >= 32000 else 1024
    count = samples.shape[0] // frame
    if count == 0:
        return None
    mono = (samples[: count * frame, 0] + samples[: count * frame, 1]) * np.float32(0.5)
    spectrum = scipy.fft.rfft(mono.reshape(count, frame) * _hann(frame), axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    return _Spectra(power, sample_rate, frame)


def _bandwidth(spectra: _Spectra, params: QualityParams) -> tuple[float, float | None]:
    """(bandwidth in Hz, depth of the cliff in dB or None when the spectrum has none)."""
    nyquist = spectra.sample_rate / 2.0
    frame_db = 10.0 * np.log10(np.maximum(spectra.power.sum(axis=1), _ENERGY_FLOOR))
    loud = frame_db >= np.percentile(frame_db, 90) - 20.0
    long_term = spectra.power[loud].mean(axis=0, dtype=np.float64)
    per_band = max(1, round(_BAND_HZ / spectra.bin_hz))
    bands = long_term.shape[0] // per_band
    band_hz = per_band * spectra.bin_hz
    level = 10.0 * np.log10(long_term[: bands * per_band].reshape(bands, per_band).mean(axis=1) + 1e-30)
    highest_above = np.maximum.accumulate(level[::-1])[::-1]  # max of level[i:]
    first = max(2 * _CLIFF_SPAN_BANDS, math.ceil(_CLIFF_SEARCH_FROM_HZ / band_hz))
    for index in range(first, bands - 1):
        drop = float(np.median(level[index - _CLIFF_SPAN_BANDS : index]) - highest_above[index])
        if drop >= params.bandwidth_cliff_db:
            reference = float(np.median(level[index - 2 * _CLIFF_SPAN_BANDS : index - _CLIFF_SPAN_BANDS]))
            within = np.flatnonzero(level[index - 2 * _CLIFF_SPAN_BANDS : index + 1] >= reference - _EDGE_WITHIN_DB)
            edge = index - 2 * _CLIFF_SPAN_BANDS + (int(within[-1]) if within.size else 0)
            return min(nyquist, (edge + 1) * band_hz), drop
    return nyquist, None


def _rbj_biquad(kind: str, cutoff_hz: float, q: float, sample_rate: int, gain_db: float = 0.0):
    """Biquad coefficients (b, a) from the Audio EQ Cookbook (high shelf or high pass)."""
    w0 = 2.0 * math.pi * cutoff_hz / sample_rate
    alpha = math.sin(w0) / (2.0 * q)
    cos_w0 = math.cos(w0)
    if kind == "high_shelf":
        amp = 10.0 ** (gain_db / 40.0)
        root = 2.0 * math.sqrt(amp) * alpha
        b = [amp * ((amp + 1) + (amp - 1) * cos_w0 + root), -2 * amp * ((amp - 1) + (amp + 1) * cos_w0),
             amp * ((amp + 1) + (amp - 1) * cos_w0 - root)]
        a = [(amp + 1) - (amp - 1) * cos_w0 + root, 2 * ((amp - 1) - (amp + 1) * cos_w0),
             (amp + 1) - (amp - 1) * cos_w0 - root]
    else:
        b = [(1 + cos_w0) / 2, -(1 + cos_w0), (1 + cos_w0) / 2]
        a = [1 + alpha, -2 * cos_w0, 1 - alpha]
    return np.asarray(b) / a[0], np.asarray(a) / a[0]


@lru_cache(maxsize=8)
def _k_weighting_power(sample_rate: int, frame: int) -> np.ndarray:
    """|H(f)|^2 of BS.1770's K-weighting (4 dB shelf at 1.5 kHz, high pass at 38 Hz) per rfft bin,
    scaled so that ``power @ weights`` is the K-weighted mean square of a Hann-windowed frame."""
    freqs = np.fft.rfftfreq(frame, 1.0 / sample_rate)
    response = np.ones_like(freqs)
    for kind, cutoff, q, gain in (("high_shelf", 1500.0, 1 / math.sqrt(2), 4.0), ("high_pass", 38.0, 0.5, 0.0)):
        b, a = _rbj_biquad(kind, cutoff, q, sample_rate, gain)
        _, h = freqz(b, a, worN=freqs, fs=sample_rate)
        response *= np.abs(h) ** 2
    one_sided = np.full_like(freqs, 2.0)
    one_sided[0] = 1.0
    if frame % 2 == 0:
        one_sided[-1] = 1.0
    window_power = float(np.mean(_hann(frame).astype(np.float64) ** 2))
    return (response * one_sided / (frame * frame * window_power)).astype(np.float32)


def _loudness_range(spectra: _Spectra) -> float | None:
    """LRA-like spread of short-term loudness; None when shorter than one 3 s window."""
    weighted = spectra.power @ _k_weighting_power(spectra.sample_rate, spectra.frame)
    frame_s = spectra.frame / spectra.sample_rate
    window = max(1, round(_SHORT_TERM_S / frame_s))
    if weighted.shape[0] < window:
        return None
    cumulative = np.concatenate(([0.0], np.cumsum(weighted, dtype=np.float64)))
    step = max(1, round(1.0 / (_LRA_RATE_HZ * frame_s)))
    starts = np.arange(0, weighted.shape[0] - window + 1, step)
    short_term_power = (cumulative[starts + window] - cumulative[starts]) / window
    # Mono mix of two channels: BS.1770 sums the channels' powers, 3 dB more than the mix for
    # equal channels; the offset only matters for the absolute gate.
    loudness = -0.691 + 10.0 * np.log10(np.maximum(2.0 * short_term_power, 1e-30))
    gated = loudness[loudness > _LRA_ABSOLUTE_GATE_LUFS]
    if gated.size == 0:
        return None
    integrated = 10.0 * np.log10(np.mean(10.0 ** (gated / 10.0)))
    kept = gated[gated > integrated + _LRA_RELATIVE_GATE_LU]
    return float(np.percentile(kept, 95) - np.percentile(kept, 10))


def effective_bandwidth(audio: np.ndarray, sample_rate: int, params: QualityParams | None = None) -> float:
    """Frequency (Hz) where the long-term spectrum of the loud frames stops (see module doc)."""
    spectra = _spectra(to_stereo_float(audio), sample_rate)
    return sample_rate / 2.0 if spectra is None else _bandwidth(spectra, params or QualityParams())[0]


def loudness_range(audio: np.ndarray, sample_rate: int) -> float | None:
    """LRA-like loudness range in LU (see module doc); None for audio under 3 s."""
    spectra = _spectra(to_stereo_float(audio), sample_rate)
    return None if spectra is None else _loudness_range(spectra)


def evaluate_quality(audio: np.ndarray, sample_rate: int, params: QualityParams | None = None) -> QualityReport:
    """Every measurement of one segment and the filters it fails."""
    settings = params or QualityParams()
    try:
        samples = to_stereo_float(audio, "the segment")
    except NonFiniteAudioError as error:
        raise QualityRejected(["non_finite"], str(error)) from error
    except AudioError as error:
        raise QualityRejected(["bad_shape"], str(error)) from error
    if samples.shape[0] == 0:
        raise QualityRejected(["empty"], "the segment has no samples")
    spectra = _spectra(samples, sample_rate)
    bandwidth, cliff = (sample_rate / 2.0, None) if spectra is None else _bandwidth(spectra, settings)
    measurements: dict[str, float | None] = {
        "duration_s": samples.shape[0] / float(sample_rate),
        "silence_ratio": silence_ratio(samples, sample_rate, settings),
        "clipping_ratio": clipping_ratio(samples, settings),
        "bandwidth_hz": bandwidth,
        "bandwidth_cliff_db": cliff,
        "loudness_range_lu": None if spectra is None else _loudness_range(spectra),
    }
    reasons: list[str] = []
    messages: list[str] = []

    def fail(reason: str, message: str) -> None:
        reasons.append(reason)
        messages.append(message)

    if measurements["silence_ratio"] > settings.max_silence_ratio:
        fail("silence", f"{measurements['silence_ratio']:.0%} of the frames are silent "
                        f"(max {settings.max_silence_ratio:.0%})")
    if measurements["clipping_ratio"] > settings.max_clipping_ratio:
        fail("clipping", f"{measurements['clipping_ratio']:.3%} of the samples are clipped "
                         f"(max {settings.max_clipping_ratio:.3%})")
    if bandwidth < settings.min_bandwidth_hz:
        fail("low_bandwidth", f"the spectrum stops at {bandwidth / 1000:.1f} kHz (minimum "
                              f"{settings.min_bandwidth_hz / 1000:.1f} kHz): a lossy or band-limited source")
    lra = measurements["loudness_range_lu"]
    if lra is not None and lra < settings.min_loudness_range_lu:
        fail("loudness_range_low", f"loudness range {lra:.1f} LU is under {settings.min_loudness_range_lu} LU")
    if lra is not None and lra > settings.max_loudness_range_lu:
        fail("loudness_range_high", f"loudness range {lra:.1f} LU is over {settings.max_loudness_range_lu} LU")
    return QualityReport(measurements, reasons, messages)


# --- fingerprints and duplicates -------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    """32-bit hashes at ``FINGERPRINT_RATE / FINGERPRINT_HOP`` per second; ``valid`` marks
    the hashes of frames loud enough to mean something."""

    hashes: np.ndarray  # uint32
    valid: np.ndarray  # bool

    @property
    def frames_per_second(self) -> float:
        return FINGERPRINT_RATE / FINGERPRINT_HOP

    @property
    def duration_s(self) -> float:
        return self.hashes.shape[0] / self.frames_per_second

    def to_bytes(self) -> bytes:
        """Hashes (little-endian uint32) with quiet frames' hashes stored as 0."""
        return np.where(self.valid, self.hashes, 0).astype("<u4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Fingerprint:
        hashes = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        return cls(hashes, hashes != 0)

    def between(self, start_s: float, end_s: float) -> Fingerprint:
        """The hashes that begin inside [start_s, end_s) of the fingerprinted audio."""
        first, stop = _hash_at(start_s), _hash_at(end_s)
        return Fingerprint(self.hashes[first:stop], self.valid[first:stop])


def _hash_start_s(number: int) -> float:
    """Where hash ``number`` begins, in seconds: it compares the spectra of frames ``number`` and
    ``number + 1``, placed at their centres."""
    return (number * FINGERPRINT_HOP + FINGERPRINT_FRAME / 2) / FINGERPRINT_RATE


def _hash_at(seconds: float) -> int:
    """The first hash that begins at or after ``seconds``."""
    return max(0, math.ceil((seconds * FINGERPRINT_RATE - FINGERPRINT_FRAME / 2) / FINGERPRINT_HOP))


@lru_cache(maxsize=1)
def _fingerprint_bands() -> np.ndarray:
    freqs = np.fft.rfftfreq(FINGERPRINT_FRAME, 1.0 / FINGERPRINT_RATE)
    edges = _FINGERPRINT_BAND_EDGES_HZ
    matrix = np.zeros((freqs.shape[0], edges.shape[0] - 1), dtype=np.float32)
    for band in range(edges.shape[0] - 1):
        matrix[(freqs >= edges[band]) & (freqs < edges[band + 1]), band] = 1.0
    return matrix


def compute_fingerprint(audio: np.ndarray, sample_rate: int) -> Fingerprint:
    """Band-energy-sign hashes of the mono mix between 300 Hz and 2 kHz.

    Bit m of hash n is the sign of E(n,m) - E(n,m+1) - (E(n-1,m) - E(n-1,m+1)) over 33
    log-spaced bands: invariant to gain, and to an offset up to half a hop (12 ms) barely
    changed, since frames overlap by 94 %.
    """
    samples = to_stereo_float(audio)
    mono = (samples[:, 0] + samples[:, 1]) * np.float32(0.5)
    resampled = soxr.resample(mono, sample_rate, FINGERPRINT_RATE, quality="MQ").astype(np.float32)
    if resampled.shape[0] < FINGERPRINT_FRAME + FINGERPRINT_HOP:
        return Fingerprint(np.zeros(0, np.uint32), np.zeros(0, bool))
    frames = np.lib.stride_tricks.sliding_window_view(resampled, FINGERPRINT_FRAME)[::FINGERPRINT_HOP]
    spectrum = scipy.fft.rfft(frames * _hann(FINGERPRINT_FRAME), axis=1)
    energy = (spectrum.real**2 + spectrum.imag**2) @ _fingerprint_bands()
    across = energy[:, :-1] - energy[:, 1:]
    bits = (across[1:] - across[:-1]) > 0
    hashes = np.packbits(bits, axis=1, bitorder="little").view("<u4")[:, 0].astype(np.uint32)
    level = 10.0 * np.log10(np.maximum(energy.sum(axis=1), _ENERGY_FLOOR))
    loud = level >= np.percentile(level, 95) + _FINGERPRINT_QUIET_DB
    valid = loud[1:] & loud[:-1] & ~np.isin(hashes, list(_DEGENERATE_HASHES))
    return Fingerprint(hashes, valid)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of True in a boolean array."""
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _fill_undecided(matched: np.ndarray, decided: np.ndarray) -> np.ndarray:
    """``matched`` where ``decided``; elsewhere True when the nearest decided frame before or after
    matched (a quiet stretch joins the repeat it borders)."""
    count = matched.shape[0]
    if not decided.any():
        return np.zeros(count, dtype=bool)
    positions = np.arange(count)
    before = np.maximum.accumulate(np.where(decided, positions, -1))
    after = np.minimum.accumulate(np.where(decided, positions, count)[::-1])[::-1]
    from_before = (before >= 0) & matched[np.maximum(before, 0)]
    from_after = (after < count) & matched[np.minimum(after, count - 1)]
    return np.where(decided, matched, from_before | from_after)


def _matching_runs(new: Fingerprint, indexed: Fingerprint, offset: int, max_ber: float) -> list[tuple[int, int, float]]:
    """The stretches of ``new`` that repeat ``indexed`` aligned as new[i] ~ indexed[i + offset]:
    (first hash, stop, bit error rate over the stretch).

    A hash matches when the bit error rate over the ``_MATCH_WINDOW_S`` around it (frames valid in
    both only) is at most ``max_ber``; a window with too few valid frames takes its neighbours'
    verdict, and an unmatched hole shorter than ``_MAX_HOLE_S`` inside a repeat is part of it.
    """
    start = max(0, -offset)
    stop = min(new.hashes.shape[0], indexed.hashes.shape[0] - offset)
    if stop <= start:
        return []
    both = new.valid[start:stop] & indexed.valid[start + offset : stop + offset]
    differing = np.bitwise_xor(new.hashes[start:stop], indexed.hashes[start + offset : stop + offset])
    errors = np.where(both, np.bitwise_count(differing), 0).astype(np.int64)
    count = stop - start
    half = round(_MATCH_WINDOW_S * new.frames_per_second / 2)
    positions = np.arange(count)
    low, high = np.maximum(positions - half, 0), np.minimum(positions + half + 1, count)
    summed_errors = np.concatenate(([0], np.cumsum(errors)))
    summed_valid = np.concatenate(([0], np.cumsum(both)))
    window_errors = summed_errors[high] - summed_errors[low]
    window_valid = summed_valid[high] - summed_valid[low]
    decided = window_valid >= _MATCH_MIN_VALID * (high - low)
    matched = _fill_undecided(decided & (window_errors <= 32 * max_ber * window_valid), decided)
    hole = _MAX_HOLE_S * new.frames_per_second
    runs: list[tuple[int, int]] = []
    for first, last in _runs(matched):
        if runs and first - runs[-1][1] < hole:
            runs[-1] = (runs[-1][0], last)
        else:
            runs.append((first, last))
    found = []
    for first, last in runs:
        compared = int(both[first:last].sum())
        ber = int(errors[first:last].sum()) / (32.0 * compared) if compared else 1.0
        if ber <= max_ber:
            found.append((start + first, start + last, ber))
    return found


def piece_item_id(item_id: str, start_s: float) -> str:
    """The id of the stretch of item ``item_id`` that begins ``start_s`` seconds into it."""
    return f"{item_id}@{start_s:.2f}s"


@dataclass(frozen=True)
class Repeat:
    """A stretch of a new item (seconds from its start) that repeats the indexed item
    ``duplicate_of``, at fingerprint bit error rate ``ber``."""

    start_s: float
    end_s: float
    duplicate_of: str
    ber: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Verdict:
    """What deduplication keeps of an item: the ``kept`` stretches (seconds from its start) and
    the ``repeats`` cut out; no repeats means the item is kept whole."""

    kept: tuple[tuple[float, float], ...]
    repeats: tuple[Repeat, ...] = ()

    @property
    def whole(self) -> bool:
        return not self.repeats


def _merge_repeats(repeats: list[Repeat]) -> list[Repeat]:
    """Repeats in time order, overlapping ones joined under the name of the longer."""
    merged: list[Repeat] = []
    for repeat in sorted(repeats, key=lambda r: (r.start_s, -r.end_s)):
        if merged and repeat.start_s <= merged[-1].end_s:
            last = merged[-1]
            named = last if last.duration_s >= repeat.duration_s else repeat
            merged[-1] = Repeat(last.start_s, max(last.end_s, repeat.end_s), named.duplicate_of, named.ber)
        else:
            merged.append(repeat)
    return merged


def unrepeated_spans(duration_s: float, repeats: list[Repeat], min_kept_s: float) -> list[tuple[float, float]]:
    """The stretches of an item outside its (merged, ordered) repeats lasting ``min_kept_s`` or more."""
    spans: list[tuple[float, float]] = []
    cursor = 0.0
    for repeat in repeats:
        if repeat.start_s - cursor >= min_kept_s:
            spans.append((cursor, repeat.start_s))
        cursor = max(cursor, repeat.end_s)
    if duration_s - cursor >= min_kept_s:
        spans.append((cursor, round(duration_s, 3)))
    return spans


class FingerprintIndex:
    """Fingerprints of the audio kept so far; ``admit`` says what a new item adds to it."""

    def __init__(self, params: QualityParams | None = None):
        self.params = params or QualityParams()
        self._ids: list[str] = []
        self._fingerprints: list[Fingerprint] = []
        self._lookup: dict[int, list[tuple[int, int]]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item_id: str, fingerprint: Fingerprint) -> None:
        number = len(self._ids)
        self._ids.append(item_id)
        self._fingerprints.append(fingerprint)
        for frame in np.flatnonzero(fingerprint.valid)[::_INDEX_STRIDE].tolist():
            self._lookup[int(fingerprint.hashes[frame])].append((number, frame))

    def find_repeats(self, fingerprint: Fingerprint, duration_s: float | None = None) -> list[Repeat]:
        """The stretches of a new item (of ``duration_s``, else the fingerprint's length) that
        repeat indexed items, in time order, overlapping ones merged.

        Exact hash hits vote for (item, offset) alignments; at the best-voted ones (and a hash
        either side) the matching stretches are found (``_matching_runs``, bit error rate at most
        ``duplicate_max_ber``); one counts when it lasts ``duplicate_min_overlap_s`` (or 80 % of
        the shorter item, if that is shorter).
        """
        votes: Counter[tuple[int, int]] = Counter()
        for frame in np.flatnonzero(fingerprint.valid).tolist():
            for number, indexed_frame in self._lookup.get(int(fingerprint.hashes[frame]), ()):
                votes[(number, indexed_frame - frame)] += 1
        total_s = fingerprint.duration_s if duration_s is None else duration_s
        last = fingerprint.hashes.shape[0]

        def seconds(number: int) -> float:
            return 0.0 if number == 0 else total_s if number == last else min(total_s, _hash_start_s(number))

        found: list[Repeat] = []
        for (number, offset), count in votes.most_common(_MAX_CANDIDATES):
            if count < _MIN_VOTES:
                break
            candidate = self._fingerprints[number]
            shorter_s = min(candidate.duration_s, fingerprint.duration_s)
            needed = min(self.params.duplicate_min_overlap_s, 0.8 * shorter_s) * fingerprint.frames_per_second
            for shift in (offset - 1, offset, offset + 1):
                for first, stop, ber in _matching_runs(fingerprint, candidate, shift, self.params.duplicate_max_ber):
                    if stop - first >= needed:
                        found.append(Repeat(round(seconds(first), 3), round(seconds(stop), 3), self._ids[number],
                                            round(ber, 4)))
        return _merge_repeats(found)

    def admit(self, item_id: str, fingerprint: Fingerprint, duration_s: float, min_kept_s: float) -> Verdict:
        """Index what a new item adds and say which stretches of it to keep.

        An item that repeats nothing indexed is kept and indexed whole. Otherwise its repeats are
        cut out and every stretch left that lasts ``min_kept_s`` is kept, indexed under
        ``piece_item_id``; when none does, ``DuplicateItem`` names the item it repeats most.
        """
        repeats = self.find_repeats(fingerprint, duration_s)
        if not repeats:
            self.add(item_id, fingerprint)
            return Verdict(((0.0, round(duration_s, 3)),))
        kept = unrepeated_spans(duration_s, repeats, min_kept_s)
        if not kept:
            main = max(repeats, key=lambda repeat: repeat.duration_s)
            repeated_s = sum(repeat.duration_s for repeat in repeats)
            raise DuplicateItem(main.duplicate_of, f"{item_id} repeats the audio of {main.duplicate_of} "
                                f"({repeated_s:.1f} of {duration_s:.1f} s repeat earlier audio, no other "
                                f"stretch lasts {min_kept_s:g} s)")
        for start_s, end_s in kept:
            self.add(piece_item_id(item_id, start_s), fingerprint.between(start_s, end_s))
        return Verdict(tuple(kept), tuple(repeats))
