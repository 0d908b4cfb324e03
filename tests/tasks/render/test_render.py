"""The MIDI render stage: real FluidSynth, pretty_midi MIDI built here, soundfonts on disk.

Besides pretty_midi's bundled General MIDI font, the tests write a tiny soundfont of their own
(one preset: a looped 441 Hz sine on key 69), which gives a second, clearly different font and
exact pitches to measure.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import sys
import threading
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from pydantic import ValidationError

from tasks.pipeline.sources import MIDI_EXTENSIONS, resolve_sources
from tasks.render import stage as render
from tasks.render.core import (
    FluidSynthUnavailable,
    InvalidRenderParams,
    MidiFileNotFound,
    MidiHasNoNotes,
    MidiHasNoPitchedNotes,
    MidiParseError,
    MidiTooLong,
    SilentRender,
    SoundfontLoadError,
    SoundfontNotFound,
    SoundfontSynth,
    cache_stats,
    default_soundfont,
    get_synth,
    plan_channels,
    render_midi,
    render_variants,
    soundfont_digest,
)
from tasks.render.params import RenderParams
from tasks.store import ArtifactStore
from tests.helpers import run_cli

RATE = 44100
SINE_PERIOD = 100  # samples per period of the test font's sample: 441 Hz at 44.1 kHz, on key 69
DEMO = Path(__file__).resolve().parents[3] / "data" / "demo"


# --------------------------------------------------------------------------------------------
# Test data


def _chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _riff_list(kind: bytes, *chunks: bytes) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def _sf2_name(text: str) -> bytes:
    return text.encode("ascii").ljust(20, b"\0")


def write_sine_soundfont(path: Path) -> Path:
    """A minimal SoundFont 2.01: preset 0 (bank 0) plays a looped sine whose root key is 69."""
    frames = SINE_PERIOD * 441
    wave = 0.5 * 32767 * np.sin(2 * np.pi * np.arange(frames) / SINE_PERIOD)
    samples = wave.astype("<i2").tobytes() + b"\0" * 92  # the spec wants 46 zero samples after
    generators = [(54, 1), (58, 69), (38, -2400), (53, 0)]  # loop, root key, 250 ms release, sample
    pdta = [
        (
            b"phdr",
            struct.pack("<20sHHHIII", _sf2_name("Sine"), 0, 0, 0, 0, 0, 0)
            + struct.pack("<20sHHHIII", _sf2_name("EOP"), 0, 0, 1, 0, 0, 0),
        ),
        (b"pbag", struct.pack("<HHHH", 0, 0, 1, 0)),
        (b"pmod", bytes(10)),
        (b"pgen", struct.pack("<HhHh", 41, 0, 0, 0)),  # the zone's instrument: 0
        (
            b"inst",
            struct.pack("<20sH", _sf2_name("Sine"), 0) + struct.pack("<20sH", _sf2_name("EOI"), 1),
        ),
        (b"ibag", struct.pack("<HHHH", 0, 0, len(generators), 0)),
        (b"imod", bytes(10)),
        (b"igen", b"".join(struct.pack("<Hh", op, amount) for op, amount in generators) + bytes(4)),
        (
            b"shdr",
            struct.pack(
                "<20sIIIIIBbHH",
                _sf2_name("sine"),
                0,
                frames,
                SINE_PERIOD * 10,
                SINE_PERIOD * 400,
                RATE,
                69,
                0,
                0,
                1,
            )
            + struct.pack("<20sIIIIIBbHH", _sf2_name("EOS"), 0, 0, 0, 0, 0, 0, 0, 0, 0),
        ),
    ]
    body = b"sfbk" + b"".join(
        [
            _riff_list(
                b"INFO",
                _chunk(b"ifil", struct.pack("<HH", 2, 1)),
                _chunk(b"isng", b"EMU8000\0"),
                _chunk(b"INAM", b"Sine test\0"),
            ),
            _riff_list(b"sdta", _chunk(b"smpl", samples)),
            _riff_list(b"pdta", *(_chunk(tag, data) for tag, data in pdta)),
        ]
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.fixture
def sine_font(tmp_path: Path) -> Path:
    # A new file per test: a fresh cache key, so cache counts start from zero for it.
    return write_sine_soundfont(tmp_path / "sine.sf2")


def write_midi(path: Path, *instruments: pretty_midi.Instrument) -> Path:
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    midi.instruments.extend(instruments)
    midi.write(str(path))
    return path


def instrument(
    notes: list[tuple[int, float, float]],
    program: int = 0,
    velocity: int = 100,
    is_drum: bool = False,
) -> pretty_midi.Instrument:
    """notes: (pitch, start s, end s)."""
    track = pretty_midi.Instrument(program=program, is_drum=is_drum)
    track.notes.extend(pretty_midi.Note(velocity, pitch, start, end) for pitch, start, end in notes)
    return track


def phrase(offset: int = 0) -> list[tuple[int, float, float]]:
    """Two seconds of a C-major broken chord and a final chord."""
    notes = [
        (60 + offset + step, 0.25 * i, 0.25 * i + 0.3) for i, step in enumerate([0, 4, 7, 12, 7, 4])
    ]
    return notes + [(pitch + offset, 1.5, 2.0) for pitch in (48, 55, 64)]


def dominant_frequency(
    audio: np.ndarray, start_s: float = 0.1, end_s: float = 0.6, rate: int = RATE
) -> float:
    """Peak of the zero-padded Hann spectrum of the mono mix, refined by parabolic fit."""
    mono = audio[int(start_s * rate) : int(end_s * rate)].mean(axis=1)
    size = 8 * len(mono)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono)), size))
    k = int(np.argmax(spectrum))
    left, centre, right = np.log(spectrum[k - 1 : k + 2])
    return (k + 0.5 * (left - right) / (left - 2 * centre + right)) * rate / size


def assert_same_render(first: np.ndarray, second: np.ndarray) -> None:
    """Equal up to FluidSynth's dither (and the odd voice ramping from its previous state)."""
    assert abs(len(first) - len(second)) < 4096  # the trim point may move with the dither
    frames = min(len(first), len(second))
    difference = first[:frames] - second[:frames]
    assert np.sqrt(np.mean(np.square(difference))) < 1e-4
    assert np.abs(difference).max() < 5e-3


