"""GAN trainer speed on this machine's CPU: seconds per training step through the whole loop
(prefetched windows, step, loss checks, TensorBoard), checkpoint save time, the input
pipeline's throughput in windows per second, and the bare step at base_channels 128, batch 8
in float32 with and without XLA and under mixed precision (median of several steps after
a warm-up that traces and compiles), beside the original Musika's 1.01 s/step on this CPU kind.

Target (docs/operations.md §6): a step at base_channels 128, batch 8, fp32 no slower than the
original's ~0.83 s on these cores. The pipeline must outpace any GPU step by far: a GPU step
of batch 32 at ~0.1 s consumes ~320 windows/s.
Step times are the best step of a second epoch, after a first one that traces the step.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PIPELINE_ITEMS = 100
PIPELINE_FRAMES = 2000
PIPELINE_BATCHES = 200
PIPELINE_BATCH_SIZE = 32
ORIGINAL_MUSIKA_STEP_S = 1.01
"""The original Musika's fp32 step at base_channels 128, batch 8 on this CPU kind."""
THROUGHPUT_STEPS = 5


def _latents(count: int, frames: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.tanh(rng.standard_normal((frames, 128))).astype(np.float32) for _ in range(count)]


def trainer_step_time(base_channels: int, small: bool, batch_size: int, steps: int) -> tuple[float, float]:
    """(best seconds per step in the second epoch, seconds to save one checkpoint).

    Each step is checked and reported (log_every 1), the loop's most expensive setting; the
    best step is taken, as in bench_model, because the cores are shared.
    """
    from musika_model.config import GanConfig
    from musika_model.train_config import TrainConfig
    from musika_model.training import Trainer
    from musika_model.training_data import LatentSource

    config = TrainConfig(
        gan=GanConfig(base_channels=base_channels, small=small),
        batch_size=batch_size,
        iterations_per_epoch=steps,
        lr_phases=((2, 1e-4),),
        log_every=1,
        sample_count=0,
        mixed_precision=False,
        xla=False,
    )
    window = config.gan.latent_length
    sources = [LatentSource("bench", _latents(4, 2 * window))]
    with tempfile.TemporaryDirectory() as run_dir:
        step_seconds: list[float] = []
        trainer = Trainer(config, sources, run_dir)
        trainer.train(max_epochs=1)  # traces the step
        trainer.on_progress = lambda report: step_seconds.append(report.seconds_per_step or 0.0)
        trainer.train(max_epochs=1)
        started = time.perf_counter()
        trainer.save_checkpoint(samples=([], []))
        save_seconds = time.perf_counter() - started
    return min(s for s in step_seconds if s > 0), save_seconds


def pipeline_windows_per_second(from_files: bool, window: int = 256) -> float:
    """Windows per second out of `prefetched_batches` (batch 32, 256-frame windows, 100 x 2000 frames)."""
    from musika_model.training_data import LatentSource, WindowSampler, prefetched_batches

    items = _latents(PIPELINE_ITEMS, PIPELINE_FRAMES)
    with tempfile.TemporaryDirectory() as folder:
        if from_files:
            paths = []
            for index, item in enumerate(items):
                path = Path(folder) / f"item-{index}.npy"
                np.save(path, item)
                paths.append(path)
            source = LatentSource("files", paths)
        else:
            source = LatentSource("memory", items)
        sampler = WindowSampler([source], window)
        iterator = prefetched_batches(sampler, PIPELINE_BATCH_SIZE, seed=0, count=PIPELINE_BATCHES + 5)
        for _ in range(5):
            next(iterator)  # start-up
        started = time.perf_counter()
        for _ in iterator:
            pass
        elapsed = time.perf_counter() - started
    return PIPELINE_BATCHES * PIPELINE_BATCH_SIZE / elapsed


def step_throughput(policy: str, jit_compile: bool, base_channels: int = 128, batch_size: int = 8) -> tuple[float, float]:
    """(seconds of the first step: tracing and compiling included, median seconds per step after it)."""
    import tensorflow as tf

    from musika_model.config import GanConfig
    from musika_model.gan_training import create_gan_training
    from musika_model.networks import build_gan
    from musika_model.train_config import using_dtype_policy

    with using_dtype_policy(policy):
        networks = build_gan(GanConfig(base_channels=base_channels))
    training = create_gan_training(networks, policy=policy, seed=0, jit_compile=jit_compile)
    real = tf.constant(np.random.default_rng(0).uniform(-1, 1, (batch_size, 256, 128)), tf.float32)
    seconds = []
    for _ in range(THROUGHPUT_STEPS + 1):
        started = time.perf_counter()
        float(training.step(real)["critic_real"])
        seconds.append(time.perf_counter() - started)
    return seconds[0], float(np.median(seconds[1:]))


def run() -> dict[str, float]:
    figures: dict[str, float] = {}
    for label, policy, xla in (("fp32", "float32", False), ("fp32_xla", "float32", True),
                               ("mixed_bfloat16", "mixed_bfloat16", False),
                               ("mixed_float16", "mixed_float16", False)):
        first, median = step_throughput(policy, xla)
        figures[f"step_s_c128_b8_{label} (original {ORIGINAL_MUSIKA_STEP_S})"] = round(median, 3)
        figures[f"  first step (trace/compile) s, {label}"] = round(first, 1)
    tiny_step, tiny_save = trainer_step_time(16, True, 2, steps=10)
    figures["trainer_step_s_tiny_c16_small_b2"] = round(tiny_step, 4)
    figures["checkpoint_save_s_tiny"] = round(tiny_save, 3)
    default_step, default_save = trainer_step_time(128, False, 8, steps=5)
    figures["trainer_step_s_c128_b8_fp32 (target <= 0.83)"] = round(default_step, 3)
    figures["checkpoint_save_s_c128"] = round(default_save, 2)
    figures["pipeline_windows_per_s_memory"] = round(pipeline_windows_per_second(False))
    figures["pipeline_windows_per_s_npy_mmap"] = round(pipeline_windows_per_second(True))
    return figures


if __name__ == "__main__":
    started = time.perf_counter()
    for name, value in run().items():
        print(f"{name:48s} {value}")
    print(f"(took {time.perf_counter() - started:.0f} s)")
