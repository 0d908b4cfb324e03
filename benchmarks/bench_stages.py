"""Speed of the MIDI render and loudness stages, in x real time per core (docs/operations.md §6).

Render: the demo MIDI sets (about 6 minutes of music) through pretty_midi's General MIDI font
in one process, with the soundfont loaded once before timing. Normalize: the same audio, decoded
from float WAV files before timing, through ``normalize_loudness`` with the default parameters,
then with a -12 LUFS target that makes the limiter work on every piece.

Figures are CPU time of this process (``time.process_time``), so other load on the machine
changes them little.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from musika_model.audio import read_audio, write_wav
from tasks.normalize.core import normalize_loudness
from tasks.normalize.params import LoudnessParams
from tasks.render.core import default_soundfont, get_synth, render_midi
from tasks.render.params import DEFAULT_SAMPLE_RATE

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
TARGETS = {"render_x_realtime_per_core": 100.0, "normalize_x_realtime_per_core": 200.0}


def _render_figures(midi_files: list[Path]) -> tuple[dict[str, float], list[np.ndarray]]:
    soundfont = default_soundfont()
    started = time.process_time()
    get_synth(soundfont)
    load_seconds = time.process_time() - started
    rendered, cpu_seconds = [], 0.0
    for path in midi_files:
        started = time.process_time()
        rendered.append(render_midi(path, soundfont))
        cpu_seconds += time.process_time() - started
    audio_seconds = sum(len(audio) for audio in rendered) / DEFAULT_SAMPLE_RATE
    figures = {
        "render_audio_seconds": round(audio_seconds, 1),
        "render_x_realtime_per_core": round(audio_seconds / cpu_seconds, 1),
        "soundfont_load_seconds": round(load_seconds, 3),
    }
    return figures, rendered


def _normalize_speed(decoded: list[np.ndarray], params: LoudnessParams) -> float:
    cpu_seconds, audio_seconds = 0.0, 0.0
    for audio in decoded:
        started = time.process_time()
        normalize_loudness(audio, DEFAULT_SAMPLE_RATE, params)
        cpu_seconds += time.process_time() - started
        audio_seconds += len(audio) / DEFAULT_SAMPLE_RATE
    return round(audio_seconds / cpu_seconds, 1)


def run() -> dict[str, float]:
    midi_files = sorted(DEMO.glob("midi*/*.mid"))
    if not midi_files:
        raise FileNotFoundError(f"no demo MIDI under {DEMO}: run data/demo/make_demo_midi.py")
    figures, rendered = _render_figures(midi_files)
    with tempfile.TemporaryDirectory(prefix="musika-bench-") as scratch:
        decoded = []
        for index, samples in enumerate(rendered):
            path = write_wav(Path(scratch) / f"{index}.wav", samples, 44100)
            decoded.append(read_audio(path)[0])
    figures["normalize_x_realtime_per_core"] = _normalize_speed(decoded, LoudnessParams())
    loud = LoudnessParams(target_lufs=-12.0)
    figures["normalize_with_limiter_x_realtime_per_core"] = _normalize_speed(decoded, loud)
    return figures


if __name__ == "__main__":
    for name, value in run().items():
        target = f"   (target >= {TARGETS[name]:.0f}x)" if name in TARGETS else ""
        print(f"{name:48s} {value}{target}")
