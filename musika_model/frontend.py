"""Musika's STFT front end: waveform <-> normalised log-power spectrogram (+ phase map).

Frame 1024, hop 256, periodic Hann window, no centring or end padding (so F frames cover
(F - 1) * 256 + 1024 samples). The forward representation is the log-power in dB with a
1e-10 power floor, normalised as (dB + 25) / 75. The inverse takes a normalised
log-magnitude M and a phase map P in units of pi, both as the decoder emits them, and runs
one inverse STFT with the dual window; the waveform is clipped to [-1, 1].

The frame arithmetic at the top is plain Python (no TensorFlow) so data stages can use it.
The TensorFlow functions import TensorFlow lazily and are safe inside `tf.function`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from musika_model.config import (
    HOP,
    MU_RESCALE,
    N_FFT,
    SAMPLES_PER_LATENT,
    SIGMA_RESCALE,
    STFT_FRAMES_PER_LATENT,
)

if TYPE_CHECKING:
    import tensorflow as tf

POWER_FLOOR = 1e-10
"""Power floor of the log spectrogram: -100 dB, which normalises to exactly -1."""
AMPLITUDE_EPS = 1e-7
"""Added to the power before the square root in the inverse (as the original does)."""


def frame_count(num_samples: int) -> int:
    """Number of whole STFT frames in `num_samples` samples (0 when shorter than one frame)."""
    if num_samples < N_FFT:
        return 0
    return (num_samples - N_FFT) // HOP + 1


def samples_for_frames(num_frames: int) -> int:
    """Waveform length the inverse STFT produces from `num_frames` frames."""
    if num_frames < 1:
        raise ValueError(f"need at least one STFT frame, got {num_frames}")
    return (num_frames - 1) * HOP + N_FFT


def samples_for_latents(num_latents: int) -> int:
    """Waveform length decoded from `num_latents` latent frames (16 STFT frames each)."""
    return samples_for_frames(num_latents * STFT_FRAMES_PER_LATENT)


def latents_for_samples(num_samples: int) -> int:
    """Latent frames needed to cover `num_samples` samples, the last one possibly padded.

    Latent t covers samples [4096 t, 4096 t + 4864); T latents decode to 4096 T + 768 samples.
    """
    if num_samples < 1:
        raise ValueError(f"need at least one sample, got {num_samples}")
    overlap = N_FFT - HOP
    return max(1, math.ceil((num_samples - overlap) / SAMPLES_PER_LATENT))


def _hann(frame_length: int, dtype: tf.DType) -> tf.Tensor:
    import tensorflow as tf

    return tf.signal.hann_window(frame_length, periodic=True, dtype=dtype)


def stft(wave: tf.Tensor) -> tf.Tensor:
    """Complex STFT of `wave` (..., n) -> (..., frames, 513), no padding."""
    import tensorflow as tf

    return tf.signal.stft(
        wave, frame_length=N_FFT, frame_step=HOP, fft_length=N_FFT, window_fn=_hann, pad_end=False
    )


def normalise_db(db: tf.Tensor) -> tf.Tensor:
    """dB -> the network's normalised scale, (dB + 25) / 75."""
    return (db - MU_RESCALE) / SIGMA_RESCALE


def spectrogram(wave: tf.Tensor) -> tf.Tensor:
    """Normalised log-power spectrogram (..., frames, 513) of a float waveform (..., n).

    Not clipped: silence maps to -1, a full-scale sinusoid to about +1.05.
    """
    import tensorflow as tf

    power = tf.math.square(tf.math.abs(stft(wave)))
    db = 10.0 * tf.math.log(tf.math.maximum(power, POWER_FLOOR)) / math.log(10.0)
    return normalise_db(db)


def phase_map(wave: tf.Tensor) -> tf.Tensor:
    """The true STFT phase of `wave` in units of pi, in [-1, 1] (..., frames, 513).

    The encoder never sees phase; this is what a decoder's phase head is trained towards
    and what a round-trip check of the inverse uses.
    """
    import tensorflow as tf

    return tf.math.angle(stft(wave)) / math.pi


def complex_spectrum(magnitude: tf.Tensor, phase: tf.Tensor) -> tf.Tensor:
    """Complex STFT from a normalised log-magnitude M and a phase map P (both clipped to +-1)."""
    import tensorflow as tf

    magnitude = tf.clip_by_value(magnitude, -1.0, 1.0)
    phase = tf.clip_by_value(phase, -1.0, 1.0)
    db = magnitude * SIGMA_RESCALE + MU_RESCALE
    amplitude = tf.math.sqrt(tf.math.pow(10.0, db / 10.0) + AMPLITUDE_EPS)
    angle = phase * math.pi
    return tf.complex(amplitude * tf.math.cos(angle), amplitude * tf.math.sin(angle))


def inverse(magnitude: tf.Tensor, phase: tf.Tensor) -> tf.Tensor:
    """Waveform (..., (F - 1) * 256 + 1024) from M and P (..., F, 513), clipped to [-1, 1]."""
    import tensorflow as tf

    wave = tf.signal.inverse_stft(
        complex_spectrum(magnitude, phase),
        frame_length=N_FFT,
        frame_step=HOP,
        fft_length=N_FFT,
        window_fn=tf.signal.inverse_stft_window_fn(HOP, forward_window_fn=_hann),
    )
    return tf.clip_by_value(wave, -1.0, 1.0)
