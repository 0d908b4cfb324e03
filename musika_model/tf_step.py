"""The GAN training step on TensorFlow: gradient tapes and a `tf.function`, optionally compiled
with XLA. The losses, switch, draws and EMA are `gan_step`'s, shared with `jax_step`."""

from __future__ import annotations

import keras
import tensorflow as tf

from .gan_step import (
    GanTraining,
    ema_update,
    per_sample_squared_norm_mean,
    random_channel_swap,
    step_losses,
    step_seeds,
    training_coordinates,
)
from .networks import GanNetworks


def r1_penalty(critic: keras.Model, real: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(R1 penalty, D(real)). Called under an outer tape, the penalty stays differentiable."""
    with tf.GradientTape() as tape:
        tape.watch(real)
        scores = critic(real, training=True)
        total = tf.reduce_sum(scores)
    return per_sample_squared_norm_mean(tape.gradient(total, real)), scores


class TensorFlowGanTraining(GanTraining):
    """The step as one `tf.function` that updates the Keras variables in place."""

    def __init__(
        self,
        networks: GanNetworks,
        generator_optimizer: keras.optimizers.Optimizer,
        critic_optimizer: keras.optimizers.Optimizer,
        *,
        seed: int,
        first_draw: int,
        switch: float,
        r1_max_weight: float,
        ema_decay: float,
        jit_compile: bool,
    ) -> None:
        super().__init__(
            networks,
            generator_optimizer,
            critic_optimizer,
            tf.Variable(switch, dtype=tf.float32, trainable=False, name="switch"),
            tf.Variable(first_draw, dtype=tf.int64, trainable=False, name="draw_counter"),
        )
        self.step = self._make_step(seed, r1_max_weight, ema_decay, jit_compile)
        weights = [weight for model in networks.as_dict().values() for weight in model.weights]
        self._weights_finite = tf.function(
            lambda: tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(w)) for w in weights]))
        )

    def weights_finite(self) -> bool:
        return bool(self._weights_finite())

    def _make_step(self, seed: int, r1_max_weight: float, ema_decay: float, jit_compile: bool):
        generator, critic = self.networks.generator, self.networks.critic
        generator_ema, gan = self.networks.generator_ema, self.networks.config
        generator_optimizer, critic_optimizer = self.generator_optimizer, self.critic_optimizer
        switch, draw_counter = self.switch, self.draw_counter

        @tf.function(jit_compile=jit_compile)
        def step(real_latents: tf.Tensor) -> dict[str, tf.Tensor]:
            seeds = step_seeds(seed, draw_counter.assign_add(1) - 1)
            real = random_channel_swap(tf.convert_to_tensor(real_latents, tf.float32), seeds["swap"])
            coordinates = training_coordinates(tf.shape(real)[0], gan, seeds)
            with tf.GradientTape() as generator_tape, tf.GradientTape() as critic_tape:
                penalty, real_scores = r1_penalty(critic, real)
                fake_scores = critic(generator(coordinates, training=True), training=True)
                critic_loss, generator_loss, reported = step_losses(
                    real_scores, fake_scores, penalty, switch, r1_max_weight
                )
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
            switch.assign(reported["switch"])
            return {**reported, "skipped_updates": tf.cast(2 - applied, tf.float32)}

        return step
