"""Builders of the six 44.1 kHz Musika networks as Keras 3 functional models.

Every builder returns a fresh `keras.Model` whose weights map 1:1 onto the official HDF5 files
(`musika_model.official` does that mapping). Internally the networks work like the original on
(rows, 1, time, channels) tensors with (1, k) kernels, so every kernel has the official Keras
shape. Each layer gets its own HeUniform initializer: no two layers start identical.

Input/output convention (all float32, batch axis first, no unit axes):

| network  | input                               | output(s)                                   |
|----------|-------------------------------------|---------------------------------------------|
| encoder1 | spectrogram chunk (B, 128, 513)     | level-1 latents (B, 128, 64), tanh          |
| decoder1 | level-1 latents (B, 128, 64)        | magnitude (B, 128, 513), phase (B, 128, 513)|
| encoder2 | level-1 latents (B, 128, 64)        | latents (B, 8, 64), tanh                    |
| decoder2 | latents (B, 8, 64)                  | level-1 latents (B, 128, 64), linear        |
| generator| coordinates (B, L, 128)             | stereo latents (B, L, 128), linear          |
| critic   | stereo latents (B, L, 128)          | score (B, 1)                                |

The AE networks all take one 128-frame chunk (`AE_CHUNK_FRAMES`) per item. Where the original
processes shorter windows independently (decoder1: 2 x 64 frames, encoder2: 8 x 16 frames,
decoder2: 2 x 4 latents; generator: 2 halves of L), the model reshapes them onto the batch
axis item-major and back, so callers never see the original's batch-stacking trick. L is the
GAN window, `GanConfig.latent_length` (256, or 128 with `small`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import layers, ops

from .config import (
    AE_CHUNK_FRAMES,
    AE_DECODER_WINDOW,
    LATENT_DEPTH,
    N_BINS,
    STEREO_LATENT_WIDTH,
    STFT_FRAMES_PER_LATENT,
    AutoencoderConfig,
    GanConfig,
)
from .layers import AddNoise, Modulation, pixel_shuffle

SQRT_HALF = math.sqrt(0.5)
LEAKY_SLOPE = 0.2
LATENTS_PER_CHUNK = AE_CHUNK_FRAMES // STFT_FRAMES_PER_LATENT
"""8 latents per 128-frame AE chunk."""
DECODER2_WINDOW = 4
"""Latents decoded independently by one decoder2 window (64 STFT frames)."""
STEM_LENGTH = 4
"""Time length of the generator's first feature map."""
OFFICIAL_AUTOENCODER = AutoencoderConfig()
DEFAULT_GAN = GanConfig()


def _conv(
    filters: int,
    kernel: int,
    *,
    strides: int = 1,
    padding: str = "same",
    use_bias: bool = True,
    name: str,
) -> layers.Conv2D:
    return layers.Conv2D(
        filters,
        (1, kernel),
        strides=(1, strides),
        padding=padding,
        use_bias=use_bias,
        kernel_initializer=keras.initializers.HeUniform(),
        name=name,
    )


def _tconv(filters: int, kernel: int, *, name: str) -> layers.Conv2DTranspose:
    return layers.Conv2DTranspose(
        filters,
        (1, kernel),
        strides=(1, 2),
        padding="same",
        kernel_initializer=keras.initializers.HeUniform(),
        name=name,
    )


def _ae_block(
    x,
    filters: int,
    kernel: int,
    *,
    name: str,
    strides: int = 1,
    padding: str = "same",
    upsample: bool = False,
    noise: bool = False,
):
    """conv (or stride-2 transposed conv) -> optional AddNoise -> swish."""
    if upsample:
        x = _tconv(filters, kernel, name=name)(x)
    else:
        x = _conv(filters, kernel, strides=strides, padding=padding, name=name)(x)
    if noise:
        x = AddNoise(name=f"{name}_noise")(x)
    return ops.silu(x)


def build_encoder1(ae: AutoencoderConfig = OFFICIAL_AUTOENCODER) -> keras.Model:
    """Level-1 encoder: (B, 128, 513) normalised log-power frames -> (B, 128, 64) in [-1, 1].

    Frame-wise (1x1 convs only): `ae.enc1_layers` swish layers of width `ae.enc1_width`, then a
    projection to 64 and tanh. Official: 4,790,336 parameters.
    """
    spectrogram = keras.Input((AE_CHUNK_FRAMES, N_BINS), name="spectrogram")
    x = ops.expand_dims(spectrogram, 1)
    for index in range(1, ae.enc1_layers + 1):
        x = _ae_block(x, ae.enc1_width, 1, padding="valid", name=f"enc1_conv{index}")
    x = ops.tanh(_conv(LATENT_DEPTH, 1, padding="valid", name="enc1_out")(x))
    latents = ops.cast(ops.squeeze(x, 1), "float32")
    return keras.Model(spectrogram, latents, name="encoder1")


