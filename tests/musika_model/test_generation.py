"""Generator coordinates and end-to-end generation with tiny networks."""

import numpy as np
import pytest
import soundfile as sf

from musika_model import generation, networks
from musika_model.codec import Autoencoder
from musika_model.config import AutoencoderConfig, GanConfig
from musika_model.layers import noise_layers

SR = 44100


@pytest.fixture(scope="module")
def models():
    """A tiny small-window generator and a tiny AE, with every noise scale switched on."""
    generator = networks.build_generator(GanConfig(base_channels=16, small=True))
    autoencoder = Autoencoder.build(AutoencoderConfig.tiny())
    for model in (generator, autoencoder.decoder1, autoencoder.decoder2):
        for layer in noise_layers(model):
            layer.noise_weight.assign([0.5])
    return generator, autoencoder


@pytest.mark.parametrize("bound", [0.3, 1.0, 2.0])
def test_truncated_normal_respects_the_bound(bound):
    draws = generation.truncated_normal(np.random.default_rng(0), (50_000,), bound)
    assert np.abs(draws).max() <= bound
    # Close to the bound there must still be mass: it is a bound, not a scale.
    assert np.abs(draws).max() > 0.95 * bound
    assert abs(draws.mean()) < 0.02


def test_truncated_normal_with_a_wide_bound_is_standard_normal():
    draws = generation.truncated_normal(np.random.default_rng(1), (100_000,), 8.0)
    assert draws.std() == pytest.approx(1.0, abs=0.02)


def test_truncation_must_be_positive():
    with pytest.raises(generation.GenerationError, match="truncation"):
        generation.truncated_normal(np.random.default_rng(0), (3,), 0.0)


def test_coordinates_shape_bound_style_and_continuity():
    gan = GanConfig()
    coords = generation.latent_coordinates(gan, 3, 2, 1.5, np.random.default_rng(7))
    assert coords.shape == (2, 3, 256, 128)
    assert coords.dtype == np.float32
    assert np.abs(coords).max() <= 1.5
    style = coords[..., 64:]
    # One style per sample: constant over windows and frames, different between samples.
    assert np.ptp(style[0], axis=(0, 1)).max() == 0
    assert np.abs(style[0, 0, 0] - style[1, 0, 0]).max() > 0
    # The windows are consecutive stretches of one piecewise-linear path: steps between
    # frames (also across window joins) never exceed anchor distance / coord_length.
    path = coords[0, :, :, :64].reshape(-1, 64)
    steps = np.abs(np.diff(path, axis=0))
    assert steps.max() <= 2 * 1.5 / gan.coord_length + 1e-6
    assert steps.max() > 0


def test_coordinates_are_reproducible_per_seed():
    gan = GanConfig(small=True)
    first = generation.latent_coordinates(gan, 2, 1, 2.0, np.random.default_rng(3))
    again = generation.latent_coordinates(gan, 2, 1, 2.0, np.random.default_rng(3))
    other = generation.latent_coordinates(gan, 2, 1, 2.0, np.random.default_rng(4))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0.1


@pytest.mark.parametrize(
    ("seconds", "small", "windows"),
    [(1.0, False, 1), (23.7, False, 1), (23.9, False, 2), (60.0, False, 3), (11.9, True, 1), (12.0, True, 2)],
)
def test_windows_for_seconds(seconds, small, windows):
    assert generation.windows_for_seconds(seconds, GanConfig(small=small)) == windows


def test_bad_seconds():
    with pytest.raises(generation.GenerationError, match="seconds"):
        generation.windows_for_seconds(0.0, GanConfig())
    with pytest.raises(generation.GenerationError, match="seconds"):
        generation.samples_for_seconds(float("nan"))


def test_generate_lengths_and_range(models):
    generator, autoencoder = models
    calls = []
    pieces = generation.generate(
        generator, autoencoder, 2.5, num_samples=2, truncation=1.0, seed=1,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert len(pieces) == 2
    for piece in pieces:
        assert piece.shape == (round(2.5 * SR), 2)
        assert piece.dtype == np.float32
        assert np.isfinite(piece).all() and np.abs(piece).max() <= 1.0
    assert calls == [(1, 2), (2, 2)]
    assert np.abs(pieces[0] - pieces[1]).max() > 1e-3


def test_same_seed_same_audio_other_seed_other_audio(models):
    generator, autoencoder = models
    first = generation.generate(generator, autoencoder, 1.5, seed=11)[0]
    again = generation.generate(generator, autoencoder, 1.5, seed=11)[0]
    other = generation.generate(generator, autoencoder, 1.5, seed=12)[0]
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_generator_noise_is_part_of_the_seed(models):
    generator, _ = models
    first = generation.generate_latents(generator, 1.0, seed=5)
    again = generation.generate_latents(generator, 1.0, seed=5)
    np.testing.assert_array_equal(first, again)
    # With the same coordinates, a fresh noise state changes the output.
    coords = generation.latent_coordinates(
        generation.gan_config_of(generator), 1, 1, 2.0, np.random.default_rng(5)
    )[:, 0]
    assert np.abs(generator(coords).numpy() - generator(coords).numpy()).max() > 0


def test_generated_latent_length_covers_the_seconds(models):
    generator, _ = models
    latents = generation.generate_latents(generator, 3.0, num_samples=3, seed=0)
    assert latents.shape == (3, 33, 128)  # ceil((3 * 44100 - 768) / 4096) = 33


def test_write_wav_writes_44k_stereo(models, tmp_path):
    generator, autoencoder = models
    piece = generation.generate(generator, autoencoder, 0.5, seed=2)[0]
    path = generation.write_wav(tmp_path / "gen.wav", piece)
    data, rate = sf.read(path, dtype="float32")
    assert rate == SR and data.shape == piece.shape
    np.testing.assert_array_equal(data, piece)


def test_generator_with_unexpected_input_is_rejected():
    import keras

    odd = keras.Sequential([keras.Input((100, 128)), keras.layers.Dense(128)])
    with pytest.raises(generation.GenerationError, match="not \\(B, 256 or 128"):
        generation.gan_config_of(odd)


@pytest.mark.slow
def test_generation_through_xla_gives_the_same_latents_and_audio(models):
    """Generator and decoders compiled with XLA draw the same noise (`counter_random`) and agree
    with the plain graphs to float32 rounding: XLA reorders sums, so not bit for bit. Measured
    here: latents within 4e-6 of a peak of 4.4, audio within 4e-5 of a peak of 1.0 (rounding
    grows through the decoders' convolutions and the inverse STFT). Bounds: 1e-4 of each peak."""
    generator, autoencoder = models
    plain = generation.generate(generator, autoencoder, 2.5, num_samples=2, seed=4)
    compiled = generation.generate(generator, autoencoder, 2.5, num_samples=2, seed=4, jit_compile=True)
    plain_latents = generation.generate_latents(generator, 2.5, num_samples=2, seed=4)
    compiled_latents = generation.generate_latents(generator, 2.5, num_samples=2, seed=4, jit_compile=True)
    assert np.abs(plain_latents).max() > 0.1
    np.testing.assert_allclose(compiled_latents, plain_latents, rtol=0, atol=1e-4 * np.abs(plain_latents).max())
    for expected, found in zip(plain, compiled, strict=True):
        assert np.abs(expected).max() > 1e-3
        np.testing.assert_allclose(found, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
