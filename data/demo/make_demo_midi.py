"""Write the demo MIDI sets deterministically (same bytes on every run).

    python data/demo/make_demo_midi.py [--out DIR]

``midi/``   8 solo-piano pieces in classical textures (Alberti bass, arpeggios, chorale, waltz,
            nocturne, march, etude, barcarolle), each in its own key and tempo, 20-40 s.
``midi-b/`` 4 pieces in a contrasting jazz/blues idiom (12-bar blues with swing, stride,
            ballad with rootless voicings, boogie-woogie) for the fine-tune demo.

Harmony is written out as chord progressions; melodies are generated from them with a seeded
random walk over chord tones (strong beats) and scale tones (weak beats), ending on the tonic.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pretty_midi

PITCH_CLASS = {
    "C": 0,
    "Db": 1,
    "D": 2,
    "Eb": 3,
    "E": 4,
    "F": 5,
    "Gb": 6,
    "G": 7,
    "Ab": 8,
    "A": 9,
    "Bb": 10,
    "B": 11,
}
CHORD_INTERVALS = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "dom7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10),
    "dom9": (0, 4, 7, 10, 14),
    "maj6": (0, 4, 7, 9),
}
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 11)  # harmonic minor: the leading tone of the V chord
BLUES_SCALE = (0, 3, 5, 6, 7, 10)
SUSTAIN_PEDAL = 64


@dataclass(frozen=True)
class Chord:
    root: int  # pitch class
    quality: str

    @property
    def pitch_classes(self) -> set[int]:
        return {(self.root + interval) % 12 for interval in CHORD_INTERVALS[self.quality]}

    def voicing(self, bass_octave: int) -> list[int]:
        """Root-position pitches starting at the root in ``bass_octave`` (C4 = 60 is octave 4)."""
        base = 12 * (bass_octave + 1) + self.root
        return [base + interval for interval in CHORD_INTERVALS[self.quality]]


def progression(text: str) -> list[Chord]:
    """'C:maj F:maj G:dom7' -> chords."""
    chords = []
    for token in text.split():
        root, quality = token.split(":")
        chords.append(Chord(PITCH_CLASS[root], quality))
    return chords


@dataclass
class Piece:
    """Notes are placed in beats; the tempo is constant, so beats map linearly to seconds."""

    name: str
    bpm: float
    beats_per_bar: int
    key: str  # pretty_midi key name, e.g. "C Major", "E minor"
    time_signature: tuple[int, int]
    rng: random.Random = field(init=False)
    right: pretty_midi.Instrument = field(init=False)
    left: pretty_midi.Instrument = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.name)
        self.right = pretty_midi.Instrument(program=0, name="Piano right hand")
        self.left = pretty_midi.Instrument(program=0, name="Piano left hand")

    def seconds(self, beat: float) -> float:
        return beat * 60.0 / self.bpm

    def note(
        self, hand: pretty_midi.Instrument, beat: float, pitch: int, beats: float, velocity: int
    ) -> None:
        humanised = max(1, min(127, velocity + self.rng.randint(-5, 5)))
        hand.notes.append(
            pretty_midi.Note(humanised, int(pitch), self.seconds(beat), self.seconds(beat + beats))
        )

    def chord(
        self,
        hand: pretty_midi.Instrument,
        beat: float,
        pitches: Sequence[int],
        beats: float,
        velocity: int,
    ) -> None:
        for pitch in pitches:
            self.note(hand, beat, pitch, beats, velocity)

    def pedal(self, start_beat: float, end_beat: float) -> None:
        """Sustain pedal down at start, up just before end (re-pedalling leaves a short gap)."""
        self.left.control_changes.append(
            pretty_midi.ControlChange(SUSTAIN_PEDAL, 127, self.seconds(start_beat) + 0.02)
        )
        self.left.control_changes.append(
            pretty_midi.ControlChange(SUSTAIN_PEDAL, 0, self.seconds(end_beat) - 0.02)
        )

    def to_midi(self) -> pretty_midi.PrettyMIDI:
        midi = pretty_midi.PrettyMIDI(initial_tempo=self.bpm, resolution=480)
        midi.time_signature_changes.append(pretty_midi.TimeSignature(*self.time_signature, 0.0))
        midi.key_signature_changes.append(
            pretty_midi.KeySignature(pretty_midi.key_name_to_key_number(self.key), 0.0)
        )
        midi.instruments.extend([self.right, self.left])
        return midi


def melody(
    piece: Piece,
    chords: Sequence[Chord],
    scale_root: int,
    scale: Sequence[int],
    rhythm: Callable[[int], Sequence[float]],
    low: int,
    high: int,
    start: int,
) -> list[tuple[float, int, float]]:
    """(beat, pitch, beats) triples over one chord per bar; strong beats land on chord tones."""
    scale_classes = {(scale_root + step) % 12 for step in scale}
    notes: list[tuple[float, int, float]] = []
    previous = start
    for bar, harmony in enumerate(chords):
        beat = bar * piece.beats_per_bar
        durations = rhythm(bar)
        last_bar = bar == len(chords) - 1
        for position, length in enumerate(durations):
            strong = (beat % 1.0 == 0.0) and position in (0, 2)
            allowed = harmony.pitch_classes if strong or last_bar else scale_classes
            if last_bar and position == len(durations) - 1:
                allowed = {scale_root}
            candidates = [
                p
                for p in range(low, high + 1)
                if p % 12 in allowed and p != previous and abs(p - previous) <= 7
            ]
            if not candidates:
                candidates = [p for p in range(low, high + 1) if p % 12 in allowed]
            weights = [1.0 / (1 + abs(p - previous)) ** 1.5 for p in candidates]
            previous = piece.rng.choices(candidates, weights)[0]
            notes.append((beat, previous, length))
            beat += length
    return notes


def play_melody(
    piece: Piece, notes: Sequence[tuple[float, int, float]], velocity: int, legato: float = 0.95
) -> None:
    for beat, pitch, length in notes:
        piece.note(piece.right, beat, pitch, length * legato, velocity)


def nearest_voicing(
    chord: Chord, previous: Sequence[int], low: int, high: int, size: int
) -> list[int]:
    """The ``size``-note voicing of chord tones in [low, high] closest to ``previous``."""
    tones = sorted(p for p in range(low, high + 1) if p % 12 in chord.pitch_classes)
    best: list[int] = tones[:size]
    best_cost = float("inf")
    for first in range(len(tones) - size + 1):
        candidate = tones[first : first + size]
        if len({p % 12 for p in candidate}) < min(size, len(chord.pitch_classes)):
            continue
        cost = sum(abs(a - b) for a, b in zip(candidate, previous))
        if cost < best_cost:
            best, best_cost = candidate, cost
    return best


# ---------------------------------------------------------------------------------------------
# Set A: classical textures


def alberti_c_major() -> Piece:
    piece = Piece("alberti_c_major", bpm=112, beats_per_bar=4, key="C Major", time_signature=(4, 4))
    chords = progression(
        "C:maj F:maj G:dom7 C:maj A:min D:min G:dom7 C:maj "
        "F:maj G:maj E:min A:min D:min G:dom7 G:dom7 C:maj"
    )
    for bar, chord in enumerate(chords):
        root, third, fifth = chord.voicing(3)[:3]
        for step, pitch in enumerate([root, fifth, third, fifth] * 2):
            piece.note(piece.left, bar * 4 + step * 0.5, pitch, 0.5, 58 if step % 2 else 66)
    rhythms = ([1, 1, 1, 1], [1.5, 0.5, 1, 1], [0.5, 0.5, 0.5, 0.5, 1, 1], [2, 1, 1])
    tune = melody(
        piece,
        chords,
        0,
        MAJOR_SCALE,
        lambda bar: rhythms[bar % 4] if bar < 15 else [4],
        low=67,
        high=84,
        start=72,
    )
    play_melody(piece, tune, 84)
    return piece


def arpeggio_e_minor() -> Piece:
    piece = Piece("arpeggio_e_minor", bpm=84, beats_per_bar=4, key="E minor", time_signature=(4, 4))
    chords = progression("E:min C:maj G:maj D:maj A:min B:dom7 E:min C:maj A:min B:dom7 E:min")
    for bar, chord in enumerate(chords):
        tones = chord.voicing(2) + [p + 12 for p in chord.voicing(3)] + [chord.voicing(4)[0]]
        figure = tones + tones[-2:0:-1]
        piece.pedal(bar * 4, bar * 4 + 4)
        if bar == len(chords) - 1:
            piece.chord(piece.left, bar * 4, tones[:4], 4, 70)
            piece.chord(piece.right, bar * 4, chord.voicing(5), 4, 76)
            continue
        for step in range(16):
            hand = piece.left if step % 16 < 8 else piece.right
            piece.note(
                hand,
                bar * 4 + step * 0.25,
                figure[step % len(figure)],
                0.25,
                72 if step % 4 == 0 else 60,
            )
    return piece


def chorale_f_major() -> Piece:
    piece = Piece("chorale_f_major", bpm=66, beats_per_bar=4, key="F Major", time_signature=(4, 4))
    chords = progression(
        "F:maj Bb:maj C:maj F:maj D:min G:min C:dom7 F:maj "
        "Bb:maj F:maj G:min C:maj A:min D:min C:dom7 F:maj"
    )
    upper = [65, 69, 72]
    for index, chord in enumerate(chords):
        beat = index * 2
        length = 4 if index == len(chords) - 1 else 2
        upper = nearest_voicing(chord, upper, 57, 79, 3)
        bass = chord.voicing(2)[0]
        bass = bass + 12 if bass < 41 else bass
        velocity = 64 + (8 if index % 4 == 2 else 0)
        piece.chord(piece.right, beat, upper, length * 0.97, velocity)
        piece.note(piece.left, beat, bass, length * 0.97, velocity - 4)
    return piece


def waltz_d_major() -> Piece:
    piece = Piece("waltz_d_major", bpm=168, beats_per_bar=3, key="D Major", time_signature=(3, 4))
    chords = progression(
        "D:maj D:maj A:dom7 A:dom7 A:dom7 A:dom7 D:maj D:maj "
        "G:maj G:maj D:maj B:min E:min A:dom7 D:maj D:maj "
        "D:maj B:min G:maj E:min A:dom7 A:dom7 D:maj D:maj"
    )
    for bar, chord in enumerate(chords):
        bass = chord.voicing(2)[0]
        upper = nearest_voicing(chord, [54, 57, 62], 52, 67, 3)
        piece.note(piece.left, bar * 3, bass, 0.9, 68)
        if bar < len(chords) - 1:
            piece.chord(piece.left, bar * 3 + 1, upper, 0.5, 52)
            piece.chord(piece.left, bar * 3 + 2, upper, 0.5, 50)
    rhythms = ([2, 1], [3], [1, 1, 1], [1.5, 0.5, 1])
    tune = melody(
        piece, chords, 2, MAJOR_SCALE, lambda bar: rhythms[bar % 4], low=69, high=88, start=78
    )
    play_melody(piece, tune, 80)
    return piece


def nocturne_d_flat() -> Piece:
    piece = Piece("nocturne_d_flat", bpm=60, beats_per_bar=4, key="Db Major", time_signature=(4, 4))
    chords = progression("Db:maj Gb:maj Ab:dom7 Db:maj Bb:min Eb:min Ab:dom7 Db:maj")
    for bar, chord in enumerate(chords):
        root, third, fifth = chord.voicing(2)[:3]
        figure = [root, fifth, root + 12, third + 12, fifth + 12, third + 12, root + 12, fifth]
        piece.pedal(bar * 4, bar * 4 + 2)
        piece.pedal(bar * 4 + 2, bar * 4 + 4)
        for step, pitch in enumerate(figure):
            piece.note(piece.left, bar * 4 + step * 0.5, pitch, 0.5, 50 if step else 60)
    rhythms = ([3, 1], [1.5, 0.5, 2], [2, 0.5, 0.5, 1], [1, 1, 1, 1])
    tune = melody(
        piece,
        chords,
        1,
        MAJOR_SCALE,
        lambda bar: rhythms[bar % 4] if bar < 7 else [4],
        low=68,
        high=89,
        start=77,
    )
    play_melody(piece, tune, 78, legato=1.0)
    return piece


def march_g_major() -> Piece:
    piece = Piece("march_g_major", bpm=116, beats_per_bar=2, key="G Major", time_signature=(2, 4))
    chords = progression(
        "G:maj G:maj D:dom7 G:maj C:maj G:maj A:dom7 D:maj "
        "G:maj G:maj D:dom7 G:maj C:maj G:maj D:dom7 G:maj "
        "E:min E:min B:maj E:min C:maj G:maj D:dom7 G:maj"
    )
    for bar, chord in enumerate(chords):
        bass = chord.voicing(2)[0]
        piece.chord(piece.left, bar * 2, [bass, bass + 12], 0.45, 74)
        piece.chord(
            piece.left, bar * 2 + 1, nearest_voicing(chord, [59, 62, 67], 55, 69, 3), 0.4, 58
        )
    rhythms = ([0.75, 0.25, 1], [0.5, 0.5, 0.5, 0.5], [1, 0.75, 0.25], [2])
    tune = melody(
        piece, chords, 7, MAJOR_SCALE, lambda bar: rhythms[bar % 4], low=67, high=86, start=74
    )
    play_melody(piece, tune, 90, legato=0.8)
    return piece


def etude_a_minor() -> Piece:
    piece = Piece("etude_a_minor", bpm=126, beats_per_bar=4, key="A minor", time_signature=(4, 4))
    chords = progression(
        "A:min D:min E:dom7 A:min F:maj D:min B:dim E:dom7 A:min D:min E:dom7 A:min"
    )
    for bar, chord in enumerate(chords):
        bass = chord.voicing(1)[0] + 12
        last = bar == len(chords) - 1
        piece.chord(piece.left, bar * 4, [bass, bass + 12], 4 if last else 1.9, 70)
        if not last:
            piece.chord(piece.left, bar * 4 + 2, [bass, bass + 12], 1.9, 64)
        tones = [p + 12 for p in chord.voicing(4)][:3]
        figure = [tones[0], tones[1], tones[2], tones[0] + 12, tones[2], tones[1]]
        if last:
            piece.chord(piece.right, bar * 4, [tones[0], tones[1], tones[2], tones[0] + 12], 4, 80)
            continue
        for step in range(16):
            piece.note(
                piece.right,
                bar * 4 + step * 0.25,
                figure[step % 6] - 12,
                0.24,
                78 if step % 4 == 0 else 62,
            )
    return piece


def barcarolle_b_flat() -> Piece:
    # 6/8 counted in eighths: one "beat" is an eighth note, 6 per bar.
    piece = Piece(
        "barcarolle_b_flat", bpm=168, beats_per_bar=6, key="Bb Major", time_signature=(6, 8)
    )
    chords = progression(
        "Bb:maj Eb:maj F:dom7 Bb:maj G:min C:min F:dom7 Bb:maj Eb:maj Bb:maj F:dom7 Bb:maj"
    )
    for bar, chord in enumerate(chords):
        root, third, fifth = chord.voicing(2)[:3]
        piece.pedal(bar * 6, bar * 6 + 6)
        for step, pitch in enumerate([root, fifth, third + 12, root + 12, third + 12, fifth]):
            piece.note(piece.left, bar * 6 + step, pitch, 1, 62 if step in (0, 3) else 48)
    rhythms = ([3, 2, 1], [2, 1, 3], [1, 1, 1, 3], [6])
    tune = melody(
        piece, chords, 10, MAJOR_SCALE, lambda bar: rhythms[bar % 4], low=70, high=86, start=77
    )
    for beat, pitch, length in tune:  # melody in sixths: the lower voice a chord tone below
        piece.note(piece.right, beat, pitch, length * 0.95, 80)
        chord = chords[int(beat // 6)]
        below = max(
            p
            for p in range(pitch - 9, pitch - 2)
            if p % 12 in chord.pitch_classes or p == pitch - 9
        )
        piece.note(piece.right, beat, below, length * 0.95, 62)
    return piece


# ---------------------------------------------------------------------------------------------
# Set B: jazz and blues


def swing(beat: float) -> float:
    """Delay off-beat eighths to the last third of the beat."""
    whole = int(beat)
    return whole + (2 / 3 if beat - whole == 0.5 else beat - whole)


def blues_f() -> Piece:
    piece = Piece("blues_f", bpm=104, beats_per_bar=4, key="F Major", time_signature=(4, 4))
    chords = progression(
        "F:dom7 Bb:dom7 F:dom7 F:dom7 Bb:dom7 Bb:dom7 F:dom7 F:dom7 C:dom7 Bb:dom7 F:dom7 C:dom7"
    )
    for bar, chord in enumerate(chords):
        root = chord.voicing(2)[0]
        shuffle = [root, root + 7, root, root + 9, root, root + 10, root, root + 9]
        for step, pitch in enumerate(shuffle):
            piece.note(
                piece.left, bar * 4 + swing(step * 0.5), pitch, 0.3, 70 if step % 2 == 0 else 56
            )
    riffs = [
        [(0, 0), (0.5, 3), (1, 5), (1.5, 6), (2, 7)],
        [(0, 10), (0.5, 7), (1, 5), (2, 3), (3, 0)],
    ]
    for bar in range(len(chords)):
        offsets = riffs[bar % 2] if bar < len(chords) - 1 else [(0, 0)]
        for beat, interval in offsets:
            piece.note(piece.right, bar * 4 + swing(beat), 65 + interval, 0.45, 86)
            if bar % 4 == 3:
                piece.note(piece.right, bar * 4 + swing(beat), 65 + interval + 12, 0.45, 70)
    return piece


def stride_c() -> Piece:
    piece = Piece("stride_c", bpm=108, beats_per_bar=4, key="C Major", time_signature=(4, 4))
    chords = progression(
        "C:maj6 A:dom7 D:min7 G:dom7 C:maj6 C:dom7 F:maj6 F:min "
        "C:maj6 A:dom7 D:dom7 G:dom7 E:min7 A:dom7 D:min7 G:dom7 C:maj6"
    )
    for bar, chord in enumerate(chords):
        root = chord.voicing(1)[0] + 12
        fifth = root + 7 if root + 7 < 48 else root - 5
        mid = nearest_voicing(chord, [55, 60, 64], 52, 67, 3)
        for beat, bass in ((0, root), (2, fifth)):
            piece.chord(
                piece.left, bar * 4 + beat, [bass, bass + 12] if beat == 0 else [bass], 0.8, 74
            )
            piece.chord(piece.left, bar * 4 + beat + 1, mid, 0.7, 60)
    rhythms = ([1, 0.5, 1, 0.5, 1], [0.5, 1, 0.5, 2], [1.5, 1.5, 1], [0.5, 0.5, 1, 0.5, 1.5])
    tune = melody(
        piece,
        chords,
        0,
        MAJOR_SCALE,
        lambda bar: rhythms[bar % 4] if bar < 16 else [4],
        low=67,
        high=88,
        start=76,
    )
    play_melody(piece, tune, 88, legato=0.85)
    return piece


def ballad_b_flat() -> Piece:
    piece = Piece("ballad_b_flat", bpm=76, beats_per_bar=4, key="Bb Major", time_signature=(4, 4))
    chords = progression(
        "C:min7 F:dom9 Bb:maj7 G:min7 C:min7 F:dom9 D:min7 G:dom7 C:min7 F:dom9 Bb:maj7 Bb:maj7"
    )
    voicing = [58, 62, 65, 69]
    for bar, chord in enumerate(chords):
        root = chord.voicing(2)[0]
        voicing = nearest_voicing(Chord(chord.root, chord.quality), voicing, 55, 74, 4)
        piece.pedal(bar * 4, bar * 4 + 4)
        piece.note(piece.left, bar * 4, root, 3.9, 62)
        piece.chord(piece.left, bar * 4 + 0.02, voicing[:2], 1.9, 50)
        piece.chord(piece.right, bar * 4 + 2 + 0.04, voicing[2:], 1.9, 52)
    tune = melody(
        piece,
        chords,
        10,
        MAJOR_SCALE,
        lambda bar: [2, 1, 1] if bar % 2 else [3, 1],
        low=72,
        high=87,
        start=77,
    )
    play_melody(piece, tune, 74, legato=1.0)
    return piece


def boogie_g() -> Piece:
    piece = Piece("boogie_g", bpm=132, beats_per_bar=4, key="G Major", time_signature=(4, 4))
    chords = progression(
        "G:dom7 G:dom7 G:dom7 G:dom7 C:dom7 C:dom7 G:dom7 G:dom7 D:dom7 C:dom7 G:dom7 D:dom7"
    )
    for bar, chord in enumerate(chords):
        root = chord.voicing(2)[0]
        walk = [root, root + 4, root + 7, root + 9, root + 10, root + 9, root + 7, root + 4]
        for step, pitch in enumerate(walk):
            piece.note(piece.left, bar * 4 + step * 0.5, pitch, 0.45, 76 if step % 2 == 0 else 64)
        top = chord.voicing(4)
        for beat in (0.5, 1.5, 2.5, 3.5) if bar % 2 == 0 else (0, 1.5, 3):
            piece.chord(piece.right, bar * 4 + beat, [top[1], top[3]], 0.4, 80)
    blue = 67
    tune = melody(
        piece, chords[-2:], 7, BLUES_SCALE, lambda bar: [0.5] * 8, low=blue, high=84, start=74
    )
    play_melody(piece, [(beat + 40, pitch, length) for beat, pitch, length in tune], 84, 0.8)
    return piece


SET_A: tuple[Callable[[], Piece], ...] = (
    alberti_c_major,
    arpeggio_e_minor,
    chorale_f_major,
    waltz_d_major,
    nocturne_d_flat,
    march_g_major,
    etude_a_minor,
    barcarolle_b_flat,
)
SET_B: tuple[Callable[[], Piece], ...] = (blues_f, stride_c, ballad_b_flat, boogie_g)


def write_set(pieces: Sequence[Callable[[], Piece]], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for build in pieces:
        piece = build()
        path = folder / f"{piece.name}.mid"
        piece.to_midi().write(str(path))
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="folder that receives midi/ and midi-b/ (default: data/demo)",
    )
    args = parser.parse_args(argv)
    for path in write_set(SET_A, args.out / "midi") + write_set(SET_B, args.out / "midi-b"):
        midi = pretty_midi.PrettyMIDI(str(path))
        notes = sum(len(instrument.notes) for instrument in midi.instruments)
        print(f"{path}: {midi.get_end_time():.1f} s, {notes} notes, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
