"""Test data made in code: MIDI with pretty_midi, audio with numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi


def write_piano_midi(path: Path, seconds: float = 4.0, seed: int = 0, program: int = 0) -> Path:
    """A short piano piece: a random walk melody over block chords, different for each seed."""
    rng = np.random.default_rng(seed)
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=program, name="piano")
    pitch = 60 + int(rng.integers(-5, 6))
    step = 0.25
    time = 0.0
    while time + step <= seconds:
        pitch = int(np.clip(pitch + rng.integers(-3, 4), 48, 84))
        velocity = int(rng.integers(60, 100))
        piano.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=time, end=time + step * 0.9))
        if round(time / step) % 8 == 0:
            root = pitch - 12
            for offset in (0, 4, 7):
                end = min(time + 8 * step, seconds)
                piano.notes.append(pretty_midi.Note(velocity=55, pitch=root + offset, start=time, end=end))
        time += step
    midi.instruments.append(piano)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))
    return path