def rms_db(audio: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(audio, dtype=np.float64)))


# --------------------------------------------------------------------------------------------
# Output format and content


def test_render_gives_stereo_float32_that_is_audible_and_not_mono(tmp_path: Path) -> None:
    midi = write_midi(tmp_path / "piano.mid", instrument(phrase()))
    audio = render_midi(midi)
    assert audio.dtype == np.float32 and audio.ndim == 2 and audio.shape[1] == 2
    assert 2.0 * RATE < audio.shape[0] <= (2.0 + RenderParams().tail_seconds) * RATE + 4096
    assert -40 < 20 * np.log10(np.abs(audio).max()) < 0
    assert not np.array_equal(audio[:, 0], audio[:, 1])  # stereo reverb, not duplicated mono


def test_pan_controller_moves_sound_to_one_channel(tmp_path: Path) -> None:
    track = instrument(phrase())
    track.control_changes.append(pretty_midi.ControlChange(10, 0, 0.0))  # pan hard left
    audio = render_midi(write_midi(tmp_path / "left.mid", track))
    assert rms_db(audio[:, 0]) - rms_db(audio[:, 1]) > 10


def test_sample_rate_is_a_parameter(tmp_path: Path, sine_font: Path) -> None:
    midi = write_midi(tmp_path / "a4.mid", instrument([(69, 0.0, 1.0)]))
    audio = render_midi(midi, sine_font, RenderParams(sample_rate=22050, tail_seconds=0.0))
    assert abs(audio.shape[0] - 22050) < 0.05 * 22050
    assert dominant_frequency(audio, rate=22050) == pytest.approx(441.0, rel=0.002)


KEEP_UNPITCHED = RenderParams(keep_unpitched=True)


def test_drum_only_midi_is_refused_unless_kept_then_it_renders_energy(tmp_path: Path) -> None:
    hits = [(pitch, 0.25 * i, 0.25 * i + 0.1) for i, pitch in enumerate([36, 42, 38, 42] * 3)]
    drums = write_midi(tmp_path / "drums.mid", instrument(hits[:8], is_drum=True), instrument(hits[8:], is_drum=True))
    with pytest.raises(MidiHasNoPitchedNotes) as refused:
        render_midi(drums)
    assert str(refused.value) == (
        f"{drums}: only drum tracks (MIDI channel 10): 12 notes in 2 tracks and no pitched note; "
        "--keep-unpitched (keep_unpitched) renders such files"
    )
    assert rms_db(render_midi(drums, params=KEEP_UNPITCHED)) > -45
    # One pitched note among the drums: a pitched file, rendered as before.
    mixed = write_midi(tmp_path / "mixed.mid", instrument(hits, is_drum=True), instrument([(60, 0.0, 0.5)]))
    assert rms_db(render_midi(mixed)) > -45


