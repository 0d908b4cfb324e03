"""The GAN training step on JAX: Keras 3's stateless style (`stateless_call`,
`optimizer.stateless_apply`) under one `jax.jit`, optionally data parallel.

The step is a pure function of the run's state (every network's variables, both optimizers',
the switch and the draw counter) and a batch; it returns the new state and the step's scalars.
The state lives as JAX arrays between steps and is written into the Keras variables only at the
trainer's `sync()` points (samples, checkpoints, snapshots), as Keras' own JAX trainer does:
assigning several hundred variables after every step would cost about as much as a small step.

Data parallel: with several devices, a `keras.distribution.DataParallel` over them gives the
layouts: the state replicated on every device, each batch split along its first axis. XLA then
partitions the step (GSPMD): each device computes its share of the batch and the means over the
batch (losses, R1) become cross-device reductions, so the result is the one-device step's up to
float rounding. Multi-host runs (`jax.distributed`) feed each process's share of the batch
through `jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np

from .gan_step import (
    GanTraining,
    ema_average,
    per_sample_squared_norm_mean,
    random_channel_swap,
    step_losses,
    step_seeds,
    training_coordinates,
)
from .networks import GanNetworks

State = dict[str, Any]


def _values(variables: Sequence[keras.Variable]) -> list:
    return [variable.value for variable in variables]


class JaxGanTraining(GanTraining):
    """The step as one jitted pure function over the run's state."""

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
        devices: Sequence | None = None,
    ) -> None:
        super().__init__(
            networks,
            generator_optimizer,
            critic_optimizer,
            keras.Variable(switch, dtype="float32", trainable=False, name="switch"),
            keras.Variable(first_draw, dtype="int32", trainable=False, name="draw_counter"),
        )
        self.devices = list(devices) if devices else jax.devices()[:1]
        self._distribution = (
            keras.distribution.DataParallel(devices=self.devices) if len(self.devices) > 1 else None
        )
        self._state: State | None = None
        self._keras_current = True
        self._jitted_step = jax.jit(
            self._pure_step(seed, r1_max_weight, ema_decay), donate_argnums=(0,)
        )
        self._jitted_finite = jax.jit(
            lambda weights: jnp.all(jnp.stack([jnp.all(jnp.isfinite(w)) for w in weights]))
        )

    # ----------------------------------------------------------------- state

    def _keras_state(self) -> dict[str, list]:
        """The Keras variables, grouped as the pure step takes them."""
        nets = self.networks
        return {
            "generator": nets.generator.trainable_variables,
            "generator_other": nets.generator.non_trainable_variables,
            "critic": nets.critic.trainable_variables,
            "critic_other": nets.critic.non_trainable_variables,
            "generator_ema": nets.generator_ema.trainable_variables,
            "generator_optimizer": self.generator_optimizer.variables,
            "critic_optimizer": self.critic_optimizer.variables,
            "switch": [self.switch],
            "draw_counter": [self.draw_counter],
        }

    def _read_state(self) -> State:
        state = {group: _values(variables) for group, variables in self._keras_state().items()}
        if self._distribution is not None:
            replicated = self._distribution.get_variable_layout(self.switch).backend_layout
            state = jax.device_put(state, replicated)
        else:
            state = jax.device_put(state, self.devices[0])
        # A fresh copy: the step donates its input buffers, which the Keras variables still hold.
        return jax.tree_util.tree_map(jnp.copy, state)

    def sync(self) -> None:
        if self._state is None or self._keras_current:
            return
        for group, variables in self._keras_state().items():
            for variable, value in zip(variables, self._state[group], strict=True):
                variable.assign(jnp.copy(value))
        self._keras_current = True

    def reload(self) -> None:
        self._state = None
        self._keras_current = True

    def _batch(self, real_latents: Any) -> jax.Array:
        batch = np.asarray(real_latents, dtype=np.float32)
        if self._distribution is None:
            return jax.device_put(batch, self.devices[0])
        layout = self._distribution.get_data_layout(
            (batch.shape[0] * jax.process_count(), *batch.shape[1:])
        )
        return jax.make_array_from_process_local_data(layout.backend_layout, batch)

    # ----------------------------------------------------------------- the step

    def step(self, real_latents: Any) -> dict[str, Any]:
        if self._state is None:
            self._state = self._read_state()
        losses, self._state = self._jitted_step(self._state, self._batch(real_latents))
        self._keras_current = False
        return losses

    def weights_finite(self) -> bool:
        if self._state is None:
            weights = [w.value for model in self.networks.as_dict().values() for w in model.weights]
        else:
            weights = [*self._state["generator"], *self._state["critic"], *self._state["generator_ema"]]
        return bool(self._jitted_finite(weights))

    def _pure_step(self, seed: int, r1_max_weight: float, ema_decay: float):
        nets = self.networks
        generator, critic, gan = nets.generator, nets.critic, nets.config
        generator_optimizer, critic_optimizer = self.generator_optimizer, self.critic_optimizer
        generator_iterations = _index_of(generator_optimizer.variables, generator_optimizer.iterations)
        critic_iterations = _index_of(critic_optimizer.variables, critic_optimizer.iterations)

        def scaled(optimizer: keras.optimizers.Optimizer, variables: list, loss: Any) -> Any:
            """`optimizer.scale_loss` with the optimizer's state taken from `variables`."""
            with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, variables))):
                return optimizer.scale_loss(loss)

        def pure_step(state: State, batch: jax.Array) -> tuple[dict[str, Any], State]:
            (switch,), (counter,) = state["switch"], state["draw_counter"]
            seeds = step_seeds(seed, counter)
            real = random_channel_swap(batch, seeds["swap"])
            coordinates = training_coordinates(batch.shape[0], gan, seeds)

            def forward(generator_weights: list, critic_weights: list):
                def total_real_score(latents):
                    scores, critic_other = critic.stateless_call(
                        critic_weights, state["critic_other"], latents, training=True
                    )
                    return jnp.sum(scores), (scores, critic_other)

                gradients, (real_scores, critic_other) = jax.grad(total_real_score, has_aux=True)(real)
                penalty = per_sample_squared_norm_mean(gradients)
                fake, generator_other = generator.stateless_call(
                    generator_weights, state["generator_other"], coordinates, training=True
                )
                fake_scores, critic_other = critic.stateless_call(
                    critic_weights, critic_other, fake, training=True
                )
                critic_loss, generator_loss, reported = step_losses(
                    real_scores, fake_scores, penalty, switch, r1_max_weight
                )
                losses = (
                    scaled(critic_optimizer, state["critic_optimizer"], critic_loss),
                    scaled(generator_optimizer, state["generator_optimizer"], generator_loss),
                )
                return losses, (reported, generator_other, critic_other)

            losses, backward, (reported, generator_other, critic_other) = jax.vjp(
                forward, state["generator"], state["critic"], has_aux=True
            )
            # Two backward passes from one forward pass; XLA drops the halves nobody uses
            # (the critic loss's gradient for the generator and the other way round).
            _, critic_gradients = backward((jnp.ones_like(losses[0]), jnp.zeros_like(losses[1])))
            generator_gradients, _ = backward((jnp.zeros_like(losses[0]), jnp.ones_like(losses[1])))
            critic_weights, critic_optimizer_state = critic_optimizer.stateless_apply(
                state["critic_optimizer"], critic_gradients, state["critic"]
            )
            generator_weights, generator_optimizer_state = generator_optimizer.stateless_apply(
                state["generator_optimizer"], generator_gradients, state["generator"]
            )
            applied = (
                generator_optimizer_state[generator_iterations]
                - state["generator_optimizer"][generator_iterations]
                + critic_optimizer_state[critic_iterations]
                - state["critic_optimizer"][critic_iterations]
            )
            new_state = {
                "generator": generator_weights,
                "generator_other": generator_other,
                "critic": critic_weights,
                "critic_other": critic_other,
                "generator_ema": [
                    ema_average(ema, weight, ema_decay)
                    for ema, weight in zip(state["generator_ema"], generator_weights, strict=True)
                ],
                "generator_optimizer": generator_optimizer_state,
                "critic_optimizer": critic_optimizer_state,
                "switch": [reported["switch"]],
                "draw_counter": [counter + 1],
            }
            return {**reported, "skipped_updates": (2 - applied).astype("float32")}, new_state

        return pure_step


def _index_of(variables: Sequence, wanted: Any) -> int:
    for index, variable in enumerate(variables):
        if variable is wanted:
            return index
    raise ValueError(f"{wanted.path} is not among the optimizer's variables")
