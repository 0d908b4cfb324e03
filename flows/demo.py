"""The demo pipeline on the bundled demo MIDI: what `make demo` and `musika-piano demo` run.

Offline, on CPU, on the embedded default (Prefect's ephemeral API, the store under data/):
render and normalize two small MIDI sets, train a small autoencoder (or use a stored one),
encode both sets, pretrain a tiny GAN on the first, fine-tune it on the second with replay,
generate samples. Every step is a stage with keyed outputs, so a second run recomputes nothing.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.encode_dataset import encode_dataset
from flows.generate import generate_samples
from flows.midi_dataset import build_midi_dataset
from flows.train import finetune, pretrain
from flows.train_autoencoder import train_autoencoder_flow
from tasks.normalize.stage import NORMALIZED_AUDIO
from tasks.pipeline.params import RunSettings
from tasks.store import ArtifactStore
from tasks.train.params import AutoencoderTrainingParams, GanTrainingParams

DEMO_SOURCES = Path(__file__).resolve().parents[1] / "data" / "demo"
DEMO_DATASETS = {"demo-piano": DEMO_SOURCES / "midi", "demo-piano-b": DEMO_SOURCES / "midi-b"}
DEMO_TRAINING = GanTrainingParams(preset="tiny", publish_every=1)


def _state(created: bool) -> str:
    return "published" if created else "unchanged (nothing recomputed)"


@flow(name="demo", description="The whole pipeline on the demo MIDI: datasets, autoencoder, latents, GAN "
      "pretrain and fine-tune, samples.")
def demo(store: str | None = None, autoencoder: str | None = None, sample_seconds: float = 10.0) -> dict:
    """Run every stage on the demo sets and say where each artifact is and how to listen to it.

    `autoencoder`: a stored model (e.g. imported official weights) to encode with instead of
    training the demo's small one."""
    run = RunSettings(store=store)
    opened = ArtifactStore.open(store)
    summary = [f"store: {opened.root}"]
    datasets = {name: build_midi_dataset(name=name, sources=[str(folder)], run=run)
                for name, folder in DEMO_DATASETS.items()}
    for result in datasets.values():
        version = opened.resolve(result["ref"])
        summary.append(f"dataset {result['ref']}: {_state(result['created'])}, {result['items']} items, "
                       f"{result['failures']} failures")
        if version.items:
            summary.append(f"  listen: {opened.local_path(version.items[0].key) / NORMALIZED_AUDIO}")

    if autoencoder is None:
        trained_ae = train_autoencoder_flow(dataset="demo-piano", name="demo-ae",
                                            settings=AutoencoderTrainingParams(preset="demo"), run=run)
        autoencoder = trained_ae["ref"]
        summary.append(f"autoencoder {autoencoder}: {_state(trained_ae['created'])}")
    latents = {name: encode_dataset(dataset=result["ref"], autoencoder=autoencoder, run=run)
               for name, result in datasets.items()}
    for result in latents.values():
        summary.append(f"latents {result['ref']}: {_state(result['created'])}, {result['items']} items")

    base = pretrain(datasets=[latents["demo-piano"]["ref"]], name="demo-gan", settings=DEMO_TRAINING, run=run)
    tuned = finetune(parent=base["ref"], datasets=[latents["demo-piano-b"]["ref"]], name="demo-gan-b",
                     replay=0.25, settings=DEMO_TRAINING, run=run)
    for result in (base, tuned):
        summary.append(f"model {result['ref']}: {'trained' if result['trained'] else _state(False)}, "
                       f"step {result['step']}")
        summary.append(f"  checkpoint: {result['checkpoint']}")
        summary.append(f"  tensorboard --logdir {result['run_dir']}")
    samples = generate_samples(model=tuned["ref"], seconds=sample_seconds, count=2, run=run)
    summary.append(f"samples {samples['ref']}: {_state(samples['created'])}")
    summary.extend(f"  listen: {path}" for path in samples["files"])
    summary.append(f"open the generation app on these models: musika-piano app   "
                   f"(or: musika-piano generate {tuned['ref']} --seconds 30)")
    return {"datasets": datasets, "latents": latents, "models": {"pretrain": base, "finetune": tuned},
            "autoencoder": autoencoder, "samples": samples, "summary": summary}
