"""Autoencoder training on a tiny synthetic set."""

import math

import numpy as np
import pytest
import tensorflow as tf

from musika_model import ae_training
from musika_model.ae_training import AeTrainingConfig, AeTrainingError, train_autoencoder
from musika_model.audio import NonFiniteAudioError
from musika_model.codec import Autoencoder
from musika_model.config import AutoencoderConfig
from musika_model.frontend import phase_map, spectrogram

SR = 44100


def _clips(count: int = 3, seconds: float = 3.0) -> list[np.ndarray]:
    """Harmonic tones at a few pitches with a slow tremolo (never silent), stereo."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    clips = []
    for index in range(count):
        pitch = 220.0 * 2 ** (index / 4)
        tone = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in (1, 2, 3))
        envelope = 0.7 + 0.3 * np.sin(2 * np.pi * 0.5 * t)
        left = 0.3 * tone * envelope
        right = 0.3 * np.roll(tone, 200) * envelope
        clip = np.stack([left, right], axis=1) + 0.003 * rng.standard_normal((len(t), 2))
        clips.append(clip.astype(np.float32))
    return clips


def _mean(entries, key):
    return float(np.mean([entry[key] for entry in entries]))


def test_both_stages_reduce_their_losses():
    calls = []
    config = AeTrainingConfig(stage1_steps=24, stage2_steps=24, batch_size=2, seed=1,
                              stage2_learning_rate=1e-3)
    result = train_autoencoder(
        _clips(), AutoencoderConfig.tiny(), config, progress=lambda s, l: calls.append((s, l))
    )
    history = result.history
    assert [int(entry["step"]) for entry in history] == list(range(1, 49))
    assert [step for step, _ in calls] == list(range(1, 49))
    assert set(calls[0][1]) == {"stage1/magnitude", "stage1/phase", "stage1/stft", "stage1/total"}
    assert set(calls[-1][1]) == {"stage2/latent", "stage2/magnitude", "stage2/spread",
                                 "stage2/total"}
    stage1 = [entry for entry in history if "stage1/total" in entry]
    stage2 = [entry for entry in history if "stage2/total" in entry]
    for key, entries, factor in (("stage1/total", stage1, 0.8), ("stage1/stft", stage1, 0.8),
                                 ("stage2/latent", stage2, 0.9), ("stage2/total", stage2, 0.97)):
        first, last = _mean(entries[:4], key), _mean(entries[-4:], key)
        assert last < factor * first, (key, first, last)
    assert all(math.isfinite(v) for entry in history for v in entry.values())

    latents = result.autoencoder.encode(_clips(1, 1.0)[0]).latents
    assert np.isfinite(latents).all()
    assert latents.std(axis=0).mean() > 0.01  # the latents vary over time


def test_adversarial_term_and_log_every():
    config = AeTrainingConfig(stage1_steps=4, stage2_steps=2, batch_size=2,
                              adversarial_weight=0.1, log_every=2)
    result = train_autoencoder(_clips(2, 1.5), AutoencoderConfig.tiny(), config)
    assert [int(entry["step"]) for entry in result.history] == [2, 4, 6]
    assert math.isfinite(result.history[0]["stage1/adversarial"])
    assert math.isfinite(result.history[0]["stage1/critic"])


def test_training_continues_a_given_autoencoder_and_keeps_its_config():
    autoencoder = Autoencoder.build(AutoencoderConfig.tiny(divisor=32))
    before = [w.numpy().copy() for w in autoencoder.encoder2.weights]
    config = AeTrainingConfig(stage1_steps=0, stage2_steps=2, batch_size=2)
    result = train_autoencoder(_clips(1, 1.0), config=config, autoencoder=autoencoder)
    assert result.autoencoder is autoencoder
    after = [w.numpy() for w in autoencoder.encoder2.weights]
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, after, strict=True))


def test_short_clips_are_zero_padded_crops():
    sampler = ae_training.CropSampler([np.ones((1000, 2), np.float32)], 33_536, seed=0)
    batch = sampler.batch(3)
    assert batch.shape == (3, 33_536)
    assert (batch[:, :1000] == 1).all() and (batch[:, 1000:] == 0).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stage1_steps": -1}, "stage1_steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"stage2_learning_rate": float("nan")}, "stage2_learning_rate"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(AeTrainingError, match=message):
        AeTrainingConfig(**kwargs)


def test_bad_data():
    with pytest.raises(AeTrainingError, match="no training audio"):
        train_autoencoder([], config=AeTrainingConfig(stage1_steps=1, stage2_steps=0))
    bad = _clips(1, 0.5)[0]
    bad[100, 0] = np.nan
    with pytest.raises(NonFiniteAudioError, match="training clip 0"):
        train_autoencoder([bad], config=AeTrainingConfig(stage1_steps=1, stage2_steps=0))


def test_phase_difference_loss_ignores_a_constant_offset_and_wrapping():
    wave = tf.constant(_clips(1, 0.5)[0][:, 0][None])
    spec, phase = spectrogram(wave), phase_map(wave)
    assert float(ae_training.phase_difference_loss(phase, phase, spec)) < 1e-6
    shifted = tf.math.floormod(phase + 0.7 + 1.0, 2.0) - 1.0  # + 0.7 pi, wrapped to [-1, 1)
    assert float(ae_training.phase_difference_loss(shifted, phase, spec)) < 1e-5
    noisy = phase + tf.random.stateless_uniform(phase.shape, (1, 2), -0.5, 0.5)
    assert float(ae_training.phase_difference_loss(noisy, phase, spec)) > 0.05


def test_multi_resolution_stft_loss():
    clip = _clips(1, 0.5)[0].T
    same = float(ae_training.multi_resolution_stft_loss(tf.constant(clip), tf.constant(clip)))
    assert same < 1e-6
    other = float(ae_training.multi_resolution_stft_loss(tf.constant(0.5 * clip), tf.constant(clip)))
    assert other > 0.1


def test_reconstruction_metrics_are_finite():
    autoencoder = Autoencoder.build(AutoencoderConfig.tiny())
    metrics = ae_training.reconstruction_metrics(autoencoder, _clips(1, 2.0)[0])
    assert metrics["latent_finite"]
    for key in ("log_spectral_distance_db", "mr_stft", "latent_std", "latent_saturated"):
        assert math.isfinite(metrics[key])
    assert metrics["log_spectral_distance_db"] > 0


def test_conflicting_autoencoder_and_config():
    autoencoder = Autoencoder.build(AutoencoderConfig.tiny(divisor=32))
    with pytest.raises(AeTrainingError, match="differs"):
        train_autoencoder(_clips(1, 1.0), AutoencoderConfig.tiny(), autoencoder=autoencoder)