def test_drums_without_a_kit_in_the_soundfont_are_silent_not_an_error(
    tmp_path: Path, sine_font: Path
) -> None:
    hits = [(36, 0.0, 0.1), (38, 0.5, 0.6)]
    drums_only = write_midi(tmp_path / "drums.mid", instrument(hits, is_drum=True))
    with pytest.raises(SilentRender, match="never reaches"):
        render_midi(drums_only, sine_font, KEEP_UNPITCHED)
    both = write_midi(tmp_path / "both.mid", instrument(hits, is_drum=True), instrument(phrase()))
    assert rms_db(render_midi(both, sine_font)) > -40


def test_two_soundfonts_give_different_audio(tmp_path: Path, sine_font: Path) -> None:
    midi = write_midi(tmp_path / "a4.mid", instrument([(69, 0.0, 1.0)]))
    general_midi = render_midi(midi, default_soundfont(), RenderParams(tail_seconds=0.0))
    sine = render_midi(midi, sine_font, RenderParams(tail_seconds=0.0))
    # The sine font is the sine it was built from; the piano is a different timbre.
    assert dominant_frequency(sine) == pytest.approx(441.0, rel=0.001)
    frames = min(len(general_midi), len(sine))

    def spectrum(audio: np.ndarray) -> np.ndarray:
        magnitude = np.abs(np.fft.rfft(audio[:frames].mean(axis=1)))
        return magnitude / np.linalg.norm(magnitude)

    assert float(spectrum(general_midi) @ spectrum(sine)) < 0.8


def test_transpose_shifts_the_measured_pitch(tmp_path: Path, sine_font: Path) -> None:
    midi = write_midi(tmp_path / "a4.mid", instrument([(69, 0.0, 1.0)]))
    for semitones in (-12, -5, 0, 7):
        audio = render_midi(midi, sine_font, transpose=semitones)
        assert dominant_frequency(audio) == pytest.approx(441.0 * 2 ** (semitones / 12), rel=0.002)


def test_transpose_equals_writing_the_shifted_notes(tmp_path: Path) -> None:
    transposed = render_midi(
        write_midi(tmp_path / "c.mid", instrument(phrase())), transpose=3
    )
    written = render_midi(write_midi(tmp_path / "eb.mid", instrument(phrase(offset=3))))
    assert_same_render(transposed, written)


def test_transpose_drops_notes_pushed_out_of_midi_range(tmp_path: Path) -> None:
    midi = write_midi(tmp_path / "high.mid", instrument([(120, 0.0, 0.5)]))
    with pytest.raises(MidiHasNoNotes, match="transposing by 12"):
        render_midi(midi, transpose=12)


def test_transpose_leaves_drum_keys_alone(tmp_path: Path) -> None:
    hits = [(38, 0.25 * i, 0.25 * i + 0.1) for i in range(6)]
    midi = write_midi(tmp_path / "snare.mid", instrument(hits, is_drum=True))
    plain = render_midi(midi, params=KEEP_UNPITCHED)
    transposed = render_midi(midi, params=KEEP_UNPITCHED, transpose=5)
    assert_same_render(plain, transposed)


def test_velocity_scale_changes_level(tmp_path: Path) -> None:
    midi = write_midi(tmp_path / "piano.mid", instrument(phrase(), velocity=100))
    full = render_midi(midi)
    soft = render_midi(midi, params=RenderParams(velocity_scale=0.4))
    assert rms_db(full) - rms_db(soft) > 4


def test_force_piano_plays_other_programs_as_piano(tmp_path: Path) -> None:
    violin = write_midi(tmp_path / "violin.mid", instrument(phrase(), program=40))
    piano = write_midi(tmp_path / "piano.mid", instrument(phrase(), program=0))
    as_violin = render_midi(violin)
    forced = render_midi(violin, params=RenderParams(force_piano=True))
    as_piano = render_midi(piano)
    assert_same_render(forced, as_piano)
    frames = min(len(as_violin), len(forced))
    assert np.abs(forced[:frames] - as_violin[:frames]).max() > 0.3 * np.abs(as_piano).max()


