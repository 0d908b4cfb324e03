"""Generation: the generator's latent coordinates, then GEN -> DEC2 -> DEC -> inverse STFT.

Coordinates follow the original `get_noise_interp_multi` (docs/musika.md §3): per sample,
one style vector and fac + 2 anchor vectors are drawn from a standard normal truncated to
+-truncation (a bound, not a standard deviation). Consecutive anchors are linearly
interpolated over `coord_length` steps, each point is averaged with the next ("centering"),
and fac consecutive, non-overlapping windows of `latent_length` frames are cut starting at
`latent_length // 4`. Every frame of the generator's input is [coordinate (64), style (64)].

Determinism: the noise layers stay active at inference, as in the original, but every random
draw is seeded from `seed`: the coordinates come from `numpy.random.default_rng(seed)`, and
the AddNoise states of the generator and of both decoders are reset from seeds derived from
it (`layers.set_noise_seed`) before each call. The same seed therefore gives identical audio
and another seed different audio.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import ndtr, ndtri

from musika_model.audio import write_wav
from musika_model.backends import active_backend
from musika_model.config import SAMPLE_RATE, GanConfig
from musika_model.frontend import latents_for_samples

if TYPE_CHECKING:
    import keras

    from musika_model.codec import Autoencoder

__all__ = [
    "GenerationError",
    "gan_config_of",
    "generate",
    "generate_latents",
    "latent_coordinates",
    "samples_for_seconds",
    "truncated_normal",
    "windows_for_seconds",
    "write_wav",
]


class GenerationError(ValueError):
    """Invalid generation parameters."""


def truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], bound: float) -> np.ndarray:
    """Standard normal samples restricted to [-bound, bound] (inverse-CDF sampling)."""
    if not bound > 0:
        raise GenerationError(f"truncation must be positive, got {bound}")
    low, high = ndtr(-bound), ndtr(bound)
    uniform = rng.uniform(low, high, size=shape)
    return np.clip(ndtri(uniform), -bound, bound)


def samples_for_seconds(seconds: float) -> int:
    """Length in samples at 44.1 kHz of `seconds` of audio (at least one sample)."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise GenerationError(f"seconds must be a positive number, got {seconds}")
    return max(1, round(seconds * SAMPLE_RATE))


def windows_for_seconds(seconds: float, config: GanConfig) -> int:
    """Number of generator windows needed for `seconds` of audio (at least one)."""
    latents = latents_for_samples(samples_for_seconds(seconds))
    return math.ceil(latents / config.latent_length)


def _interpolate(anchors: np.ndarray, steps: int) -> np.ndarray:
    """Piecewise-linear path through `anchors` (A, D), `steps` points per segment, centred.

    Gives (A - 1) * steps points: the path has (A - 1) * steps + 1 points including the last
    anchor, and each point is averaged with the next.
    """
    depth = anchors.shape[1]
    weights = np.arange(steps, dtype=np.float64) / steps
    starts, ends = anchors[:-1, None, :], anchors[1:, None, :]
    path = starts + (ends - starts) * weights[None, :, None]
    path = np.concatenate([path.reshape(-1, depth), anchors[-1:]], axis=0)
    return 0.5 * (path[:-1] + path[1:])


