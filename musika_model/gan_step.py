"""The Musika GAN training step: what both backends share, written once with `keras.ops`
(docs/musika.md §3-4): the losses, draws and EMA, and the `GanTraining` interface of a backend's step
(`tf_step` on TensorFlow, `jax_step` on JAX; `gan_training.create_gan_training` picks one).

- hinge losses; R1 = batch mean of the per-sample sum of squared gradients of sum D(real)
  with respect to the real latents (no 1/2); the gradient itself is the backend's
  (`tf_step.r1_penalty`, `jax_step`);
- the adaptive R1 weight -switch * 10, the switch moving by 1e-4 per step towards more
  regularisation while the critic is too sure (certainty > 0.9) and clamped to [-1, 0];
- one step updates critic and generator from the same forward pass (both gradients are taken
  before either optimizer applies), then the EMA generator (decay 0.999);
- real batches get their L/R halves swapped with p = 0.5 (one draw per batch);
- training coordinates: three anchors plus a style vector per sample, interpolated, centred
  and cropped at one of the half-window offsets (64, 192, 320 for a 256-frame window).

Random draws come from `counter_random`, seeded by (run seed, draw counter): the same seed and
counter give the same swap, coordinates and crop with or without XLA and on either backend, and
a resumed run draws what an uninterrupted one would.

Shapes follow `musika_model.networks`: latents (B, L, 128), coordinates (B, L, 2 * coord_depth).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from . import counter_random
from .config import GanConfig
from .networks import GanNetworks

R1_MAX_WEIGHT = 10.0
SWITCH_START = -1.0
SWITCH_RATE = 1e-4
SWITCH_STABLE_POINT = 0.9
EMA_DECAY = 0.999
LEARNING_RATE = 1e-4


# --- losses and regularisation -----------------------------------------------------------------


def critic_hinge_losses(real_scores: Any, fake_scores: Any) -> tuple[Any, Any]:
    """(mean relu(1 - D(real)), mean relu(1 + D(fake))); the critic loss is their average."""
    return ops.mean(ops.relu(1.0 - real_scores)), ops.mean(ops.relu(1.0 + fake_scores))


def generator_hinge_loss(fake_scores: Any) -> Any:
    return -ops.mean(fake_scores)


def per_sample_squared_norm_mean(gradients: Any) -> Any:
    """R1 from the gradient of sum D(real) w.r.t. the real batch: mean over samples of the sum of
    squares."""
    squares = ops.reshape(ops.square(gradients), (ops.shape(gradients)[0], -1))
    return ops.mean(ops.sum(squares, axis=1))


def updated_switch(
    switch: Any,
    real_scores: Any,
    fake_scores: Any,
    rate: float = SWITCH_RATE,
    stable_point: float = SWITCH_STABLE_POINT,
) -> Any:
    """The next switch value: certainty = clip(mean D(real) - mean D(fake), 0, 2) / 2."""
    margin = ops.cast(ops.mean(real_scores) - ops.mean(fake_scores), "float32")
    certainty = ops.clip(margin, 0.0, 2.0) / 2.0
    moved = ops.where(certainty > stable_point, switch - rate, switch + rate)
    return ops.clip(moved, -1.0, 0.0)


def r1_weight(switch: Any, max_weight: float = R1_MAX_WEIGHT) -> Any:
    return -switch * max_weight


def step_losses(
    real_scores: Any, fake_scores: Any, penalty: Any, switch: Any, r1_max_weight: float
) -> tuple[Any, Any, dict[str, Any]]:
    """(critic loss, generator loss, the step's reported scalars but skipped_updates) from the
    critic's scores of one forward pass."""
    new_switch = updated_switch(switch, real_scores, fake_scores)
    weight = r1_weight(new_switch, r1_max_weight)
    loss_real, loss_fake = critic_hinge_losses(real_scores, fake_scores)
    critic_loss = (loss_real + loss_fake) / 2.0 + weight * penalty
    generator_loss = generator_hinge_loss(fake_scores)
    reported = {
        "critic_real": loss_real,
        "critic_fake": loss_fake,
        "generator": generator_loss,
        "r1_penalty": penalty,
        "r1_weight": weight,
        "switch": new_switch,
    }
    return critic_loss, generator_loss, {k: ops.cast(v, "float32") for k, v in reported.items()}


# --- augmentation, EMA, coordinates --------------------------------------------------------------


def swap_channels(latents: Any) -> Any:
    """Exchange the L (first half of the last axis) and R halves."""
    left, right = ops.split(latents, 2, axis=-1)
    return ops.concatenate([right, left], axis=-1)


def random_channel_swap(latents: Any, seed: Any) -> Any:
    """Swap L and R of the whole batch with probability 1/2 (one draw per batch, as the original)."""
    swap = counter_random.uniform((), seed) < 0.5
    return ops.where(swap, swap_channels(latents), latents)


def ema_average(ema: Any, value: Any, decay: float = EMA_DECAY) -> Any:
    """decay * ema + (1 - decay) * value."""
    return decay * ema + (1.0 - decay) * value


def ema_update(ema_variables: Sequence, variables: Sequence, decay: float = EMA_DECAY) -> None:
    """`ema_average` into the EMA variables, tensor by tensor."""
    for ema_variable, variable in zip(ema_variables, variables, strict=True):
        ema_variable.assign(ema_average(ema_variable, variable, decay))


def crop_offsets(gan: GanConfig) -> list[int]:
    """Start frames a training window may be cropped at: a quarter window, then every half window."""
    half = gan.latent_length // 2
    return [gan.latent_length // 4 + index * half for index in range(gan.coord_length // half)]


DRAWS = ("swap", "anchors", "style", "crop")
"""The random draws of one training step, each with its own seed."""


def step_seeds(seed: int, counter: Any) -> dict[str, Any]:
    """Seed pairs (uint32) of every draw of the step numbered `counter`.

    32-bit arithmetic on both backends (JAX has no int64 by default): the words are what
    `counter_random` would take modulo 2^32 anyway.
    """
    base = ops.cast(counter, "uint32") * len(DRAWS)
    first = ops.convert_to_tensor(seed % (1 << 32), "uint32")
    return {
        name: ops.stack([first, base + ops.convert_to_tensor(index, "uint32")])
        for index, name in enumerate(DRAWS)
    }


def _interpolate(start: Any, stop: Any, points: int, endpoint: bool) -> Any:
    """(B, points, D): `points` evenly spaced points from start (B, D) towards stop (B, D)."""
    steps = points - 1 if endpoint else points
    weights = ops.reshape(ops.arange(points, dtype="float32") / float(steps), (1, points, 1))
    return start[:, None, :] + (stop - start)[:, None, :] * weights


def coordinate_path(batch_size: Any, gan: GanConfig, seeds: dict[str, Any]) -> Any:
    """(B, 2 * coord_length, 2 * coord_depth): anchors a_L -> a_C -> a_R interpolated, then centred.

    Each frame is [coordinate, style]; the style vector is drawn once per sample. a_L -> a_C
    takes coord_length steps, a_C -> a_R coord_length + 1 points; each point is then averaged
    with the next one (dropping the last), so the anchors sit between two frames.
    """
    depth = gan.coord_depth
    style = counter_random.normal((batch_size, 1, depth), seeds["style"])
    points = counter_random.normal((batch_size, 3, depth), seeds["anchors"])
    anchors = ops.concatenate([points, ops.tile(style, (1, 3, 1))], axis=-1)
    left, centre, right = anchors[:, 0], anchors[:, 1], anchors[:, 2]
    first = _interpolate(left, centre, gan.coord_length, endpoint=False)
    second = _interpolate(centre, right, gan.coord_length + 1, endpoint=True)
    path = ops.concatenate([first, second], axis=1)
    return (path[:, :-1] + path[:, 1:]) / 2.0


def crop_coordinates(path: Any, gan: GanConfig, seed: Any) -> Any:
    """One training window (B, L, 2 * coord_depth) of `path`, at an offset drawn uniformly per batch."""
    offsets = ops.convert_to_tensor(crop_offsets(gan), "int32")
    choice = counter_random.integers((), seed, len(crop_offsets(gan)))
    # Gathers, not slices: XLA needs a slice's bounds at compile time, so `path[:, start:start +
    # L]` has no static size and even `offsets[choice]` would compile anew for every drawn value.
    start = ops.take(offsets, choice)
    return ops.take(path, start + ops.arange(gan.latent_length, dtype="int32"), axis=1)


def training_coordinates(batch_size: Any, gan: GanConfig, seeds: dict[str, Any]) -> Any:
    """Generator input for one training batch: (B, L, 2 * coord_depth)."""
    return crop_coordinates(coordinate_path(batch_size, gan, seeds), gan, seeds["crop"])


# --- optimizers and the training objects ---------------------------------------------------------


PRECISION_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def make_optimizers(
    learning_rate: float = LEARNING_RATE, policy: str = "float32"
) -> tuple[keras.optimizers.Optimizer, keras.optimizers.Optimizer]:
    """(generator optimizer, critic optimizer): Adam with the original's beta_1.

    beta_1 is 0.9 in float32 and 0.5 under mixed precision (a quirk of the original `load()`),
    beta_2 and epsilon are Keras defaults. `mixed_float16` adds a dynamic LossScaleOptimizer
    (float16 gradients under- and overflow); bfloat16 has float32's exponent range and needs none.
    """
    if policy not in PRECISION_POLICIES:
        raise ValueError(f"unknown precision policy {policy!r}; choose from {', '.join(PRECISION_POLICIES)}")
    mixed = policy != "float32"

    def one() -> keras.optimizers.Optimizer:
        adam = keras.optimizers.Adam(learning_rate, beta_1=0.5 if mixed else 0.9)
        return keras.optimizers.LossScaleOptimizer(adam) if policy == "mixed_float16" else adam

    return one(), one()


class GanTraining:
    """Everything one GAN training run mutates, and its step.

    `step(real_latents)` runs one critic and one generator update on a (B, L, 128) batch and
    returns the scalars of `step_losses` (critic_real, critic_fake, generator, r1_penalty, r1_weight,
    switch) plus skipped_updates: how many of the two optimizers
    skipped the step because the loss scaler found non-finite gradients (0 without loss scaling).

    The Keras objects (networks, optimizers, `switch`, `draw_counter`) hold the run's state. A
    backend whose step works on copies of it (JAX) brings them up to date in `sync()`, and takes
    their values again after `reload()`; read them only after `sync()`, and call `reload()` after
    assigning any of them. Where the step updates them in place (TensorFlow) both do nothing.
    """

    def __init__(
        self,
        networks: GanNetworks,
        generator_optimizer: keras.optimizers.Optimizer,
        critic_optimizer: keras.optimizers.Optimizer,
        switch: Any,
        draw_counter: Any,
    ) -> None:
        self.networks = networks
        self.generator_optimizer = generator_optimizer
        self.critic_optimizer = critic_optimizer
        self.switch = switch
        self.draw_counter = draw_counter
        """Steps drawn so far: the draws of the next step are seeded by (seed, counter)."""
        generator_optimizer.build(networks.generator.trainable_weights)
        critic_optimizer.build(networks.critic.trainable_weights)

    def step(self, real_latents: Any) -> dict[str, Any]:
        raise NotImplementedError

    def weights_finite(self) -> bool:
        """Whether every weight of the three networks is finite (on the device, no copies)."""
        raise NotImplementedError

    def sync(self) -> None:
        """Write the step's state into the Keras variables."""

    def reload(self) -> None:
        """Take the Keras variables' values as the step's state."""