def test_release_tail_is_kept_and_trailing_silence_trimmed(tmp_path: Path) -> None:
    track = instrument([(60, 0.0, 1.0)])
    # A pedal event long after the music would otherwise stretch the file to 30 s.
    track.control_changes.append(pretty_midi.ControlChange(64, 0, 30.0))
    midi = write_midi(tmp_path / "note.mid", track)
    params = RenderParams()
    audio = render_midi(midi, params=params)
    threshold = 10 ** (params.silence_threshold_dbfs / 20)
    after_note_off = np.abs(audio[int(1.0 * RATE) :]).max(axis=1)
    assert (after_note_off >= threshold).sum() > 0.05 * RATE  # the release rings on
    assert audio.shape[0] < (1.0 + params.tail_seconds) * RATE + 4096
    assert np.abs(audio[-1]).max() >= threshold  # ends on the last audible frame
    short = render_midi(midi, params=RenderParams(tail_seconds=0.2))
    assert short.shape[0] <= int(1.2 * RATE) + 1


@pytest.mark.parametrize(
    "bad",
    [
        {"transpose": [1.5]},
        {"transpose": [128]},
        {"velocity_scale": 0},
        {"sample_rate": 1000},
        {"gain": 0},
        {"tail_seconds": -1},
        {"silence_threshold_dbfs": 3},
    ],
)
def test_bad_render_params_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError, match=next(iter(bad))):
        RenderParams(**bad)


def test_a_synth_refuses_params_of_another_rate(tmp_path: Path) -> None:
    synth = get_synth(default_soundfont())
    midi = pretty_midi.PrettyMIDI(str(write_midi(tmp_path / "a.mid", instrument(phrase()))))
    with pytest.raises(InvalidRenderParams, match="22050 Hz"):
        synth.render(midi, RenderParams(sample_rate=22050))


def test_render_variants_are_every_soundfont_and_transposition(sine_font: Path) -> None:
    general_midi = default_soundfont()
    variants = list(render_variants([general_midi, sine_font], [0, -2, 3]))
    assert [(v.soundfont, v.transpose) for v in variants] == [
        (general_midi, 0),
        (general_midi, -2),
        (general_midi, 3),
        (sine_font, 0),
        (sine_font, -2),
        (sine_font, 3),
    ]


def test_soundfont_digest_is_the_sha256_of_the_file(sine_font: Path) -> None:
    assert soundfont_digest(sine_font) == hashlib.sha256(sine_font.read_bytes()).hexdigest()
    assert soundfont_digest(sine_font) != soundfont_digest(default_soundfont())


def test_default_soundfont_is_pretty_midis_general_midi_font() -> None:
    path = default_soundfont()
    assert path.name == "TimGM6mb.sf2" and path.stat().st_size > 1_000_000


# --------------------------------------------------------------------------------------------
# Channels


def test_up_to_fifteen_melodic_tracks_get_a_channel_each_and_drums_channel_nine() -> None:
    tracks = [instrument([(60, 0, 1)], program=p) for p in (0, 0, 40)]
    tracks.append(instrument([(36, 0, 1)], program=25, is_drum=True))
    plans = plan_channels(tracks, RenderParams())
    assert [p.channel for p in plans[:3]] == [0, 1, 2]
    assert [p.program for p in plans[:3]] == [0, 0, 40]
    assert (plans[3].channel, plans[3].bank, plans[3].program) == (9, 128, 25)
    forced = plan_channels(tracks, RenderParams(force_piano=True))
    assert [p.program for p in forced] == [0, 0, 0, 25]  # drums keep their kit


def test_more_tracks_than_channels_share_by_program_then_by_family() -> None:
    programs = list(range(0, 120, 8))  # 15 programs, one per General MIDI family 0..14
    tracks = [instrument([(60, 0, 1)] * (40 - i), program=p) for i, p in enumerate(programs)]
    tracks.append(instrument([(60, 0, 1)], program=8))  # a program that has a channel
    tracks.append(instrument([(60, 0, 1)], program=3))  # 16th program, piano family
    tracks.append(instrument([(60, 0, 1)], program=121))  # 17th program, family 15: none kept
    plans = plan_channels(tracks, RenderParams())
    channel_of_program = {p.program: p.channel for p in plans[:15]}
    assert sorted(channel_of_program.values()) == [c for c in range(16) if c != 9]
    assert plans[15].channel == channel_of_program[8]
    assert plans[16].channel == channel_of_program[0]  # program 3 is a piano: joins program 0
    assert plans[17].channel == channel_of_program[0]  # no family: the busiest channel
    assert plans[16].program == 0  # the shared channel plays its own program


