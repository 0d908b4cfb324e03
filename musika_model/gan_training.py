"""`create_gan_training`: the training step of the active Keras backend for a set of networks
(`tf_step` on TensorFlow, `jax_step` on JAX; what they share is in `gan_step`)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from .gan_step import (
    EMA_DECAY,
    LEARNING_RATE,
    R1_MAX_WEIGHT,
    SWITCH_START,
    GanTraining,
    make_optimizers,
)
from .networks import GanNetworks


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
    devices: Sequence | None = None,
) -> GanTraining:
    """Optimizers, switch, draw counter and step for `networks`, on the active Keras backend.

    Under a mixed `policy`, build the networks under that Keras dtype policy first. `seed` and
    `first_draw` fix the swap and coordinate draws (the noise layers have their own seeds).
    `jit_compile` is TensorFlow's XLA switch (JAX always compiles); `devices` (JAX only) are the
    devices a batch is split over (data parallel), default one.
    """
    generator_optimizer, critic_optimizer = make_optimizers(learning_rate, policy)
    options = {"seed": seed, "first_draw": first_draw, "switch": switch, "r1_max_weight": r1_max_weight,
                   "ema_decay": ema_decay}
    if keras.backend.backend() == "jax":
        from .jax_step import JaxGanTraining

        return JaxGanTraining(networks, generator_optimizer, critic_optimizer, devices=devices, **options)
    if devices is not None and len(devices) > 1:
        raise ValueError("data parallel training needs the JAX backend; TensorFlow trains on one device")
    from .tf_step import TensorFlowGanTraining

    return TensorFlowGanTraining(
        networks, generator_optimizer, critic_optimizer, jit_compile=jit_compile, **options
    )
