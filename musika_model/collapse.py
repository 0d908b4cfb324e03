"""Collapse checks on generated samples: `collapse_report` judges decoded audio (near-silence, or
a narrow-band "beep"); `latent_report` judges latents when no autoencoder is at hand
(non-finite, or nearly constant over time compared with the training windows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SPECTRUM_FFT = 4096
PEAK_HALF_WIDTH_BINS = 3
"""The "narrow band" around the strongest bin: +-3 bins of a 4096-point FFT (+-32 Hz at 44.1 kHz)."""
LOWEST_FREQUENCY = 20.0


@dataclass(frozen=True)
class CollapseReport:
    """Scores of one generated sample and what they flag."""

    silent: bool
    tonal: bool
    rms_dbfs: float
    peak_band_ratio: float
    """Share of the long-term spectrum's energy in the narrow band around its strongest bin."""
    peak_frequency_hz: float
    spectral_flatness: float
    """Geometric over arithmetic mean of the long-term power spectrum (1 = white noise)."""

    @property
    def collapsed(self) -> bool:
        return self.silent or self.tonal

    @property
    def reason(self) -> str:
        if self.silent:
            return f"near-silence ({self.rms_dbfs:.1f} dBFS)"
        if self.tonal:
            return (
                f"beep: {self.peak_band_ratio:.0%} of the energy within "
                f"+-{PEAK_HALF_WIDTH_BINS} bins of {self.peak_frequency_hz:.0f} Hz"
            )
        return "ok"


def _long_term_spectrum(channels: np.ndarray) -> np.ndarray:
    """Mean power spectrum over Hann frames of every channel, summed over channels."""
    window = np.hanning(SPECTRUM_FFT)
    hop = SPECTRUM_FFT // 2
    spectrum = np.zeros(SPECTRUM_FFT // 2 + 1)
    for channel in channels:
        if len(channel) < SPECTRUM_FFT:
            channel = np.pad(channel, (0, SPECTRUM_FFT - len(channel)))
        frames = np.lib.stride_tricks.sliding_window_view(channel, SPECTRUM_FFT)[::hop]
        spectrum += (np.abs(np.fft.rfft(frames * window, axis=1)) ** 2).mean(axis=0)
    return spectrum


def collapse_report(
    audio: np.ndarray,
    sample_rate: int,
    *,
    silence_dbfs: float = -50.0,
    tonal_peak_ratio: float = 0.5,
) -> CollapseReport:
    """Judge audio ((n,) or (n, channels)) for near-silence and for a narrow-band "beep".

    silent: RMS over all channels below `silence_dbfs`. tonal: not silent, and more than
    `tonal_peak_ratio` of the long-term spectrum's energy (above 20 Hz) sits within +-3 FFT
    bins of its strongest bin. Music spreads its energy over many partials and pitches over
    time; a stuck tone does not.
    """
    samples = np.asarray(audio, dtype=np.float64)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise ValueError(f"audio must be (n,) or (n, channels) with n >= 1, got {samples.shape}")
    if not np.isfinite(samples).all():
        raise ValueError("audio contains NaN or Inf")
    rms = math.sqrt(float(np.mean(samples**2)))
    rms_dbfs = 20.0 * math.log10(max(rms, 1e-10))
    spectrum = _long_term_spectrum(samples.T)
    frequencies = np.fft.rfftfreq(SPECTRUM_FFT, 1.0 / sample_rate)
    spectrum[frequencies < LOWEST_FREQUENCY] = 0.0
    total = float(spectrum.sum())
    if total > 0:
        peak = int(np.argmax(spectrum))
        band = spectrum[max(0, peak - PEAK_HALF_WIDTH_BINS) : peak + PEAK_HALF_WIDTH_BINS + 1]
        ratio = float(band.sum()) / total
        used = spectrum[frequencies >= LOWEST_FREQUENCY]
        flatness = float(np.exp(np.mean(np.log(used + 1e-30))) / np.mean(used))
        peak_hz = float(frequencies[peak])
    else:
        ratio, flatness, peak_hz = 0.0, 0.0, 0.0
    silent = rms_dbfs < silence_dbfs
    return CollapseReport(
        silent=silent,
        tonal=not silent and ratio > tonal_peak_ratio,
        rms_dbfs=rms_dbfs,
        peak_band_ratio=ratio,
        peak_frequency_hz=peak_hz,
        spectral_flatness=flatness,
    )


@dataclass(frozen=True)
class LatentReport:
    """Statistics of generated latents when no autoencoder is at hand to listen to them."""

    finite: bool
    static: bool
    temporal_std: float
    """Mean over latent dimensions of the standard deviation over time."""
    reference_std: float
    """The same statistic on training windows."""

    @property
    def collapsed(self) -> bool:
        return not self.finite or self.static

    @property
    def reason(self) -> str:
        if not self.finite:
            return "non-finite generated latents"
        if self.static:
            return (
                f"static latents: variation over time {self.temporal_std:.4f} against "
                f"{self.reference_std:.4f} in the training data"
            )
        return "ok"


def temporal_std(latents: np.ndarray) -> float:
    """Mean over windows and dimensions of the std over time of (T, D) or (B, T, D) latents."""
    values = np.asarray(latents, dtype=np.float64)
    if values.ndim == 2:
        values = values[None]
    return float(values.std(axis=1).mean())


def latent_report(
    latents: np.ndarray, reference_std: float, static_ratio: float = 0.1
) -> LatentReport:
    """Flag non-finite latents, or latents varying less than `static_ratio` x the training data."""
    finite = bool(np.isfinite(latents).all())
    variation = temporal_std(latents) if finite else float("nan")
    return LatentReport(
        finite=finite,
        static=finite and variation < static_ratio * reference_std,
        temporal_std=variation,
        reference_std=reference_std,
    )
