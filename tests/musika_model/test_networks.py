"""Shapes, parameter counts and structural properties of the Musika networks."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from musika_model import layers as musika_layers
from musika_model import networks
from musika_model.config import AutoencoderConfig, GanConfig

# Official parameter counts (docs/musika.md §2-3, docs/official-weights.md §4).
OFFICIAL_AE_PARAMETERS = {
    "encoder1": 4_790_336,
    "decoder1": 12_673_291,
    "encoder2": 3_984_960,
    "decoder2": 6_639_303,
}
OFFICIAL_GAN_PARAMETERS = {
    (64, False): (4_325_578, 5_248_769),
    (128, False): (15_499_530, 20_786_689),
    (128, True): (12_009_738, 16_770_817),
}


def generator_parameters(c: int, small: bool, width: int = 128) -> int:
    """Parameter count of the generator derived by hand from the architecture description."""

    def conv(k: int, cin: int, cout: int) -> int:
        return k * cin * cout + cout

    def modulated(k: int, cin: int, cout: int) -> int:
        return conv(k, cin, cout) + 1 + conv(1, width, cout)  # conv, noise scalar, `ai` conv

    total = conv(1, 2 * width, 28 * c) + 1 + conv(1, width, 7 * c)  # stem Dense, noise, Mod
    if small:
        total += modulated(1, 7 * c, 6 * c) + modulated(1, 6 * c, 6 * c) + conv(1, 7 * c, 6 * c)
    else:
        total += (
            modulated(4, 7 * c, 6 * c) + modulated(4, 6 * c, 6 * c) + conv(1, 7 * c // 2, 6 * c)
        )
    for cin, cout in ((6 * c, 5 * c), (5 * c, 4 * c), (4 * c, 3 * c)):
        total += modulated(4, cin, cout) + modulated(4, cout, cout) + conv(1, cin // 2, cout)
    return total + modulated(4, 3 * c, 2 * c) + conv(4, 2 * c, 128)


def critic_parameters(c: int, small: bool) -> int:
    """Parameter count of the critic derived by hand from the architecture description."""

    def conv(k: int, cin: int, cout: int, bias: bool = True) -> int:
        return k * cin * cout + (cout if bias else 0)

    blocks = [(3 * c, 4 * c, 4), (4 * c, 5 * c, 4), (5 * c, 6 * c, 4), (6 * c, 7 * c, 4)]
    if not small:
        blocks.append((7 * c, 7 * c, 1))
    total = conv(4, 128, 3 * c)
    for cin, cout, first_kernel in blocks:
        total += conv(first_kernel, cin, cin) + conv(4, cin, cout)
        total += conv(1, cin, cout, bias=False) if cin != cout else 0
    return total + conv(3, 7 * c, 7 * c) + 4 * 7 * c + 1


def test_hand_formulas_reproduce_the_published_counts():
    for (c, small), (gen, critic) in OFFICIAL_GAN_PARAMETERS.items():
        assert generator_parameters(c, small) == gen
        assert critic_parameters(c, small) == critic
    assert round(generator_parameters(192, False) / 1e6, 2) == 33.52
    assert round(critic_parameters(192, False) / 1e6, 2) == 46.61


@pytest.mark.parametrize("role", sorted(OFFICIAL_AE_PARAMETERS))
def test_official_autoencoder_parameter_counts(role):
    model = getattr(networks, f"build_{role}")(AutoencoderConfig())
    assert model.count_params() == OFFICIAL_AE_PARAMETERS[role]
    assert len(model.weights) == len(model.trainable_weights)


@pytest.mark.parametrize("channels, small", sorted(OFFICIAL_GAN_PARAMETERS))
def test_gan_parameter_counts(channels, small):
    gan = GanConfig(base_channels=channels, small=small)
    gen, critic = OFFICIAL_GAN_PARAMETERS[(channels, small)]
    assert networks.build_generator(gan).count_params() == gen
    assert networks.build_critic(gan).count_params() == critic


def test_gan_parameter_counts_at_base_channels_256():
    gan = GanConfig(base_channels=256)
    assert networks.build_generator(gan).count_params() == generator_parameters(256, False)
    assert networks.build_critic(gan).count_params() == critic_parameters(256, False)


TINY_AE = AutoencoderConfig.tiny(16)


@pytest.mark.parametrize(
    "role, input_shape, output_shapes",
    [
        ("encoder1", (128, 513), [(128, 64)]),
        ("decoder1", (128, 64), [(128, 513), (128, 513)]),
        ("encoder2", (128, 64), [(8, 64)]),
        ("decoder2", (8, 64), [(128, 64)]),
    ],
)
def test_autoencoder_io_shapes(role, input_shape, output_shapes):
    model = getattr(networks, f"build_{role}")(TINY_AE)
    assert [tuple(t.shape[1:]) for t in model.inputs] == [input_shape]
    outputs = model(np.random.default_rng(0).uniform(-1, 1, (3, *input_shape)).astype("float32"))
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    assert [tuple(o.shape) for o in outputs] == [(3, *shape) for shape in output_shapes]
    assert all(keras.backend.standardize_dtype(o.dtype) == "float32" for o in outputs)


def test_bounded_outputs():
    rng = np.random.default_rng(1)
    encoded = networks.build_encoder1(TINY_AE)(rng.normal(0, 50, (2, 128, 513)).astype("float32"))
    assert np.abs(np.asarray(encoded)).max() <= 1.0
    decoder = networks.build_decoder1(TINY_AE)
    for weight in decoder.get_layer("dec1_magnitude").weights:
        weight.assign(np.full(weight.shape, 5.0, "float32"))
    magnitude, phase = decoder(rng.normal(0, 1, (2, 128, 64)).astype("float32"))
    assert np.abs(np.asarray(magnitude)).max() <= 1.0
    assert np.abs(np.asarray(magnitude)).max() == 1.0  # the clip is active
    assert np.abs(np.asarray(phase)).max() <= 1.0


@pytest.mark.parametrize("small", [False, True])
def test_gan_io_shapes(small):
    gan = GanConfig(base_channels=16, small=small)
    generator = networks.build_generator(gan)
    critic = networks.build_critic(gan)
    coordinates = (
        np.random.default_rng(0).normal(size=(3, gan.latent_length, 128)).astype("float32")
    )
    latents = generator(coordinates)
    assert tuple(latents.shape) == (3, gan.latent_length, 128)
    assert tuple(critic(latents).shape) == (3, 1)


def _changed_frames(model, inputs: np.ndarray, item: int, frames: slice) -> np.ndarray:
    """Per output frame of item 0: did it change when `frames` of input `item` were perturbed?"""
    perturbed = inputs.copy()
    perturbed[item, frames] += 0.5
    before = model(inputs)
    after = model(perturbed)
    before = before[0] if isinstance(before, (list, tuple)) else before
    after = after[0] if isinstance(after, (list, tuple)) else after
    return np.abs(np.asarray(after)[0] - np.asarray(before)[0]).max(axis=-1) > 0


@pytest.mark.parametrize(
    "role, input_shape, window_in, window_out",
    [("decoder1", (128, 64), 64, 64), ("encoder2", (128, 64), 16, 1), ("decoder2", (8, 64), 4, 64)],
)
def test_autoencoder_windows_are_independent_and_in_time_order(
    role, input_shape, window_in, window_out
):
    model = getattr(networks, f"build_{role}")(TINY_AE)
    musika_layers.set_noise_enabled(model, False)
    inputs = np.random.default_rng(2).uniform(-1, 1, (2, *input_shape)).astype("float32")
    changed = _changed_frames(model, inputs, 0, slice(window_in, 2 * window_in))
    assert not changed[:window_out].any()
    assert changed[window_out : 2 * window_out].any()
    assert not changed[2 * window_out :].any()
    assert not _changed_frames(model, inputs, 1, slice(None)).any()


def test_generator_halves_are_independent():
    gan = GanConfig(base_channels=16)
    generator = networks.build_generator(gan)
    musika_layers.set_noise_enabled(generator, False)
    coordinates = np.random.default_rng(3).normal(size=(2, 256, 128)).astype("float32")
    changed = _changed_frames(generator, coordinates, 0, slice(128, 256))
    assert not changed[:128].any()
    assert changed[128:].all()
    assert not _changed_frames(generator, coordinates, 1, slice(None)).any()


def test_critic_sees_the_whole_window():
    critic = networks.build_critic(GanConfig(base_channels=16))
    latents = np.random.default_rng(4).normal(size=(2, 256, 128)).astype("float32")
    for frames in (slice(0, 1), slice(255, 256)):
        perturbed = latents.copy()
        perturbed[0, frames] += 1.0
        assert np.asarray(critic(perturbed))[0, 0] != np.asarray(critic(latents))[0, 0]


def test_layers_start_independently_initialised():
    encoder = networks.build_encoder1(TINY_AE)
    kernels = [np.asarray(encoder.get_layer(f"enc1_conv{i}").kernel) for i in range(2, 6)]
    assert all(k.shape == kernels[0].shape for k in kernels)
    for first in range(len(kernels)):
        for second in range(first + 1, len(kernels)):
            assert not np.allclose(kernels[first], kernels[second])
    twice = [networks.build_generator(GanConfig(base_channels=16)) for _ in range(2)]
    assert not np.allclose(twice[0].get_layer("1c").kernel, twice[1].get_layer("1c").kernel)


def test_gan_set_starts_with_ema_equal_to_generator():
    gan = networks.build_gan(GanConfig(base_channels=16))
    for weight, ema_weight in zip(gan.generator.weights, gan.generator_ema.weights):
        np.testing.assert_array_equal(np.asarray(weight), np.asarray(ema_weight))
    assert gan.generator is not gan.generator_ema


def test_no_dead_decoder_layers():
    decoder = networks.build_decoder1(TINY_AE)
    weighted = [layer for layer in decoder.layers if layer.weights]
    assert len(weighted) == 20
    assert len(decoder.weights) == 31


def test_pixel_shuffle_moves_channel_pairs_to_consecutive_frames():
    x = np.arange(2 * 1 * 3 * 8, dtype="float32").reshape(2, 1, 3, 8)
    shuffled = np.asarray(musika_layers.pixel_shuffle(x))
    assert shuffled.shape == (2, 1, 6, 4)
    for t in range(3):
        for j in range(2):
            for c in range(4):
                assert shuffled[1, 0, 2 * t + j, c] == x[1, 0, t, 2 * c + j]


def test_modulation_divides_by_temporal_std_and_scales():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 1, 8, 3)).astype("float32")
    scale = rng.normal(size=(2, 1, 8, 3)).astype("float32")
    result = np.asarray(musika_layers.Modulation()([x, scale]))
    expected = x / (x.astype("float64").std(axis=2, keepdims=True) + 1e-5) * scale
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


def test_noise_is_active_switchable_and_seedable():
    decoder = networks.build_decoder2(TINY_AE)
    noise = musika_layers.noise_layers(decoder)
    assert len(noise) == 7
    assert all(float(layer.noise_weight[0]) == 0.0 for layer in noise)
    latents = np.random.default_rng(6).uniform(-1, 1, (2, 8, 64)).astype("float32")
    np.testing.assert_array_equal(np.asarray(decoder(latents)), np.asarray(decoder(latents)))
    for layer in noise:
        layer.noise_weight.assign(np.ones(1, "float32"))
    assert not np.allclose(decoder(latents), decoder(latents))
    musika_layers.set_noise_seed(decoder, 11)
    first = np.asarray(decoder(latents))
    musika_layers.set_noise_seed(decoder, 11)
    np.testing.assert_array_equal(first, np.asarray(decoder(latents)))
    assert musika_layers.set_noise_enabled(decoder, False) == 7
    np.testing.assert_array_equal(np.asarray(decoder(latents)), np.asarray(decoder(latents)))


def test_describe_networks_is_json_and_matches_the_official_sizes():
    import json

    from musika_model.info import describe_networks

    info = describe_networks(base_channels=64)
    assert json.loads(json.dumps(info)) == info
    parameters = {role: entry["parameters"] for role, entry in info["networks"].items()}
    assert {role: parameters[role] for role in OFFICIAL_AE_PARAMETERS} == OFFICIAL_AE_PARAMETERS
    assert (parameters["generator"], parameters["critic"]) == OFFICIAL_GAN_PARAMETERS[(64, False)]
    assert info["networks"]["decoder1"]["outputs"] == [
        {"name": "magnitude", "shape": [None, 128, 513]},
        {"name": "phase", "shape": [None, 128, 513]},
    ]
    assert info["networks"]["generator"]["inputs"][0]["shape"] == [None, 256, 128]
    assert info["totals"]["autoencoder"] == sum(OFFICIAL_AE_PARAMETERS.values())
    assert info["autoencoder"]["official"] is True


def test_describe_networks_small_and_tiny():
    from musika_model.info import describe_networks

    info = describe_networks(base_channels=16, small=True, ae=TINY_AE)
    assert info["gan"]["latent_length"] == 128
    assert info["networks"]["critic"]["inputs"][0]["shape"] == [None, 128, 128]
    assert info["networks"]["generator"]["parameters"] == generator_parameters(16, True)
    assert info["autoencoder"]["official"] is False
    with pytest.raises(ValueError, match="base_channels"):
        describe_networks(base_channels=0)
