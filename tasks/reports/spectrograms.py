"""Mel spectrograms for display: the app's images and the reports' figures.

Display only (the model never sees these): a mel power spectrogram of the mono mix in dB,
clamped 80 dB under its peak, and a PNG of it with time and frequency axes. Matplotlib is
imported lazily with the non-interactive Agg backend, so servers and CLI runs need no display.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

N_FFT = 2048
HOP_LENGTH = 512
TOP_DB = 80.0
TITLE_MARGIN_PX = 8
"""Room kept between a title and the image's sides."""


def mono_mix(audio: np.ndarray) -> np.ndarray:
    """The mean of the channels of (n, channels) audio; 1-D audio as it is (float32)."""
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise ValueError(f"audio must be 1-D or (samples, channels), got shape {samples.shape}")
    return samples.mean(axis=1)


def mel_spectrogram_db(audio: np.ndarray, sample_rate: int, n_mels: int = 128) -> np.ndarray:
    """(n_mels, frames) mel power spectrogram of the mono mix in dB (peak at 0 dB, floor -80)."""
    import librosa

    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    samples = mono_mix(audio)
    if samples.size == 0:
        raise ValueError("cannot draw a spectrogram of empty audio")
    if samples.size < N_FFT:
        samples = np.pad(samples, (0, N_FFT - samples.size))
    power = librosa.feature.melspectrogram(
        y=samples, sr=sample_rate, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=n_mels,
        fmax=sample_rate / 2,
    )
    return librosa.power_to_db(power, ref=np.max, top_db=TOP_DB).astype(np.float32)


def mel_spectrogram_png(audio: np.ndarray, sample_rate: int, title: str | None = None) -> bytes:
    """A PNG of the mel spectrogram, time in seconds across and Hz (mel-spaced) up."""
    import matplotlib

    matplotlib.use("Agg")
    import librosa.display
    import matplotlib.pyplot as plt

    mel_db = mel_spectrogram_db(audio, sample_rate)
    figure, axes = plt.subplots(figsize=(8, 3.2), dpi=100)
    try:
        image = librosa.display.specshow(
            mel_db, sr=sample_rate, hop_length=HOP_LENGTH, x_axis="time", y_axis="mel",
            fmax=sample_rate / 2, ax=axes, cmap="magma",
        )
        axes.set_xlabel("time (s)")
        axes.set_ylabel("frequency (Hz)")
        if title:
            _draw_title(figure, title)
        figure.colorbar(image, ax=axes, format="%+.0f dB")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def _draw_title(figure: Figure, title: str) -> None:
    """`title` over the whole figure, wrapped at spaces, and smaller where a line is still wider
    than the figure (a long model name is one word), so the image never cuts it off."""
    text = figure.suptitle(title, wrap=True)
    width = text.get_window_extent(figure.canvas.get_renderer()).width
    room = figure.bbox.width - 2 * TITLE_MARGIN_PX
    if width > room:
        text.set_fontsize(text.get_fontsize() * room / width)