def build_decoder1(ae: AutoencoderConfig = OFFICIAL_AUTOENCODER) -> keras.Model:
    """Level-1 decoder: (B, 128, 64) latents -> [magnitude (B, 128, 513), phase (B, 128, 513)].

    Each 64-frame window is decoded on its own by a U-Net (three stride-2 levels, every conv
    followed by AddNoise and swish) with a magnitude head and a phase head, both clipped to
    [-1, 1]; phase is in units of pi. Official: 12,673,291 parameters. The original's two dead
    layers (an extra stride-2 conv and transposed conv feeding nothing) are not created.
    """
    w0, w1, w2, w3 = ae.dec1_widths
    windows_per_chunk = AE_CHUNK_FRAMES // AE_DECODER_WINDOW
    latents = keras.Input((AE_CHUNK_FRAMES, LATENT_DEPTH), name="latents1")
    x = ops.reshape(latents, (-1, 1, AE_DECODER_WINDOW, LATENT_DEPTH))

    e0 = _ae_block(x, w0, 3, noise=True, name="dec1_e0")
    e1 = _ae_block(e0, w1, 3, strides=2, noise=True, name="dec1_e1")
    e2 = _ae_block(e1, w2, 3, strides=2, noise=True, name="dec1_e2")
    e3 = _ae_block(e2, w3, 3, strides=2, noise=True, name="dec1_e3")
    u2 = _ae_block(e3, w2, 4, upsample=True, noise=True, name="dec1_u2")
    u1 = _ae_block(u2 + e2, w1, 4, upsample=True, noise=True, name="dec1_u1")
    u0 = _ae_block(u1 + e1, w0, 4, upsample=True, noise=True, name="dec1_u0")
    magnitude = ops.clip(_conv(N_BINS, 1, name="dec1_magnitude")(u0 + e0), -1.0, 1.0)

    p1 = _ae_block(u2, w1, 4, upsample=True, noise=True, name="dec1_phase1")
    p2 = _ae_block(p1 + u1, w0, 4, upsample=True, noise=True, name="dec1_phase2")
    phase = ops.clip(_conv(N_BINS, 1, name="dec1_phase")(p2 + u0), -1.0, 1.0)

    chunk_shape = (-1, windows_per_chunk * AE_DECODER_WINDOW, N_BINS)
    magnitude = ops.cast(ops.reshape(magnitude, chunk_shape), "float32")
    phase = ops.cast(ops.reshape(phase, chunk_shape), "float32")
    return keras.Model(latents, [magnitude, phase], name="decoder1")


def build_encoder2(ae: AutoencoderConfig = OFFICIAL_AUTOENCODER) -> keras.Model:
    """Level-2 encoder: (B, 128, 64) level-1 latents -> (B, 8, 64) latents in [-1, 1].

    Every group of 16 level-1 frames becomes one latent, independently of the other groups
    (convs with 'valid' padding shrink 16 -> 7 -> 3 -> 1). Official: 3,984,960 parameters.
    """
    w0, w1, w2, w3 = ae.enc2_widths
    latents1 = keras.Input((AE_CHUNK_FRAMES, LATENT_DEPTH), name="latents1")
    x = ops.reshape(latents1, (-1, 1, STFT_FRAMES_PER_LATENT, LATENT_DEPTH))
    x = _ae_block(x, w0, 3, name="enc2_conv1")
    x = _ae_block(x, w1, 3, strides=2, padding="valid", name="enc2_conv2")
    x = _ae_block(x, w1, 3, name="enc2_conv3")
    x = _ae_block(x, w2, 3, strides=2, padding="valid", name="enc2_conv4")
    x = _ae_block(x, w2, 3, name="enc2_conv5")
    x = _ae_block(x, w3, 3, padding="valid", name="enc2_conv6")
    x = _ae_block(x, w3, 1, padding="valid", name="enc2_conv7")
    x = ops.tanh(_conv(LATENT_DEPTH, 1, padding="valid", name="enc2_out")(x))
    latents = ops.cast(ops.reshape(x, (-1, LATENTS_PER_CHUNK, LATENT_DEPTH)), "float32")
    return keras.Model(latents1, latents, name="encoder2")


