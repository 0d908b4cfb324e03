"""The Musika GAN training step, as pieces a trainer loop calls (docs/musika.md §3-4).

- hinge losses; R1 = batch mean of the per-sample sum of squared gradients of sum D(real)
  with respect to the real latents (no 1/2);
- the adaptive R1 weight -switch * 10, the switch moving by 1e-4 per step towards more
  regularisation while the critic is too sure (certainty > 0.9) and clamped to [-1, 0];
- one step updates critic and generator from the same forward pass (both gradients are taken
  before either optimizer applies), then the EMA generator (decay 0.999);
- real batches get their L/R halves swapped with p = 0.5 (one draw per batch);
- training coordinates: three anchors plus a style vector per sample, interpolated, centred
  and cropped at one of the half-window offsets (64, 192, 320 for a 256-frame window).

Random draws come from `counter_random`, seeded by (run seed, draw counter): the same seed and
counter give the same swap, coordinates and crop with or without XLA (TensorFlow's own random
ops draw other numbers once compiled), and a resumed run draws what an uninterrupted one would.

Shapes follow `musika_model.networks`: latents (B, L, 128), coordinates (B, L, 2 * coord_depth).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf

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


def critic_hinge_losses(
    real_scores: tf.Tensor, fake_scores: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """(mean relu(1 - D(real)), mean relu(1 + D(fake))); the critic loss is their average."""
    return tf.reduce_mean(tf.nn.relu(1.0 - real_scores)), tf.reduce_mean(
        tf.nn.relu(1.0 + fake_scores)
    )


def generator_hinge_loss(fake_scores: tf.Tensor) -> tf.Tensor:
    return -tf.reduce_mean(fake_scores)


def r1_penalty(critic: keras.Model, real: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(R1 penalty, D(real)). Called under an outer tape, the penalty stays differentiable."""
    with tf.GradientTape() as tape:
        tape.watch(real)
        scores = critic(real, training=True)
        total = tf.reduce_sum(scores)
    gradients = tape.gradient(total, real)
    per_sample = tf.reduce_sum(
        tf.reshape(tf.square(gradients), (tf.shape(gradients)[0], -1)), axis=1
    )
    return tf.reduce_mean(per_sample), scores


def updated_switch(
    switch: tf.Tensor,
    real_scores: tf.Tensor,
    fake_scores: tf.Tensor,
    rate: float = SWITCH_RATE,
    stable_point: float = SWITCH_STABLE_POINT,
) -> tf.Tensor:
    """The next switch value: certainty = clip(mean D(real) - mean D(fake), 0, 2) / 2."""
    margin = tf.reduce_mean(real_scores) - tf.reduce_mean(fake_scores)
    certainty = tf.clip_by_value(margin, 0.0, 2.0) / 2.0
    moved = tf.where(certainty > stable_point, switch - rate, switch + rate)
    return tf.clip_by_value(moved, -1.0, 0.0)


def r1_weight(switch: tf.Tensor, max_weight: float = R1_MAX_WEIGHT) -> tf.Tensor:
    return -switch * max_weight


# --- augmentation, EMA, coordinates --------------------------------------------------------------


def swap_channels(latents: tf.Tensor) -> tf.Tensor:
    """Exchange the L (first half of the last axis) and R halves."""
    left, right = tf.split(latents, 2, axis=-1)
    return tf.concat([right, left], axis=-1)