def test_events_on_sixteen_tracks_all_sound(tmp_path: Path) -> None:
    tracks = [instrument([(48 + 2 * i, 0.1 * i, 0.1 * i + 0.5)], program=i % 8) for i in range(18)]
    audio = render_midi(write_midi(tmp_path / "many.mid", *tracks))
    assert rms_db(audio) > -45


# --------------------------------------------------------------------------------------------
# Errors


def test_missing_soundfont_names_the_path(tmp_path: Path) -> None:
    midi = write_midi(tmp_path / "piano.mid", instrument(phrase()))
    missing = tmp_path / "nowhere" / "font.sf2"
    with pytest.raises(SoundfontNotFound, match=str(missing)):
        render_midi(midi, missing)


def test_missing_midi_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(MidiFileNotFound, match="absent.mid"):
        render_midi(tmp_path / "absent.mid")


def test_corrupt_midi_bytes_name_the_file_and_the_parser_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(
        b"MThd\x00\x00\x00\x06"
        + bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8))
    )
    with pytest.raises(MidiParseError, match=r"corrupt\.mid: not a readable MIDI file \(\w+"):
        render_midi(corrupt)
    not_midi = tmp_path / "text.mid"
    not_midi.write_text("certainly not a MIDI file")
    with pytest.raises(MidiParseError, match="text.mid"):
        render_midi(not_midi)


def test_truncated_midi_is_a_parse_error(tmp_path: Path) -> None:
    whole = write_midi(tmp_path / "whole.mid", instrument(phrase()))
    truncated = tmp_path / "truncated.mid"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(MidiParseError, match="truncated.mid"):
        render_midi(truncated)


def test_midi_without_notes_is_refused(tmp_path: Path) -> None:
    empty = write_midi(tmp_path / "empty.mid", pretty_midi.Instrument(program=0))
    with pytest.raises(MidiHasNoNotes, match="empty.mid"):
        render_midi(empty)


def test_too_long_midi_is_refused_before_rendering(tmp_path: Path, sine_font: Path) -> None:
    long_midi = write_midi(
        tmp_path / "long.mid", instrument([(60, 0.0, 1.0), (62, 1499.0, 1500.0)])
    )
    loads_before = cache_stats.loads
    with pytest.raises(MidiTooLong, match=r"1500\.0 s \(25\.0 min\)"):
        render_midi(long_midi, sine_font)
    assert cache_stats.loads == loads_before  # no synth was even created
    with pytest.raises(MidiTooLong, match="limit of 60 s"):
        render_midi(
            write_midi(tmp_path / "minute.mid", instrument([(60, 0.0, 90.0)])),
            params=RenderParams(max_midi_minutes=1),
        )


def test_missing_libfluidsynth_names_the_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sine_font: Path
) -> None:
    # What `import fluidsynth` raises when libfluidsynth.so is absent (a None entry in
    # sys.modules makes the import raise ImportError, as pyfluidsynth's own import does then).
    monkeypatch.setitem(sys.modules, "fluidsynth", None)
    midi = write_midi(tmp_path / "piano.mid", instrument(phrase()))
    with pytest.raises(FluidSynthUnavailable, match="apt-get install libfluidsynth3"):
        render_midi(midi, sine_font)


