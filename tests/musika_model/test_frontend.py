"""The STFT front end: frame arithmetic, the forward representation and its inverse."""

import math

import numpy as np
import pytest
import tensorflow as tf

from musika_model import frontend

SR = 44100


def _tone(seconds: float, frequency: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("samples", "frames"), [(0, 0), (1023, 0), (1024, 1), (1279, 1), (1280, 2), (44100, 169)]
)
def test_frame_count(samples, frames):
    assert frontend.frame_count(samples) == frames


def test_samples_for_frames_and_latents():
    assert frontend.samples_for_frames(1) == 1024
    assert frontend.samples_for_frames(16) == 15 * 256 + 1024
    assert frontend.samples_for_latents(1) == 4096 + 768
    assert frontend.samples_for_latents(8) == 8 * 4096 + 768
    with pytest.raises(ValueError, match="at least one STFT frame"):
        frontend.samples_for_frames(0)


@pytest.mark.parametrize("samples", [1, 767, 768, 4864, 4865, 8960, 8961, 44100, 1_000_003])
def test_latents_for_samples_covers_the_audio_with_less_than_one_latent_of_padding(samples):
    latents = frontend.latents_for_samples(samples)
    covered = frontend.samples_for_latents(latents)
    assert covered >= samples
    assert latents == 1 or covered - samples < 4096


def test_latents_for_samples_rejects_empty():
    with pytest.raises(ValueError, match="at least one sample"):
        frontend.latents_for_samples(0)


def test_spectrogram_shape_and_silence_floor():
    wave = np.zeros((2, 3 * 4096), np.float32)
    spec = frontend.spectrogram(tf.constant(wave)).numpy()
    assert spec.shape == (2, frontend.frame_count(3 * 4096), 513)
    np.testing.assert_allclose(spec, -1.0, atol=1e-6)


def test_spectrogram_level_of_a_bin_centred_sinusoid():
    amplitude, bin_index = 0.8, 40
    frequency = bin_index * SR / 1024
    spec = frontend.spectrogram(tf.constant(_tone(0.5, frequency, amplitude))).numpy()
    # A periodic Hann window sums to 512, so the bin holds amplitude * 512 / 2.
    expected_db = 20 * math.log10(amplitude * 512 / 2)
    assert spec[:, bin_index].mean() == pytest.approx((expected_db + 25) / 75, abs=1e-3)
    assert int(np.argmax(spec.mean(axis=0))) == bin_index


def test_round_trip_with_the_true_phase_is_exact_inside_the_edges():
    rng = np.random.default_rng(0)
    wave = _tone(2.0, 440.0, 0.4) + 0.05 * rng.standard_normal(2 * SR).astype(np.float32)
    tensor = tf.constant(wave)
    magnitude, phase = frontend.spectrogram(tensor), frontend.phase_map(tensor)
    assert float(tf.reduce_max(tf.abs(phase))) <= 1.0
    rebuilt = frontend.inverse(magnitude, phase).numpy()
    frames = magnitude.shape[0]
    assert rebuilt.shape == (frontend.samples_for_frames(frames),)
    edge = 1024 - 256  # the first and last 768 samples lack full window overlap
    interior = slice(edge, len(rebuilt) - edge)
    error = np.abs(rebuilt[interior] - wave[: len(rebuilt)][interior])
    assert error.max() < 1e-4


def test_inverse_clips_its_inputs_and_output():
    rng = np.random.default_rng(1)
    magnitude = tf.constant(rng.uniform(2.0, 3.0, (20, 513)).astype(np.float32))
    phase = tf.constant(rng.uniform(-3.0, 3.0, (20, 513)).astype(np.float32))
    wave = frontend.inverse(magnitude, phase).numpy()
    assert wave.shape == (frontend.samples_for_frames(20),)
    assert np.abs(wave).max() <= 1.0
    clipped = frontend.inverse(tf.ones_like(magnitude), tf.clip_by_value(phase, -1.0, 1.0))
    np.testing.assert_allclose(wave, clipped.numpy(), atol=1e-6)


def test_front_end_runs_inside_tf_function_with_dynamic_length():
    @tf.function(input_signature=[tf.TensorSpec((None,), tf.float32)])
    def round_trip(wave):
        return frontend.inverse(frontend.spectrogram(wave), frontend.phase_map(wave))

    for seconds in (0.3, 0.7):
        wave = _tone(seconds, 1000.0)
        out = round_trip(tf.constant(wave)).numpy()
        assert out.shape == (frontend.samples_for_frames(frontend.frame_count(len(wave))),)