def random_channel_swap(latents: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Swap L and R of the whole batch with probability 1/2 (one draw per batch, as the original)."""
    swap = counter_random.uniform((), seed) < 0.5
    return tf.where(swap, swap_channels(latents), latents)


def ema_update(ema_variables, variables, decay: float = EMA_DECAY) -> None:
    """ema <- decay * ema + (1 - decay) * value, tensor by tensor."""
    for ema_variable, variable in zip(ema_variables, variables, strict=True):
        ema_variable.assign(decay * ema_variable + (1.0 - decay) * variable)


def crop_offsets(gan: GanConfig) -> list[int]:
    """Start frames a training window may be cropped at: a quarter window, then every half window."""
    half = gan.latent_length // 2
    return [gan.latent_length // 4 + index * half for index in range(gan.coord_length // half)]


DRAWS = ("swap", "anchors", "style", "crop")
"""The random draws of one training step, each with its own seed."""


def step_seeds(seed: int, counter: int | tf.Tensor) -> dict[str, tf.Tensor]:
    """Seed pairs (int64) of every draw of the step numbered `counter`."""
    counter = tf.cast(counter, tf.int64) * len(DRAWS)
    return {
        name: tf.stack([tf.constant(seed, tf.int64), counter + index])
        for index, name in enumerate(DRAWS)
    }


def coordinate_path(
    batch_size: int | tf.Tensor, gan: GanConfig, seeds: dict[str, tf.Tensor]
) -> tf.Tensor:
    """(B, 2 * coord_length, 2 * coord_depth): anchors a_L -> a_C -> a_R interpolated, then centred.

    Each frame is [coordinate, style]; the style vector is drawn once per sample. a_L -> a_C
    takes coord_length steps, a_C -> a_R coord_length + 1 points; each point is then averaged
    with the next one (dropping the last), so the anchors sit between two frames.
    """
    depth = gan.coord_depth
    style = counter_random.normal((batch_size, 1, depth), seeds["style"])
    points = counter_random.normal((batch_size, 3, depth), seeds["anchors"])
    anchors = tf.concat([points, tf.tile(style, (1, 3, 1))], axis=-1)
    left, centre, right = anchors[:, 0], anchors[:, 1], anchors[:, 2]
    first = tf.linspace(left, centre, gan.coord_length + 1, axis=1)[:, :-1]
    second = tf.linspace(centre, right, gan.coord_length + 1, axis=1)
    path = tf.concat([first, second], axis=1)
    return (path[:, :-1] + path[:, 1:]) / 2.0


def crop_coordinates(path: tf.Tensor, gan: GanConfig, seed: tf.Tensor) -> tf.Tensor:
    """One training window (B, L, 2 * coord_depth) of `path`, at an offset drawn uniformly per batch."""
    offsets = tf.constant(crop_offsets(gan), dtype=tf.int32)
    choice = counter_random.integers((), seed, len(crop_offsets(gan)))
    # Gathers, not slices: XLA needs a slice's bounds at compile time, so `path[:, start:start +
    # L]` has no static size and even `offsets[choice]` would compile anew for every drawn value.
    start = tf.gather(offsets, choice)
    window = tf.gather(path, start + tf.range(gan.latent_length), axis=1)
    return tf.ensure_shape(window, (None, gan.latent_length, 2 * gan.coord_depth))


def training_coordinates(
    batch_size: int | tf.Tensor, gan: GanConfig, seeds: dict[str, tf.Tensor]
) -> tf.Tensor:
    """Generator input for one training batch: (B, L, 2 * coord_depth)."""
    return crop_coordinates(coordinate_path(batch_size, gan, seeds), gan, seeds["crop"])


# --- optimizers and the step ---------------------------------------------------------------------


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


StepFunction = Callable[[tf.Tensor], dict[str, tf.Tensor]]


def make_train_step(
    networks: GanNetworks,
    generator_optimizer: keras.optimizers.Optimizer,
    critic_optimizer: keras.optimizers.Optimizer,
    switch: tf.Variable,
    draw_counter: tf.Variable,
    seed: int,
    *,
    r1_max_weight: float = R1_MAX_WEIGHT,
    ema_decay: float = EMA_DECAY,
    jit_compile: bool = False,
) -> StepFunction:
    """A `tf.function` `step(real_latents) -> losses` doing one critic and one generator update.

    `real_latents` is (B, L, 128). Returned scalars: critic_real, critic_fake, generator,
    r1_penalty, r1_weight (the weight used this step) and switch (its new value), plus
    skipped_updates: how many of the two optimizers skipped this step because the loss scaler
    found non-finite gradients (always 0 without loss scaling). Each call draws with the seeds
    of (`seed`, `draw_counter`) and advances the counter. The optimizers are built here for the
    networks' weights, so their state can be imported or exported
    (`official.apply_optimizer_state`) before the first step.
    """
    generator, critic, generator_ema = networks.generator, networks.critic, networks.generator_ema
    gan = networks.config
    generator_optimizer.build(generator.trainable_weights)
    critic_optimizer.build(critic.trainable_weights)

    @tf.function(jit_compile=jit_compile)
    def step(real_latents: tf.Tensor) -> dict[str, tf.Tensor]:
        seeds = step_seeds(seed, draw_counter.assign_add(1) - 1)
        real = random_channel_swap(tf.convert_to_tensor(real_latents, tf.float32), seeds["swap"])
        coordinates = training_coordinates(tf.shape(real)[0], gan, seeds)
        with tf.GradientTape() as generator_tape, tf.GradientTape() as critic_tape:
            penalty, real_scores = r1_penalty(critic, real)
            fake_scores = critic(generator(coordinates, training=True), training=True)
            new_switch = updated_switch(switch, real_scores, fake_scores)
            weight = r1_weight(new_switch, r1_max_weight)
            loss_real, loss_fake = critic_hinge_losses(real_scores, fake_scores)
            critic_loss = (loss_real + loss_fake) / 2.0 + weight * penalty
            generator_loss = generator_hinge_loss(fake_scores)
            scaled_critic_loss = critic_optimizer.scale_loss(critic_loss)
            scaled_generator_loss = generator_optimizer.scale_loss(generator_loss)
        critic_gradients = critic_tape.gradient(scaled_critic_loss, critic.trainable_weights)
        generator_gradients = generator_tape.gradient(
            scaled_generator_loss, generator.trainable_weights
        )
        applied_before = critic_optimizer.iterations + generator_optimizer.iterations
        critic_optimizer.apply_gradients(zip(critic_gradients, critic.trainable_weights))
        generator_optimizer.apply_gradients(zip(generator_gradients, generator.trainable_weights))
        applied = critic_optimizer.iterations + generator_optimizer.iterations - applied_before
        ema_update(generator_ema.trainable_weights, generator.trainable_weights, ema_decay)
        switch.assign(new_switch)
        return {
            "critic_real": loss_real,
            "critic_fake": loss_fake,
            "generator": generator_loss,
            "r1_penalty": penalty,
            "r1_weight": weight,
            "switch": new_switch,
            "skipped_updates": tf.cast(2 - applied, tf.float32),
        }

    return step


@dataclass
class GanTraining:
    """Everything one GAN training run mutates, plus its compiled step."""

    networks: GanNetworks
    generator_optimizer: keras.optimizers.Optimizer
    critic_optimizer: keras.optimizers.Optimizer
    switch: tf.Variable
    draw_counter: tf.Variable
    """Steps drawn so far: the draws of the next step are seeded by (seed, counter)."""
    step: StepFunction


def create_gan_training(
    networks: GanNetworks,
    *,
    learning_rate: float = LEARNING_RATE,
    policy: str = "float32",
    switch: float = SWITCH_START,
    seed: int = 0,
    first_draw: int = 0,
    r1_max_weight: float = R1_MAX_WEIGHT,
    ema_decay: float = EMA_DECAY,
    jit_compile: bool = False,
) -> GanTraining:
    """Optimizers, switch variable, draw counter and step for `networks`.

    Under a mixed `policy`, build the networks under that Keras dtype policy first. `seed` and
    `first_draw` fix the swap and coordinate draws (the noise layers have their own seeds).
    """
    generator_optimizer, critic_optimizer = make_optimizers(learning_rate, policy)
    switch_variable = tf.Variable(switch, dtype=tf.float32, trainable=False, name="switch")
    draw_counter = tf.Variable(first_draw, dtype=tf.int64, trainable=False, name="draw_counter")
    step = make_train_step(
        networks,
        generator_optimizer,
        critic_optimizer,
        switch_variable,
        draw_counter,
        seed,
        r1_max_weight=r1_max_weight,
        ema_decay=ema_decay,
        jit_compile=jit_compile,
    )
    return GanTraining(
        networks, generator_optimizer, critic_optimizer, switch_variable, draw_counter, step
    )
