"""Training scenarios that run the same on either Keras backend, for the TensorFlow/JAX parity,
checkpoint-interchange, mixed-precision and data-parallel tests (`test_jax_backend.py`).

The test process runs on TensorFlow and calls these functions directly; the JAX side runs them
in a child process (`python -m tests.musika_model.backend_scenarios SPEC.json`, KERAS_BACKEND=jax)
that writes each scenario's results as JSON and .npz files for the test to compare.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from musika_model.train_config import preset
from musika_model.training_data import LatentSource

PARITY_SEED = 5
PARITY_LEARNING_RATE = 1e-3
"""Large enough that three Adam steps move weights far beyond float32 rounding (about 1e-3 each)."""
NOISE_SEED = 21


def tiny_config(epochs: int = 1, **overrides: Any):
    return preset("tiny", lr_phases=((epochs, 1e-4),), iterations_per_epoch=2, keep_checkpoints=5, **overrides)


def latent_sources(seed: int = 0) -> list[LatentSource]:
    rng = np.random.default_rng(seed)
    window = tiny_config().gan.latent_length
    return [LatentSource("a", [rng.normal(size=(window + 40, 128)).astype(np.float32) for _ in range(3)])]


def parity_batches(gan, count: int = 3, batch_size: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.uniform(-1, 1, (batch_size, gan.latent_length, 128)).astype(np.float32) for _ in range(count)]


def parity_steps(start: str, out: str, devices: int | None = None, steps: int = 3) -> None:
    """Steps from the checkpoint `start` on `parity_batches`: losses of each step (JSON) and the
    weights of all three networks after the first and the last step (.npz). In a multi-host run
    (KERAS_DISTRIBUTION_* set) `devices` counts every host's, and each process feeds its share
    of each batch, as the trainer does."""
    from musika_model.checkpoints import load_checkpoint
    from musika_model.devices import process_share
    from musika_model.gan_training import create_gan_training
    from musika_model.layers import set_noise_seed

    process, processes = process_share()
    state = load_checkpoint(start)
    nets = state.networks
    for model in nets.as_dict().values():
        set_noise_seed(model, NOISE_SEED)
    chosen = None
    if devices is not None or processes > 1:  # one device by default, every host's in a multi-host run
        import jax

        chosen = jax.devices()[:devices]
    training = create_gan_training(nets, learning_rate=PARITY_LEARNING_RATE, seed=PARITY_SEED, devices=chosen)
    losses, weights = [], {}
    for index, batch in enumerate(parity_batches(nets.config)[:steps], start=1):
        share = len(batch) // processes
        local = batch[process * share:(process + 1) * share]
        losses.append({key: float(value) for key, value in training.step(local).items()})
        if index in (1, steps):
            training.sync()
            weights.update({
                f"{index}/{role}/{n}": np.asarray(weight)
                for role, model in nets.as_dict().items()
                for n, weight in enumerate(model.weights)
            })
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "losses.json").write_text(json.dumps(losses))
    np.savez(Path(out) / "weights.npz", **weights)


def train(run_dir: str, epochs: int = 1, devices: int | str | None = None, **overrides: Any) -> str:
    """A fresh tiny run (data parallel over `devices`, a count or "all", when given); returns
    its last checkpoint."""
    from musika_model.devices import training_devices
    from musika_model.training import Trainer

    config = tiny_config(epochs, **overrides)
    chosen = None if devices is None else training_devices("auto", devices, config.batch_size)
    result = Trainer(config, latent_sources(), run_dir, devices=chosen).train()
    return str(result.last_checkpoint)


def resume(checkpoint: str, epochs: int) -> dict:
    """Continue `checkpoint`'s run to `epochs` epochs; its step, switch and optimizer counters
    as resumed, and its last checkpoint."""
    from musika_model.training import Trainer

    trainer = Trainer.resume(checkpoint, latent_sources(), config=tiny_config(epochs))
    trainer.training.sync()
    resumed = {"step": trainer.step, "iterations": int(np.asarray(trainer.training.generator_optimizer.iterations)),
               "switch": float(np.asarray(trainer.training.switch))}
    result = trainer.train()
    return {**resumed, "final_step": result.step, "checkpoint": str(result.last_checkpoint)}


def diverge(run_dir: str) -> dict:
    """A run whose lr makes the weights non-finite at once, with one rollback allowed: what the
    guard recorded and the state it left (the last healthy one)."""
    from musika_model.training import Trainer, TrainingDiverged

    config = tiny_config(2, max_rollbacks=1, log_every=1)
    trainer = Trainer(replace(config, lr_phases=((2, 1e30),)), latent_sources(), run_dir)
    try:
        trainer.train()
    except TrainingDiverged as error:
        message = str(error)
    else:
        raise AssertionError("an lr of 1e30 did not diverge")
    return {"events": [(event.kind, event.restored_step) for event in trainer.state.events],
            "lr_scale": trainer.state.lr_scale, "step": trainer.step, "finite": trainer.training.weights_finite(),
            "message": message}


def finetune(parent: str, run_dir: str) -> dict:
    from musika_model.training import Trainer

    trainer = Trainer.finetune(parent, tiny_config(1), latent_sources(1), run_dir)
    result = trainer.train()
    return {"step": result.step, "checkpoint": str(result.last_checkpoint),
            "parent": trainer.state.lineage["parent_checkpoint"]["folder"]}


def generate(checkpoint: str) -> list:
    from musika_model.checkpoints import load_generator
    from musika_model.generation import generate_latents

    latents = generate_latents(load_generator(checkpoint), 1.0, num_samples=2, seed=4)
    return [list(latents.shape), bool(np.isfinite(latents).all()), float(np.std(latents))]


def device_errors() -> list[str]:
    """What `training_devices` says to more devices than there are and to a batch that does not
    split over the devices (JAX only)."""
    from musika_model.devices import DeviceUnavailableError, training_devices

    messages = []
    for devices, batch_size in ((3, 4), (2, 3)):
        try:
            training_devices("auto", devices, batch_size)
        except DeviceUnavailableError as error:
            messages.append(str(error))
    return messages


SCENARIOS = {"parity_steps": parity_steps, "device_errors": device_errors, "diverge": diverge, "train": train, "resume": resume, "finetune": finetune,
             "generate": generate}


def main(spec_path: str) -> None:
    """Run the scenarios of a JSON list of [name, kwargs]; write their results beside the spec."""
    import keras

    spec = json.loads(Path(spec_path).read_text())
    results = [SCENARIOS[name](**kwargs) for name, kwargs in spec]
    report = {"backend": keras.backend.backend(), "results": results,
              "tensorflow_imported": "tensorflow" in sys.modules}
    Path(spec_path).with_suffix(".out.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