def build_decoder2(ae: AutoencoderConfig = OFFICIAL_AUTOENCODER) -> keras.Model:
    """Level-2 decoder: (B, 8, 64) latents -> (B, 128, 64) level-1 latents (linear output).

    Each half (4 latents) is decoded on its own into 64 level-1 frames, every conv followed by
    AddNoise and swish except the final 1x1 projection. Official: 6,639,303 parameters.
    """
    w0, w1, w2, w3, w4 = ae.dec2_widths
    latents = keras.Input((LATENTS_PER_CHUNK, LATENT_DEPTH), name="latents2")
    x = ops.reshape(latents, (-1, 1, DECODER2_WINDOW, LATENT_DEPTH))
    x = _ae_block(x, w0, 3, noise=True, name="dec2_conv1")
    x = _ae_block(x, w1, 4, upsample=True, noise=True, name="dec2_up1")
    x = _ae_block(x, w1, 3, noise=True, name="dec2_conv2")
    x = _ae_block(x, w2, 4, upsample=True, noise=True, name="dec2_up2")
    x = _ae_block(x, w2, 3, noise=True, name="dec2_conv3")
    x = _ae_block(x, w3, 4, upsample=True, noise=True, name="dec2_up3")
    x = _ae_block(x, w4, 4, upsample=True, noise=True, name="dec2_up4")
    x = _conv(LATENT_DEPTH, 1, name="dec2_out")(x)
    latents1 = ops.cast(ops.reshape(x, (-1, AE_CHUNK_FRAMES, LATENT_DEPTH)), "float32")
    return keras.Model(latents, latents1, name="decoder2")


def _modulate(x, embedding, name: str):
    """Mod(x, e) = x / (std_t(x) + 1e-5) * Conv1x1(e); the conv carries the official `<N>ai` name."""
    scale = _conv(x.shape[-1], 1, name=name)(embedding)
    return Modulation(name=f"{name}_modulation")([x, scale])


def _generator_block(x, filters: int, kernel: int, embedding, *, upsample: bool, name: str):
    """conv `<name>c` (transposed, stride 2 when upsampling) -> AddNoise `<name>r` -> Mod `<name>ai` -> swish."""
    if upsample:
        x = _tconv(filters, kernel, name=f"{name}c")(x)
    else:
        x = _conv(filters, kernel, name=f"{name}c")(x)
    x = AddNoise(name=f"{name}r")(x)
    x = _modulate(x, embedding, f"{name}ai")
    return ops.silu(x)


def _generator_stage(
    x, filters: int, embeddings: dict, names: tuple[str, str, str], *, upsample: bool
):
    """Two modulated blocks scaled by sqrt(1/2) plus a 1x1-conv skip (on the pixel-shuffled input when upsampling)."""
    first, second, skip = names
    kernel = 4 if upsample else 1
    length = x.shape[2] * (2 if upsample else 1)
    embedding = embeddings[length]
    y = _generator_block(x, filters, kernel, embedding, upsample=upsample, name=first) * SQRT_HALF
    y = _generator_block(y, filters, kernel, embedding, upsample=False, name=second) * SQRT_HALF
    shortcut = pixel_shuffle(x) if upsample else x
    return y + _conv(filters, 1, name=skip)(shortcut)


def build_generator(gan: GanConfig = DEFAULT_GAN, name: str = "generator") -> keras.Model:
    """Generator: coordinates (B, L, 2 * coord_depth) -> stereo latents (B, L, 128), linear.

    The two halves of the window are generated independently (the critic sees the join). Per
    half, the coordinates are average-pooled down to 2 frames; a Dense stem makes a 4-frame map
    with 7C channels, then stages of 6C, 5C, 4C, 3C channels (each doubling time, except the
    first one with `small`) and a head of 2C channels lead to the output. Every block is
    modulated by a 1x1 projection of the pooled coordinates of matching length. C =
    `gan.base_channels`. Official: 15,499,530 parameters at C=128 (12,009,738 small).
    """
    channels = gan.base_channels
    half = gan.latent_length // 2
    width = 2 * gan.coord_depth
    coordinates = keras.Input((gan.latent_length, width), name="coordinates")
    x = ops.reshape(coordinates, (-1, 1, half, width))

    embeddings = {half: x}
    pooled = x
    while pooled.shape[2] > 2:
        pooled = layers.AveragePooling2D((1, 2))(pooled)
        embeddings[pooled.shape[2]] = pooled

    g = layers.Dense(
        STEM_LENGTH * 7 * channels, kernel_initializer=keras.initializers.HeUniform(), name="00d"
    )(layers.Flatten()(embeddings[2]))
    g = layers.Reshape((1, STEM_LENGTH, 7 * channels))(g)
    g = AddNoise(name="00n")(g)
    g = ops.silu(_modulate(g, embeddings[STEM_LENGTH], "00ai"))

    if gan.small:
        g = _generator_stage(
            g, 6 * channels, embeddings, ("0_small", "1_small", "res1c_small"), upsample=False
        )
    else:
        g = _generator_stage(g, 6 * channels, embeddings, ("0", "1", "res1c"), upsample=True)
    g = _generator_stage(g, 5 * channels, embeddings, ("2", "3", "res2c"), upsample=True)
    g = _generator_stage(g, 4 * channels, embeddings, ("4", "5", "res3c"), upsample=True)
    g = _generator_stage(g, 3 * channels, embeddings, ("6", "7", "res4c"), upsample=True)
    g = _generator_block(g, 2 * channels, 4, embeddings[half], upsample=True, name="8")
    g = _conv(STEREO_LATENT_WIDTH, 4, name="9c")(g)
    latents = ops.cast(ops.reshape(g, (-1, gan.latent_length, STEREO_LATENT_WIDTH)), "float32")
    return keras.Model(coordinates, latents, name=name)


