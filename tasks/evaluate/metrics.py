"""Per-clip and per-set audio measures for judging checkpoints against their training data.

Each measure answers one thing users heard in diverged or weak Musika models:

- ``loudness_lufs``: integrated loudness (ITU-R BS.1770 via pyloudnorm). None for digital
  silence (pyloudnorm says -inf) and for clips under 0.4 s (too short for one gating block).
- ``silence_ratio``: share of 50 ms frames whose RMS (mean power of both channels) is under
  ``SILENCE_FLOOR_DBFS``. 1.0 for a silent clip.
- ``beep_score``: tonal collapse. The share of the long-term power spectrum (above 20 Hz) that
  lies within +-3 bins (5.4 Hz bins) of its ``BEEP_PEAKS`` = 2 strongest peaks; flagged
  ``beep`` above 0.8. A stuck tone scores ~1, a square wave 0.9, a tone with 5 Hz vibrato
  1.0; the sparse synthetic piano of the tests (8 pitches, random notes) stays under 0.7.
  The trainer's check (``musika_model.generation.collapse_report``) takes one peak only; a
  collapsed GAN often beeps with a harmonic or a wobble, so this takes two.
- ``tempo_ibi_cv``: tempo stability = coefficient of variation (std / mean) of the
  inter-beat intervals of ``librosa.beat.beat_track`` on the mono mix (hop 512, default
  tightness). None when fewer than 4 beats are found (and for a silent clip). A steady click
  track gives ~0.01, one drifting from 100 to 140 BPM over 10 s ~0.1.
- ``onset_density``: ``librosa.onset.onset_detect`` onsets per second of the mono mix (0 for
  a silent clip).
- ``bandwidth_hz``: the 95 % roll-off of the long-term power spectrum (above 20 Hz): the
  frequency under which 95 % of the power lies. Lossy or dull timbre moves it down.

Set level (``summarize``): mean of each per-clip measure over the clips where it is defined,
and ``loudness_spread_lu``, the standard deviation of the clips' loudness (unstable volume).

Embedding for a Fréchet distance (``embedding_frames``): no pretrained audio embedding with its
weights inside a PyPI wheel was found that runs on TensorFlow 2.21 / Keras 3 offline (checked:
openl3 builds only from an sdist that downloads its weights; musicnn's wheel holds weights for
TF1 graphs built with ``tf.compat.v1.layers``, which Keras 3 no longer provides; musicnn-keras's
wheel holds no weights). So each 1 s window
(0.5 s hop) of the mono mix becomes the mean and standard deviation over time of 64 log-mel
bands (absolute dB, floored at -100 dB): 128-d frames that see level, spectral balance,
timbre and how much it moves. A set is a Gaussian fit of its frames (``embedding_stats``) and
two sets are compared by the Fréchet distance of their Gaussians (``frechet_distance``).

A clip with NaN/Inf is measured with those samples set to 0 and flagged ``non-finite``; a
silent clip is measured and flagged ``silent``; a beeping one ``beep``. Nothing here raises on
bad audio content.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import librosa
import numpy as np
import pyloudnorm
from scipy.signal import welch

SAMPLE_RATE = 44100
SILENCE_FLOOR_DBFS = -60.0
SILENCE_FRAME_S = 0.05
BEEP_PEAKS = 2
BEEP_PEAK_HALF_WIDTH_BINS = 3
BEEP_FLAG_SCORE = 0.8
SPECTRUM_FFT = 8192
LOWEST_FREQUENCY_HZ = 20.0
ROLLOFF_SHARE = 0.95
MIN_BEATS = 4
EMBEDDING_MELS = 64
EMBEDDING_WINDOW_S = 1.0
EMBEDDING_HOP_S = 0.5
_MEL_FFT = 2048
_MEL_HOP = 512
_DB_FLOOR = -100.0

FLAG_SILENT = "silent"
FLAG_NON_FINITE = "non-finite"
FLAG_BEEP = "beep"

CLIP_METRICS = (
    "loudness_lufs",
    "silence_ratio",
    "beep_score",
    "tempo_ibi_cv",
    "onset_density",
    "bandwidth_hz",
)

METRICS: dict[str, dict[str, str]] = {
    "loudness_lufs": {"label": "integrated loudness (mean over clips)", "unit": "LUFS",
                      "better": "closer"},
    "loudness_spread_lu": {"label": "loudness spread across clips (std)", "unit": "LU",
                           "better": "closer"},
    "silence_ratio": {"label": "share of 50 ms frames under -60 dBFS", "unit": "ratio",
                      "better": "lower"},
    "beep_score": {"label": "spectral power in the 2 strongest narrow peaks", "unit": "ratio",
                   "better": "lower"},
    "tempo_ibi_cv": {"label": "inter-beat interval variation (std/mean)", "unit": "ratio",
                     "better": "closer"},
    "onset_density": {"label": "onsets per second", "unit": "1/s", "better": "closer"},
    "bandwidth_hz": {"label": "95% spectral roll-off", "unit": "Hz", "better": "closer"},
    "reconstruction_lsd_db": {"label": "autoencoder round trip log-spectral distance (mean)",
                              "unit": "dB", "better": "lower"},
}
"""The measures of a comparison table row: label, unit, and which direction is better ("closer"
= closer to the reference row). Each row also holds `frechet_distance` (``frechet_distance``
of its embedding statistics to the reference's, in dB^2, lower is better)."""


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _as_channels(audio: np.ndarray) -> tuple[np.ndarray, bool]:
    """(channels, n) float64 with non-finite samples set to 0, and whether there were any."""
    samples = np.asarray(audio, dtype=np.float64)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2:
        raise ValueError(f"audio must be (n,) or (n, channels), got shape {samples.shape}")
    finite = np.isfinite(samples)
    all_finite = bool(finite.all())
    if not all_finite:
        samples = np.where(finite, samples, 0.0)
    return samples.T, not all_finite


def integrated_loudness(channels: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float | None:
    """LUFS of (channels, n) audio; None for silence or a clip under one 400 ms block."""
    if channels.shape[1] < int(0.4 * sample_rate) + 1:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = pyloudnorm.Meter(sample_rate).integrated_loudness(channels.T)
    return _finite_or_none(value)


def silence_ratio(
    channels: np.ndarray, sample_rate: int = SAMPLE_RATE, floor_dbfs: float = SILENCE_FLOOR_DBFS
) -> float:
    """Share of 50 ms frames (the last partial frame included) whose RMS is under `floor_dbfs`."""
    frame = max(1, int(SILENCE_FRAME_S * sample_rate))
    count = math.ceil(channels.shape[1] / frame)
    if count == 0:
        return 1.0
    padded = np.zeros((channels.shape[0], count * frame))
    padded[:, : channels.shape[1]] = channels
    power = (padded**2).reshape(channels.shape[0], count, frame).sum(axis=(0, 2))
    lengths = np.full(count, frame * channels.shape[0], dtype=np.float64)
    lengths[-1] = (channels.shape[1] - (count - 1) * frame) * channels.shape[0]
    threshold = 10.0 ** (floor_dbfs / 10.0)
    return float(np.mean(power / lengths < threshold))


def long_term_spectrum(channels: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, Welch power spectrum summed over channels) with bins under 20 Hz zeroed."""
    segment = min(SPECTRUM_FFT, channels.shape[1])
    frequencies, power = welch(channels, fs=sample_rate, nperseg=segment, axis=-1)
    spectrum = np.atleast_2d(power).sum(axis=0)
    spectrum[frequencies < LOWEST_FREQUENCY_HZ] = 0.0
    return frequencies, spectrum


def beep_score(spectrum: np.ndarray, peaks: int = BEEP_PEAKS) -> float:
    """Share of the spectrum's power within +-3 bins of its `peaks` strongest (disjoint) peaks."""
    total = float(spectrum.sum())
    if total <= 0.0:
        return 0.0
    remaining = spectrum.copy()
    captured = 0.0
    for _ in range(peaks):
        peak = int(np.argmax(remaining))
        band = slice(max(0, peak - BEEP_PEAK_HALF_WIDTH_BINS), peak + BEEP_PEAK_HALF_WIDTH_BINS + 1)
        captured += float(remaining[band].sum())
        remaining[band] = 0.0
    return captured / total


def rolloff_hz(frequencies: np.ndarray, spectrum: np.ndarray, share: float = ROLLOFF_SHARE) -> float | None:
    """The lowest frequency under which `share` of the spectrum's power lies (None: no power)."""
    cumulative = np.cumsum(spectrum)
    if cumulative[-1] <= 0.0:
        return None
    return float(frequencies[int(np.searchsorted(cumulative, share * cumulative[-1]))])


def onset_envelope(mono: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """librosa's onset strength (hop 512), shared by the beat tracker and the onset detector."""
    return librosa.onset.onset_strength(y=mono, sr=sample_rate, hop_length=_MEL_HOP)


def tempo_ibi_cv(envelope: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float | None:
    """std / mean of the inter-beat intervals of librosa's beat tracker; None under 4 beats."""
    _, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=sample_rate, hop_length=_MEL_HOP,
                                       units="time")
    if len(beats) < MIN_BEATS:
        return None
    intervals = np.diff(beats)
    return float(np.std(intervals) / np.mean(intervals))


def onset_density(envelope: np.ndarray, seconds: float, sample_rate: int = SAMPLE_RATE) -> float:
    """Onsets per second found by librosa's onset detector in `seconds` of audio."""
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sample_rate, hop_length=_MEL_HOP)
    return len(onsets) / seconds


def _log_mel(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    """(frames, mels) absolute log-mel power in dB, floored at -100 dB."""
    mel = librosa.feature.melspectrogram(
        y=mono, sr=sample_rate, n_fft=_MEL_FFT, hop_length=_MEL_HOP, n_mels=EMBEDDING_MELS, power=2.0
    )
    return 10.0 * np.log10(np.maximum(mel, 10.0 ** (_DB_FLOOR / 10.0))).T


def embedding_frames(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(windows, 128) float64: per 1 s window (0.5 s hop), mean and std over time of 64 log-mel
    bands; a clip shorter than one window gives one frame over all of it."""
    channels, _ = _as_channels(audio)
    log_mel = _log_mel(channels.mean(axis=0).astype(np.float32), sample_rate)
    window = max(1, round(EMBEDDING_WINDOW_S * sample_rate / _MEL_HOP))
    hop = max(1, round(EMBEDDING_HOP_S * sample_rate / _MEL_HOP))
    starts = range(0, max(1, len(log_mel) - window + 1), hop)
    return np.stack([
        np.concatenate([log_mel[s : s + window].mean(axis=0), log_mel[s : s + window].std(axis=0)])
        for s in starts
    ])


def embedding_stats(frames: Sequence[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of the embedding frames of a set (a list of per-clip frame arrays or
    one stacked array); one frame gives a zero covariance."""
    stacked = np.concatenate(list(frames)) if not isinstance(frames, np.ndarray) else frames
    if stacked.ndim != 2 or len(stacked) == 0:
        raise ValueError(f"embedding frames must be a non-empty (n, d) array, got {stacked.shape}")
    mean = stacked.mean(axis=0)
    if len(stacked) == 1:
        return mean, np.zeros((stacked.shape[1], stacked.shape[1]))
    return mean, np.cov(stacked, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(
    mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray
) -> float:
    """|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^1/2).

    tr((C_a C_b)^1/2) is computed as the sum of square roots of the eigenvalues of the
    symmetric PSD matrix C_a^1/2 C_b C_a^1/2 (same eigenvalues as C_a C_b), which stays real
    and stable when the covariances are singular (fewer frames than dimensions).
    """
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    eigen = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    trace_sqrt = float(np.sqrt(np.clip(eigen, 0.0, None)).sum())
    distance = float(np.sum((mean_a - mean_b) ** 2)) + float(np.trace(cov_a) + np.trace(cov_b)) - 2 * trace_sqrt
    return max(0.0, distance)


def measure_clip(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, Any]:
    """Every per-clip measure of (n, 2) or (n,) audio, plus `flags`; never raises on content."""
    channels, had_non_finite = _as_channels(audio)
    mono = channels.mean(axis=0).astype(np.float32)
    frequencies, spectrum = long_term_spectrum(channels, sample_rate)
    silence = silence_ratio(channels, sample_rate)
    silent = silence >= 1.0
    envelope = None if silent else onset_envelope(mono, sample_rate)
    flags = [FLAG_NON_FINITE] if had_non_finite else []
    beep = beep_score(spectrum)
    if silent:
        flags.append(FLAG_SILENT)
    elif beep > BEEP_FLAG_SCORE:
        flags.append(FLAG_BEEP)
    return {
        "loudness_lufs": integrated_loudness(channels, sample_rate),
        "silence_ratio": silence,
        "beep_score": beep,
        "tempo_ibi_cv": None if silent else tempo_ibi_cv(envelope, sample_rate),
        "onset_density": 0.0 if silent else onset_density(envelope, len(mono) / sample_rate, sample_rate),
        "bandwidth_hz": rolloff_hz(frequencies, spectrum),
        "flags": flags,
    }


def _defined(clips: Sequence[dict[str, Any]], name: str) -> list[float]:
    return [float(c[name]) for c in clips if c.get(name) is not None and math.isfinite(c[name])]


def summarize(clips: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Set-level measures: the mean of each clip measure where defined (None where it never
    is) and the loudness spread (population std of the clips' LUFS)."""
    summary: dict[str, float | None] = {}
    for name in CLIP_METRICS:
        values = _defined(clips, name)
        summary[name] = float(np.mean(values)) if values else None
    loudness = _defined(clips, "loudness_lufs")
    summary["loudness_spread_lu"] = float(np.std(loudness)) if loudness else None
    return summary


def count_flags(clips: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many clips carry each flag."""
    counts: dict[str, int] = {}
    for clip in clips:
        for flag in clip.get("flags", []):
            counts[flag] = counts.get(flag, 0) + 1
    return counts
