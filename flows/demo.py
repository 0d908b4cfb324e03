"""The demo pipeline on the bundled demo MIDI: what `make demo` and `musika-piano demo` run.

Offline, on CPU, on the embedded default (Prefect's ephemeral API, the store under data/).
A second run finds everything in the store and recomputes nothing.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.midi_dataset import build_midi_dataset
from flows.params import RunSettings
from tasks.loudness import NORMALIZED_AUDIO
from tasks.store import ArtifactStore

DEMO_SOURCES = Path(__file__).resolve().parents[1] / "data" / "demo"
DEMO_DATASETS = {"demo-piano": DEMO_SOURCES / "midi", "demo-piano-b": DEMO_SOURCES / "midi-b"}


@flow(name="demo", description="Render and normalize the demo MIDI sets into two datasets.")
def demo(store: str | None = None) -> dict:
    """Build the demo datasets and say where everything is and how to listen to it."""
    run = RunSettings(store=store)
    results = {name: build_midi_dataset(name=name, sources=[str(folder)], run=run)
               for name, folder in DEMO_DATASETS.items()}
    opened = ArtifactStore.open(store)
    summary = [f"store: {opened.root}"]
    for name, result in results.items():
        version = opened.resolve(result["ref"])
        state = "published" if result["created"] else "unchanged (nothing recomputed)"
        summary.append(f"{result['ref']}: {state}, {result['items']} items, {result['failures']} failures")
        summary.append(f"  location: {result['uri']}")
        if version.items:
            first = opened.local_path(version.items[0].key) / NORMALIZED_AUDIO
            summary.append(f"  listen:   {first}")
        summary.append(f"  export:   musika-piano dataset export {result['ref']} ./{name}")
    return {"datasets": results, "summary": summary}