def _critic_res_block(x, filters: int, *, first_kernel: int, name: str):
    """conv `<name>c0` -> lrelu -> x sqrt(1/2) -> stride-2 conv `<name>c1` -> lrelu -> x sqrt(1/2),
    plus avg-pool shortcut through a bias-free 1x1 conv `<name>c3` when the width changes."""
    in_channels = x.shape[-1]
    y = _conv(in_channels, first_kernel, name=f"{name}c0")(x)
    y = ops.leaky_relu(y, LEAKY_SLOPE) * SQRT_HALF
    y = _conv(filters, 4, strides=2, name=f"{name}c1")(y)
    y = ops.leaky_relu(y, LEAKY_SLOPE) * SQRT_HALF
    shortcut = layers.AveragePooling2D((1, 2), padding="same")(x)
    if in_channels != filters:
        shortcut = _conv(filters, 1, use_bias=False, name=f"{name}c3")(shortcut)
    return y + shortcut


def build_critic(gan: GanConfig = DEFAULT_GAN) -> keras.Model:
    """Critic: stereo latents (B, L, 128) -> unbounded score (B, 1).

    A stride-2 conv to 3C, residual blocks to 4C, 5C, 6C, 7C (and one more 7C block unless
    `small`), each halving time, then a 1x3 conv, flatten (4 frames x 7C) and Dense(1). No
    normalisation of any kind. Official: 20,786,689 parameters at C=128 (16,770,817 small).
    """
    channels = gan.base_channels
    latents = keras.Input((gan.latent_length, STEREO_LATENT_WIDTH), name="latents")
    x = ops.expand_dims(latents, 1)
    x = ops.leaky_relu(_conv(3 * channels, 4, strides=2, name="1c")(x), LEAKY_SLOPE)
    for block, multiple in ((2, 4), (3, 5), (4, 6), (5, 7)):
        x = _critic_res_block(x, multiple * channels, first_kernel=4, name=str(block))
    if not gan.small:
        x = _critic_res_block(x, 7 * channels, first_kernel=1, name="6")
    x = ops.leaky_relu(_conv(7 * channels, 3, name="7c")(x), LEAKY_SLOPE)
    score = layers.Dense(1, kernel_initializer=keras.initializers.HeUniform(), name="7d")(
        layers.Flatten()(x)
    )
    return keras.Model(latents, ops.cast(score, "float32"), name="critic")


@dataclass
class AutoencoderNetworks:
    """The four AE networks of one configuration (frozen during GAN training)."""

    encoder1: keras.Model
    decoder1: keras.Model
    encoder2: keras.Model
    decoder2: keras.Model
    config: AutoencoderConfig

    def as_dict(self) -> dict[str, keras.Model]:
        return {
            "encoder1": self.encoder1,
            "decoder1": self.decoder1,
            "encoder2": self.encoder2,
            "decoder2": self.decoder2,
        }


@dataclass
class GanNetworks:
    """Generator, its EMA copy and the critic of one configuration."""

    generator: keras.Model
    generator_ema: keras.Model
    critic: keras.Model
    config: GanConfig

    def as_dict(self) -> dict[str, keras.Model]:
        return {
            "generator": self.generator,
            "generator_ema": self.generator_ema,
            "critic": self.critic,
        }


def build_autoencoder(ae: AutoencoderConfig = OFFICIAL_AUTOENCODER) -> AutoencoderNetworks:
    """All four AE networks, freshly initialised."""
    return AutoencoderNetworks(
        encoder1=build_encoder1(ae),
        decoder1=build_decoder1(ae),
        encoder2=build_encoder2(ae),
        decoder2=build_decoder2(ae),
        config=ae,
    )


def build_gan(gan: GanConfig = DEFAULT_GAN) -> GanNetworks:
    """Generator, critic and an EMA generator that starts as an exact copy of the generator."""
    generator = build_generator(gan)
    generator_ema = build_generator(gan, name="generator_ema")
    generator_ema.set_weights(generator.get_weights())
    return GanNetworks(
        generator=generator, generator_ema=generator_ema, critic=build_critic(gan), config=gan
    )