def test_the_render_stage_records_each_bad_midi_file_under_its_reason(
    tmp_path: Path, sine_font: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-file render errors become the item's recorded failure reason; the rest renders."""
    folder = tmp_path / "midi"
    folder.mkdir()
    write_midi(folder / "good.mid", instrument(phrase()))
    (folder / "corrupt.mid").write_text("certainly not a MIDI file")  # MidiParseError
    write_midi(folder / "empty.mid", pretty_midi.Instrument(program=0))  # MidiHasNoNotes
    write_midi(folder / "long.mid", instrument([(60, 0.0, 90.0)]))  # MidiTooLong (limit below)
    drums = instrument([(36, 0.0, 0.1), (38, 0.5, 0.6)], is_drum=True)
    write_midi(folder / "drums.mid", drums)  # SilentRender (kept below): the sine font has no drum kit
    write_midi(folder / "vanished.mid", instrument([(62, 0.0, 0.5)]))  # MidiFileNotFound
    expected = {
        "good.mid": None,
        "corrupt.mid": "corrupt_midi",
        "empty.mid": "no_notes",
        "long.mid": "too_long",
        "drums.mid": "silent",
        "vanished.mid": "missing_file",
    }
    files = resolve_sources([str(folder)], MIDI_EXTENSIONS).files
    items = render.plan_render_items(files, RenderParams(soundfonts=[str(sine_font)]))
    assert len(items) == len(expected)
    (folder / "vanished.mid").unlink()  # gone between planning and rendering
    store = ArtifactStore(tmp_path / "store")
    # The task's own body, without a Prefect run around it (its logger is the run's logger).
    monkeypatch.setattr(render, "get_run_logger", lambda: logging.getLogger("test-render"))
    outcomes = render.render_batch.fn(items, store.root, max_duration_s=60.0, keep_unpitched=True)

    assert {Path(o.source["path"]).name: o.reason for o in outcomes} == expected
    for outcome in outcomes:
        name = Path(outcome.source["path"]).name
        if expected[name] is None:
            assert outcome.status == "computed" and store.has(outcome.key)
            continue
        assert outcome.status == "failed" and name in outcome.message, outcome
        recorded = store.recorded_failure(outcome.key)  # a re-run reports it without retrying
        assert recorded is not None and (recorded["stage"], recorded["reason"]) == (
            "render",
            expected[name],
        )


def test_the_render_stage_drops_drum_only_files_without_remembering_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drum-only file fails as no_pitched_notes, not recorded in the store (keep_unpitched is
    outside the key), so a run that keeps such files renders it under the same key."""
    folder = tmp_path / "midi"
    folder.mkdir()
    hits = [(36 + i % 3, 0.25 * i, 0.25 * i + 0.1) for i in range(8)]
    write_midi(folder / "drums.mid", instrument(hits, is_drum=True))
    write_midi(folder / "mixed.mid", instrument(hits, is_drum=True), instrument(phrase()))
    files = resolve_sources([str(folder)], MIDI_EXTENSIONS).files
    items = render.plan_render_items(files, RenderParams())
    assert [item.key for item in items] == [item.key for item in render.plan_render_items(files, KEEP_UNPITCHED)]
    store = ArtifactStore(tmp_path / "store")
    monkeypatch.setattr(render, "get_run_logger", lambda: logging.getLogger("test-render"))

    dropped, mixed = render.render_batch.fn(items, store.root, max_duration_s=60.0)
    assert (dropped.status, dropped.reason, mixed.status) == ("failed", "no_pitched_notes", "computed")
    assert dropped.message.startswith(f"{folder / 'drums.mid'}: only drum tracks (MIDI channel 10): 8 notes")
    assert store.recorded_failure(dropped.key) is None

    kept, _ = render.render_batch.fn(items, store.root, max_duration_s=60.0, keep_unpitched=True)
    assert kept.status == "computed" and store.has(kept.key) and kept.stats["notes"] == 8


@pytest.mark.parametrize(
    ("problem", "options", "named"),
    [
        ("missing soundfont", ["--soundfonts", "{tmp}/nowhere/grand.sf2"], "{tmp}/nowhere/grand.sf2"),
        ("no libfluidsynth", [], "apt-get install libfluidsynth3"),
        ("transposition out of range", ["--transpose", "200"], "less than or equal to 127"),
    ],
)
def test_render_errors_that_stop_a_midi_run_are_one_line_from_the_cli(
    problem: str, options: list[str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SoundfontNotFound and FluidSynthUnavailable come out of the flow's planning, a
    transposition out of range out of RenderParams' validation, before anything renders:
    `musika-piano` prints one line naming the problem and exits 2, no traceback."""
    import flows.midi_dataset

    if problem == "no libfluidsynth":  # what `import fluidsynth` does without libfluidsynth.so
        monkeypatch.setitem(sys.modules, "fluidsynth", None)
    # The flow's own body, without Prefect's engine around it: the error is raised by its planning.
    flow = flows.midi_dataset.build_midi_dataset
    monkeypatch.setattr(flows.midi_dataset, "build_midi_dataset", flow.fn)
    monkeypatch.setattr(flows.midi_dataset, "get_run_logger", lambda: logging.getLogger("test"))
    (tmp_path / "midi").mkdir()
    write_midi(tmp_path / "midi" / "piano.mid", instrument(phrase()))
    store = tmp_path / "store"
    argv = [option.format(tmp=tmp_path) for option in options]
    code, out, err = run_cli(
        "--store", str(store), "dataset", "midi", str(tmp_path / "midi"), "--name", "x", *argv
    )
    assert (code, out) == (2, ""), err
    assert err.startswith("musika-piano: ") and err.count("\n") == 1, err
    assert named.format(tmp=tmp_path) in err
    assert ArtifactStore(store).list_datasets() == []


def test_a_file_that_is_not_a_soundfont_is_a_load_error(tmp_path: Path) -> None:
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF\x04\x00\x00\x00sfbk")
    midi = write_midi(tmp_path / "piano.mid", instrument(phrase()))
    with pytest.raises(SoundfontLoadError, match="fake.sf2"):
        render_midi(midi, fake)


# --------------------------------------------------------------------------------------------
# One soundfont load per worker


def test_soundfont_is_loaded_once_across_many_renders(tmp_path: Path, sine_font: Path) -> None:
    files = [write_midi(tmp_path / f"{i}.mid", instrument([(60 + i, 0.0, 0.5)])) for i in range(4)]
    loads_before, hits_before = cache_stats.loads, cache_stats.hits
    for path in files:
        render_midi(path, sine_font)
    synth = get_synth(sine_font)
    assert cache_stats.loads - loads_before == 1
    assert cache_stats.hits - hits_before == 4  # three renders and the lookup above
    assert synth.renders == 4 and synth.soundfont_path == sine_font.resolve()


def test_threads_render_concurrently_with_a_synth_each(tmp_path: Path, sine_font: Path) -> None:
    midi = write_midi(tmp_path / "piano.mid", instrument(phrase()))
    loads_before = cache_stats.loads
    results: dict[int, np.ndarray] = {}

    def work(slot: int) -> None:
        results[slot] = render_midi(midi, sine_font)

    workers = [threading.Thread(target=work, args=(slot,)) for slot in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert cache_stats.loads - loads_before == 2  # one synth per thread
    assert_same_render(results[0], results[1])
    assert_same_render(results[0], render_midi(midi, sine_font))


def test_a_reused_synth_leaves_no_trace_of_the_previous_file(tmp_path: Path) -> None:
    loud = instrument([(p, 0.0, 2.0) for p in (36, 48, 55, 60, 64, 67, 72)], velocity=127)
    loud.control_changes.append(pretty_midi.ControlChange(64, 127, 0.0))
    loud.pitch_bends.append(pretty_midi.PitchBend(4000, 0.5))
    quiet = write_midi(tmp_path / "quiet.mid", instrument([(72, 0.0, 0.5)], velocity=40))
    fresh = SoundfontSynth(default_soundfont())
    try:
        expected = fresh.render(pretty_midi.PrettyMIDI(str(quiet)), RenderParams())
    finally:
        fresh.close()
    render_midi(write_midi(tmp_path / "loud.mid", loud))
    after_loud = render_midi(quiet)
    assert_same_render(after_loud, expected)


# --------------------------------------------------------------------------------------------
# The demo MIDI sets


def test_demo_sets_are_what_the_script_writes(tmp_path: Path) -> None:
    sys.path.insert(0, str(DEMO))
    try:
        import make_demo_midi
    finally:
        sys.path.remove(str(DEMO))
    make_demo_midi.main(["--out", str(tmp_path)])
    for folder, count in (("midi", 8), ("midi-b", 4)):
        written = sorted(p.name for p in (tmp_path / folder).glob("*.mid"))
        committed = sorted(p.name for p in (DEMO / folder).glob("*.mid"))
        assert written == committed and len(written) == count
        for name in written:
            assert (tmp_path / folder / name).read_bytes() == (DEMO / folder / name).read_bytes()
            midi = pretty_midi.PrettyMIDI(str(DEMO / folder / name))
            assert 20.0 <= midi.get_end_time() <= 40.0
            assert all(not track.is_drum and track.program == 0 for track in midi.instruments)


def test_a_demo_piece_renders(tmp_path: Path) -> None:
    audio = render_midi(DEMO / "midi" / "waltz_d_major.mid")
    assert 25 * RATE < audio.shape[0] < 30 * RATE
    assert rms_db(audio) > -45