def latent_coordinates(
    config: GanConfig,
    windows: int,
    num_samples: int,
    truncation: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Generator inputs (num_samples, windows, latent_length, coord_depth + 64), float32.

    The windows of one sample are consecutive stretches of one coordinate path and share the
    sample's style vector, so decoding them back to back gives one continuous piece.
    """
    if windows < 1 or num_samples < 1:
        raise GenerationError(
            f"need at least one window and one sample, got windows={windows}, "
            f"num_samples={num_samples}"
        )
    length, offset = config.latent_length, config.latent_length // 4
    style_depth = 64
    result = np.empty(
        (num_samples, windows, length, config.coord_depth + style_depth), dtype=np.float32
    )
    for sample in range(num_samples):
        style = truncated_normal(rng, (style_depth,), truncation)
        anchors = truncated_normal(rng, (windows + 2, config.coord_depth), truncation)
        path = _interpolate(anchors, config.coord_length)
        crop = path[offset : offset + windows * length].reshape(windows, length, -1)
        result[sample, :, :, : config.coord_depth] = crop
        result[sample, :, :, config.coord_depth :] = style
    return result


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled(generator: keras.Model, jit_compile: bool) -> Callable[[np.ndarray], np.ndarray]:
    """The generator as a function of coordinates returning numpy, one per generator and XLA
    choice, so repeated calls reuse the trace. On JAX it is always compiled (`jax.jit` of a
    stateless call, the noise layers' seeds carried back into the model after each call)."""
    functions = _COMPILED.setdefault(generator, {})
    if jit_compile not in functions:
        if active_backend() == "jax":
            functions[jit_compile] = _jax_function(generator)
        else:
            import tensorflow as tf

            graph = tf.function(
                lambda coordinates: generator(coordinates, training=False), jit_compile=jit_compile
            )
            functions[jit_compile] = lambda coordinates: graph(coordinates).numpy()
    return functions[jit_compile]


def _jax_function(generator: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    import jax

    @jax.jit
    def call(trainable: list, non_trainable: list, coordinates: jax.Array):
        return generator.stateless_call(trainable, non_trainable, coordinates, training=False)

    def run(coordinates: np.ndarray) -> np.ndarray:
        outputs, non_trainable = call(
            [v.value for v in generator.trainable_variables],
            [v.value for v in generator.non_trainable_variables],
            coordinates,
        )
        for variable, value in zip(generator.non_trainable_variables, non_trainable, strict=True):
            variable.assign(value)
        return np.asarray(outputs)

    return run


def gan_config_of(generator: keras.Model) -> GanConfig:
    """The window length and coordinate depth a generator expects, from its input shape."""
    _, length, width = generator.input_shape
    if length not in (128, 256) or width % 2:
        raise GenerationError(
            f"generator input {generator.input_shape} is not (B, 256 or 128, 2 * coord_depth)"
        )
    return GanConfig(small=length == 128, coord_depth=width // 2)


def generate_latents(
    generator: keras.Model,
    seconds: float,
    num_samples: int = 1,
    truncation: float = 2.0,
    seed: int = 0,
    batch_windows: int = 8,
    jit_compile: bool = False,
) -> np.ndarray:
    """Latents (num_samples, T, 128) for `seconds` of audio, T = latents the audio needs.

    `jit_compile` runs the generator through XLA: the same numbers to rounding, but on a CPU
    no faster and seconds longer to compile (`python -m benchmarks.run model`), hence off.
    """
    from musika_model.layers import set_noise_seed

    gan = gan_config_of(generator)
    rng = np.random.default_rng(seed)
    windows = windows_for_seconds(seconds, gan)
    coordinates = latent_coordinates(gan, windows, num_samples, truncation, rng)
    flat = coordinates.reshape(num_samples * windows, gan.latent_length, -1)
    set_noise_seed(generator, int(rng.integers(0, 2**31)))
    function = _compiled(generator, jit_compile)
    outputs = [function(flat[start : start + batch_windows]) for start in range(0, len(flat), batch_windows)]
    latents = np.concatenate(outputs).reshape(num_samples, windows * gan.latent_length, -1)
    return latents[:, : latents_for_samples(samples_for_seconds(seconds))]


def generate(
    generator: keras.Model,
    autoencoder: Autoencoder,
    seconds: float,
    num_samples: int = 1,
    truncation: float = 2.0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    jit_compile: bool = False,
) -> list[np.ndarray]:
    """`num_samples` stereo pieces, each (round(seconds * 44100), 2) float32 in [-1, 1].

    The same seed gives identical audio (coordinates and all noise are seeded); `progress`
    is called as (samples done, num_samples). `jit_compile`: generator and decoders through
    XLA (see `generate_latents`).
    """
    latents = generate_latents(
        generator, seconds, num_samples, truncation, seed, jit_compile=jit_compile
    )
    length = samples_for_seconds(seconds)
    noise_seeds = np.random.default_rng([seed, 1]).integers(0, 2**31, num_samples)
    pieces = []
    for index in range(num_samples):
        audio = autoencoder.decode(
            latents[index], num_samples=length, seed=int(noise_seeds[index]), jit_compile=jit_compile
        )
        pieces.append(audio)
        if progress is not None:
            progress(index + 1, num_samples)
    return pieces
