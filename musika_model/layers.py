"""Custom Keras 3 layers and ops of the Musika networks.

Only `AddNoise` owns a weight (the learned noise scale, stored as `noise_weight` like the
official files). `Modulation` and `pixel_shuffle` are weightless and written with `keras.ops`,
so they work on symbolic tensors while a functional model is built and on real tensors alike.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from . import counter_random

MODULATION_EPSILON = 1e-5


class AddNoise(layers.Layer):
    """Adds `noise_weight` x N(0, 1) noise, one noise value per (batch, row, time) shared by all channels.

    The scale starts at 0 (so a fresh layer is the identity) and is learned. As in the original the
    noise is active at inference too, which makes decoding and generation stochastic. Set
    `enabled=False` (or call `set_noise_enabled`) for a deterministic network; a tf.function that
    was already traced keeps the setting it was traced with.
    """

    def __init__(self, enabled: bool = True, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.enabled = enabled
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: tuple) -> None:
        self.noise_weight = self.add_weight(
            shape=(1,), initializer="zeros", trainable=True, name="noise_weight"
        )

    def call(self, inputs):
        if not self.enabled:
            return inputs
        batch, rows, steps = ops.shape(inputs)[0], ops.shape(inputs)[1], ops.shape(inputs)[2]
        # counter_random, not keras.random: the same noise with or without XLA, on any backend
        noise = counter_random.normal((batch, rows, steps, 1), self.seed_generator.next(), inputs.dtype)
        return inputs + ops.cast(self.noise_weight, inputs.dtype) * noise

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "enabled": self.enabled, "seed": self.seed}


class Modulation(layers.Layer):
    """The generator's AdaIN-like modulation: x / (std_t(x) + 1e-5) * scale.

    The standard deviation is taken over the time axis (-2) per sample and channel; there is no
    mean subtraction and no shift. `scale` is the 1x1-conv projection of the coordinate
    embedding, computed by a separate Conv2D layer so that its weights keep the official name.
    """

    def call(self, inputs):
        x, scale = inputs
        deviation = ops.std(x, axis=-2, keepdims=True)
        return x / (deviation + MODULATION_EPSILON) * scale

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def pixel_shuffle(x, factor: int = 2):
    """(B, H, T, C) -> (B, H, T * factor, C / factor): channel c * factor + j moves to time t * factor + j."""
    _, rows, steps, channels = x.shape
    if channels % factor:
        raise ValueError(f"pixel_shuffle needs channels divisible by {factor}, got {channels}")
    x = ops.reshape(x, (-1, rows, steps, channels // factor, factor))
    x = ops.transpose(x, (0, 1, 2, 4, 3))
    return ops.reshape(x, (-1, rows, steps * factor, channels // factor))


def noise_layers(model: keras.Model) -> list[AddNoise]:
    """Every AddNoise layer of `model`, including those of nested models, in layer order."""
    found: list[AddNoise] = []
    for layer in model.layers:
        if isinstance(layer, AddNoise):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(noise_layers(layer))
    return found


def set_noise_enabled(model: keras.Model, enabled: bool) -> int:
    """Switch every noise layer of `model` on or off; returns how many layers were switched."""
    layers_found = noise_layers(model)
    for layer in layers_found:
        layer.enabled = enabled
    return len(layers_found)


def set_noise_seed(model: keras.Model, seed: int) -> None:
    """Reset the random state of every noise layer so the next calls draw a reproducible noise sequence."""
    for index, layer in enumerate(noise_layers(model)):
        state = layer.seed_generator.state
        state.assign(ops.convert_to_tensor([seed, index], dtype=state.dtype))
