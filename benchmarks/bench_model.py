"""Musika model speed on this machine's CPU: encode, generate, AE and GAN training steps.

Targets (docs/operations.md §6): encode >= 35x real time, generation >= 25x real time at
base_channels 128, GAN step (G + D with R1, base_channels 128, batch 8, fp32) <= 0.83 s.
All networks have random weights; every figure is timed after a warm-up call (tracing
excluded) and is the best of a few repetitions, since the cores are shared.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SR = 44100
ENCODE_SECONDS = 60.0
GENERATE_WINDOWS = 5


def _best_time(function: Callable[[], object], repeats: int) -> float:
    function()  # warm-up: traces and builds
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def _test_audio(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    tone = 0.3 * np.sin(2 * np.pi * 262 * t) * np.exp(-3 * (t % 0.5))
    return (np.stack([tone, tone], axis=1) + 0.01 * rng.standard_normal((len(t), 2))).astype(
        np.float32
    )


def encode_speed(repeats: int = 2) -> float:
    """x real time encoding 60 s of stereo audio with the official-width AE."""
    from musika_model.codec import Autoencoder

    autoencoder = Autoencoder.build()
    audio = _test_audio(ENCODE_SECONDS)
    return ENCODE_SECONDS / _best_time(lambda: autoencoder.encode(audio), repeats)


def generation_speed(repeats: int = 2, jit_compile: bool = False) -> tuple[float, float]:
    """(x real time generating 5 windows (118.9 s) in one sample at base_channels 128, seconds
    of the first call: tracing, and with `jit_compile` XLA compilation, included)."""
    from musika_model.codec import Autoencoder
    from musika_model.config import SAMPLES_PER_LATENT, GanConfig
    from musika_model.generation import generate
    from musika_model.networks import build_generator

    gan = GanConfig(base_channels=128)
    generator = build_generator(gan)
    autoencoder = Autoencoder.build()
    seconds = GENERATE_WINDOWS * gan.latent_length * SAMPLES_PER_LATENT / SR

    def one() -> None:
        generate(generator, autoencoder, seconds, 1, 2.0, 0, jit_compile=jit_compile)

    started = time.perf_counter()
    one()
    first = time.perf_counter() - started
    return seconds / _best_time(one, repeats), first


def ae_step_times(tiny: bool, repeats: int = 3) -> tuple[float, float]:
    """Seconds per stage-1 and stage-2 AE training step (batch 8, one 128-frame chunk)."""
    from musika_model.ae_training import AeTrainer, AeTrainingConfig
    from musika_model.codec import Autoencoder
    from musika_model.config import AutoencoderConfig

    config = AeTrainingConfig(batch_size=8)
    autoencoder = Autoencoder.build(AutoencoderConfig.tiny() if tiny else AutoencoderConfig())
    trainer = AeTrainer(autoencoder, config)
    rng = np.random.default_rng(0)
    batch = (0.1 * rng.standard_normal((config.batch_size, config.crop_samples))).astype(np.float32)

    def run(step):
        return lambda: {name: float(value) for name, value in step(batch).items()}

    return (_best_time(run(trainer.stage1_step), repeats),
            _best_time(run(trainer.stage2_step), repeats))


def gan_step_time(base_channels: int, batch_size: int = 8, repeats: int = 3) -> float:
    """Seconds per GAN step (critic + generator update with R1, fp32)."""
    import tensorflow as tf

    from musika_model.config import GanConfig
    from musika_model.gan_training import create_gan_training
    from musika_model.networks import build_gan

    training = create_gan_training(build_gan(GanConfig(base_channels=base_channels)), seed=0)
    rng = np.random.default_rng(0)
    real = tf.constant(rng.uniform(-1, 1, (batch_size, 256, 128)).astype(np.float32))

    def run():
        losses = training.step(real)
        return float(losses["critic_real"])

    return _best_time(run, repeats)


def run() -> dict[str, float]:
    figures: dict[str, float] = {}
    figures["encode_x_realtime (target >= 35)"] = round(encode_speed(), 1)
    for label, xla in (("", False), ("_xla", True)):
        speed, first = generation_speed(jit_compile=xla)
        figures[f"generate_x_realtime_c128{label} (target >= 25)"] = round(speed, 1)
        figures[f"  first call s (trace{'/compile' if xla else ''})"] = round(first, 1)
    for label, tiny in (("tiny", True), ("default", False)):
        stage1, stage2 = ae_step_times(tiny)
        figures[f"ae_stage1_step_s_{label}_b8"] = round(stage1, 3)
        figures[f"ae_stage2_step_s_{label}_b8"] = round(stage2, 3)
    figures["gan_step_s_c128_b8 (target <= 0.83)"] = round(gan_step_time(128), 3)
    figures["gan_step_s_c32_b8"] = round(gan_step_time(32), 3)
    return figures


if __name__ == "__main__":
    started = time.perf_counter()
    for name, value in run().items():
        print(f"{name:48s} {value}")
    print(f"(took {time.perf_counter() - started:.0f} s)")
