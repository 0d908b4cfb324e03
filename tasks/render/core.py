"""MIDI -> stereo audio through a soundfont, driving FluidSynth directly.

Pure functions and one synth object, no Prefect and no store. ``render_midi`` is the entry
point; it takes a synth from a per-thread cache so that a worker loads each soundfont once and
renders many files with it (``PrettyMIDI.fluidsynth()`` reloads the soundfont per instrument
and returns mono, which is why it is not used).

Timing: every note on/off, control change and pitch bend is placed at its exact sample offset
(the synth is advanced by the exact number of samples between events). FluidSynth itself
applies events at the start of its next 64-sample block, so onsets are quantised to 64
samples (1.45 ms at 44.1 kHz).

Reproducibility: a synth is warmed up once when created and reset between files (voices off,
controllers and programs reset, reverb and chorus re-initialised, block phase realigned), so a
file renders the same whichever files the same synth rendered before: equal up to FluidSynth's
+-2 LSB dither, except that a voice whose previous note was panned differently ramps from that
state over its first 64-sample block (a few dozen samples per render differ by about -55 dBFS).
(Re-initialising the effects uses ``fluid_synth_set_sample_rate``; should a future libfluidsynth
drop it, the reverb and chorus modulation phase would carry over from file to file.)
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tasks.render.params import DEFAULT_GAIN, DEFAULT_SAMPLE_RATE, RenderParams

DRUM_CHANNEL = 9
DRUM_BANK = 128
MIDI_CHANNELS = 16
MELODIC_CHANNELS = tuple(c for c in range(MIDI_CHANNELS) if c != DRUM_CHANNEL)
FLUID_BLOCK = 64
INT16_SCALE = 32768.0
TAIL_CHUNK_SAMPLES = 4096
SYNTH_CACHE_SIZE = 4
MAX_SILENCING_BLOCKS = 1000

# Event kinds, in the order they are applied when they fall on the same sample: releases first
# (a re-struck key is not cut by its own earlier note-off), controllers and bends before the
# note-ons they should shape.
_NOTE_OFF, _CONTROL, _BEND, _NOTE_ON = 0, 1, 2, 3


class RenderError(Exception):
    """Base class of every error of the render stage."""


class SoundfontNotFound(RenderError):
    pass


class SoundfontLoadError(RenderError):
    """The file exists but FluidSynth cannot load it, or it lacks a needed preset."""


class FluidSynthUnavailable(RenderError):
    pass


class MidiFileNotFound(RenderError):
    pass


class MidiParseError(RenderError):
    pass


class MidiHasNoNotes(RenderError):
    pass


class MidiHasNoPitchedNotes(RenderError):
    """Every note is on a drum track (MIDI channel 10): nothing to hear as piano."""


class MidiTooLong(RenderError):
    pass


class SilentRender(RenderError):
    pass


class InvalidRenderParams(RenderError, ValueError):
    """Parameters a synth cannot use (another sample rate than its own); values out of bounds
    are refused by `RenderParams` itself."""


@dataclass(frozen=True)
class RenderVariant:
    """One (soundfont, transposition) combination to render every file of a dataset with."""

    soundfont: Path
    transpose: int


def render_variants(
    soundfonts: Sequence[str | Path], transpositions: Sequence[int] = (0,)
) -> Iterator[RenderVariant]:
    """Yield every (soundfont, transposition) combination, soundfont-major.

    Soundfont-major order lets a worker finish with one soundfont before the next is needed,
    so the synth cache holds one soundfont at a time.
    """
    for soundfont in soundfonts:
        for semitones in transpositions:
            yield RenderVariant(Path(soundfont), int(semitones))


def default_soundfont() -> Path:
    """The General MIDI soundfont shipped inside the pretty_midi package (TimGM6mb, GPL-2)."""
    import pretty_midi

    path = Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise SoundfontNotFound(f"pretty_midi's bundled soundfont is missing: {path}")
    return path


def existing_soundfont(soundfont_path: str | Path) -> Path:
    path = Path(soundfont_path).expanduser()
    if not path.is_file():
        raise SoundfontNotFound(f"soundfont not found: {path}")
    return path.resolve()


def soundfont_digest(soundfont_path: str | Path) -> str:
    """SHA-256 of the soundfont's bytes (memoised per path, size and mtime)."""
    path = existing_soundfont(soundfont_path)
    stat = path.stat()
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _import_fluidsynth() -> ModuleType:
    try:
        import fluidsynth
    except (ImportError, OSError) as error:
        raise FluidSynthUnavailable(
            "the FluidSynth library (libfluidsynth) could not be loaded "
            f"({type(error).__name__}: {error}); the Python package pyfluidsynth is only a "
            "wrapper: install the library with: apt-get install libfluidsynth3"
        ) from error
    return fluidsynth


def _fluid_set_sample_rate(fluidsynth: ModuleType) -> Callable[[int, float], None] | None:
    """libfluidsynth's ``fluid_synth_set_sample_rate`` (not wrapped by pyfluidsynth), if present."""
    try:
        function = ctypes.CDLL(fluidsynth.lib).fluid_synth_set_sample_rate
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_float]
    function.restype = None
    return function


# --------------------------------------------------------------------------------------------
# MIDI -> event list


@dataclass(frozen=True)
class ChannelPlan:
    channel: int
    bank: int
    program: int
    is_drum: bool


def _effective_program(instrument: Any, params: RenderParams) -> int:
    if params.force_piano and not instrument.is_drum:
        return 0
    return int(instrument.program)


def plan_channels(instruments: Sequence[Any], params: RenderParams) -> list[ChannelPlan]:
    """Map pretty_midi instruments to the 16 MIDI channels, one plan per instrument.

    - Drum instruments all play on channel 9 with bank 128 (the kit of the first drum track).
    - Up to 15 melodic instruments get a channel each, so their controllers stay separate.
    - More than 15: instruments with the same program share that program's channel (their
      controllers and bends then act on each other). If there are more than 15 distinct
      programs, the 15 with the most notes keep a channel and each remaining program plays on
      the channel of a kept program of the same General MIDI family (programs // 8, e.g. all
      pianos), or else on the channel with the most notes.
    """
    drum_program = next((int(i.program) for i in instruments if i.is_drum), 0)
    melodic = [index for index, instrument in enumerate(instruments) if not instrument.is_drum]
    plans: dict[int, ChannelPlan] = {
        index: ChannelPlan(DRUM_CHANNEL, DRUM_BANK, drum_program, True)
        for index, instrument in enumerate(instruments)
        if instrument.is_drum
    }
    if len(melodic) <= len(MELODIC_CHANNELS):
        for channel, index in zip(MELODIC_CHANNELS, melodic):
            program = _effective_program(instruments[index], params)
            plans[index] = ChannelPlan(channel, 0, program, False)
        return [plans[index] for index in range(len(instruments))]

    notes_per_program: dict[int, int] = {}
    for index in melodic:
        program = _effective_program(instruments[index], params)
        notes_per_program[program] = notes_per_program.get(program, 0) + len(
            instruments[index].notes
        )
    ranked = sorted(notes_per_program, key=lambda p: (-notes_per_program[p], p))
    kept = ranked[: len(MELODIC_CHANNELS)]
    channel_of = {program: channel for channel, program in zip(MELODIC_CHANNELS, kept)}
    for program in ranked[len(MELODIC_CHANNELS) :]:
        same_family = [p for p in kept if p // 8 == program // 8]
        channel_of[program] = channel_of[same_family[0] if same_family else kept[0]]
    program_on = {channel: program for program, channel in channel_of.items() if program in kept}
    for index in melodic:
        channel = channel_of[_effective_program(instruments[index], params)]
        plans[index] = ChannelPlan(channel, 0, program_on[channel], False)
    return [plans[index] for index in range(len(instruments))]


@dataclass(frozen=True)
class _Score:
    """Sorted events as parallel columns: sample, kind, channel, data1, data2."""

    events: np.ndarray  # (n, 5) int64
    channels: tuple[ChannelPlan, ...]
    music_end_sample: int  # sample of the last note-off


def _build_score(midi: Any, params: RenderParams, transpose: int, midi_path: Path) -> _Score:
    plans = plan_channels(midi.instruments, params)
    rate = params.sample_rate
    rows: list[tuple[int, int, int, int, int]] = []
    for instrument, plan in zip(midi.instruments, plans):
        channel = plan.channel
        for note in instrument.notes:
            pitch = int(note.pitch) + (0 if instrument.is_drum else transpose)
            if not 0 <= pitch <= 127:
                continue
            velocity = int(min(127, max(1, round(note.velocity * params.velocity_scale))))
            on = round(note.start * rate)
            off = max(round(note.end * rate), on + 1)
            rows.append((on, _NOTE_ON, channel, pitch, velocity))
            rows.append((off, _NOTE_OFF, channel, pitch, 0))
        for change in instrument.control_changes:
            rows.append(
                (
                    round(change.time * rate),
                    _CONTROL,
                    channel,
                    int(change.number),
                    int(change.value),
                )
            )
        for bend in instrument.pitch_bends:
            rows.append((round(bend.time * rate), _BEND, channel, int(bend.pitch), 0))
    if not any(row[1] == _NOTE_ON for row in rows):
        detail = f" after transposing by {transpose} semitones" if transpose else ""
        raise MidiHasNoNotes(f"{midi_path}: MIDI has no playable notes{detail}")
    events = np.array(rows, dtype=np.int64)
    events = events[np.lexsort((events[:, 1], events[:, 0]))]
    note_offs = events[events[:, 1] == _NOTE_OFF]
    unique_channels = {plan.channel: plan for plan in plans}
    return _Score(events, tuple(unique_channels.values()), int(note_offs[:, 0].max()))


def load_midi(midi_path: str | Path, max_duration_s: float, keep_unpitched: bool = False) -> Any:
    """Parse a MIDI file with pretty_midi and check it has notes, pitched ones unless
    `keep_unpitched`, and a bounded duration.

    Raises MidiFileNotFound, MidiParseError (naming the file and the parser's error),
    MidiHasNoNotes, MidiHasNoPitchedNotes or MidiTooLong (checked here, before anything is
    rendered).
    """
    import pretty_midi

    path = Path(midi_path)
    if not path.is_file():
        raise MidiFileNotFound(f"MIDI file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretty_midi warns about meta events on other tracks
            midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as error:  # mido/pretty_midi raise many types for broken bytes
        raise MidiParseError(
            f"{path}: not a readable MIDI file ({type(error).__name__}: {error})"
        ) from error
    note_ends = [note.end for instrument in midi.instruments for note in instrument.notes]
    if not note_ends:
        raise MidiHasNoNotes(f"{path}: MIDI contains no notes")
    drum_tracks = [instrument for instrument in midi.instruments if instrument.notes and instrument.is_drum]
    if not keep_unpitched and sum(len(track.notes) for track in drum_tracks) == len(note_ends):
        raise MidiHasNoPitchedNotes(
            f"{path}: only drum tracks (MIDI channel 10): {len(note_ends)} notes in "
            f"{len(drum_tracks)} track{'s' if len(drum_tracks) > 1 else ''} and no pitched note; "
            "--keep-unpitched (keep_unpitched) renders such files"
        )
    duration = max(note_ends)
    if duration > max_duration_s:
        raise MidiTooLong(
            f"{path}: MIDI lasts {duration:.1f} s ({duration / 60:.1f} min), over the limit "
            f"of {max_duration_s:.0f} s"
        )
    return midi


# --------------------------------------------------------------------------------------------
# The synth


class SoundfontSynth:
    """A FluidSynth instance with one soundfont loaded, rendering many MIDI files in turn.

    Not thread-safe: use one per thread (``get_synth`` does that).
    """

    def __init__(self, soundfont_path: str | Path, sample_rate: int = DEFAULT_SAMPLE_RATE) -> None:
        fluidsynth = _import_fluidsynth()
        self.soundfont_path = existing_soundfont(soundfont_path)
        self.sample_rate = int(sample_rate)
        self.renders = 0
        self._synth = fluidsynth.Synth(gain=DEFAULT_GAIN, samplerate=float(self.sample_rate))
        self._sfid = self._synth.sfload(str(self.soundfont_path))
        if self._sfid < 0:
            self._synth.delete()
            raise SoundfontLoadError(f"FluidSynth cannot load soundfont {self.soundfont_path}")
        # Frees the C synth when this object goes away, e.g. with the thread that cached it.
        self._delete = weakref.finalize(self, self._synth.delete)
        self._samples_written = 0
        self._reinit_effects = _fluid_set_sample_rate(fluidsynth)
        self._warm_up()

    def close(self) -> None:
        self._delete()

    def has_preset(self, bank: int, program: int) -> bool:
        return self._synth.sfpreset_name(self._sfid, bank, program) is not None

    def render(
        self, midi: Any, params: RenderParams, midi_path: str | Path = "<midi>", transpose: int = 0
    ) -> np.ndarray:
        """Render a parsed PrettyMIDI, shifted by ``transpose`` semitones, to (n, 2) float32 in
        [-1, 1] at ``self.sample_rate``."""
        if params.sample_rate != self.sample_rate:
            raise InvalidRenderParams(
                f"this synth runs at {self.sample_rate} Hz, params ask for {params.sample_rate} Hz"
            )
        score = _build_score(midi, params, transpose, Path(midi_path))
        self._reset()
        self._synth.setting("synth.gain", float(params.gain))
        for plan in score.channels:
            self._select(plan)

        tail_end = score.music_end_sample + round(params.tail_seconds * self.sample_rate)
        threshold = INT16_SCALE * 10.0 ** (params.silence_threshold_dbfs / 20.0)
        chunks: list[np.ndarray] = []
        cursor = 0
        for sample, kind, channel, data1, data2 in score.events.tolist():
            if sample > tail_end:
                break
            if sample > cursor:
                chunks.append(self._samples(sample - cursor))
                cursor = sample
            self._dispatch(kind, channel, data1, data2)
        while cursor < tail_end:
            chunk = self._samples(min(TAIL_CHUNK_SAMPLES, tail_end - cursor))
            chunks.append(chunk)
            cursor += chunk.shape[0]
            if (
                cursor > score.music_end_sample
                and np.abs(chunk.astype(np.int32)).max(initial=0) < threshold
            ):
                break
        self.renders += 1

        audio = np.concatenate(chunks) if chunks else np.zeros((0, 2), np.int16)
        end = _audible_end(audio, threshold)
        if end == 0:
            raise SilentRender(
                f"{midi_path}: rendered audio never reaches {params.silence_threshold_dbfs} dBFS "
                f"with soundfont {self.soundfont_path.name}"
            )
        return audio[:end].astype(np.float32) / np.float32(INT16_SCALE)

    def _samples(self, count: int) -> np.ndarray:
        self._samples_written += count
        return self._synth.get_samples(count).reshape(-1, 2)

    def _select(self, plan: ChannelPlan) -> None:
        if plan.is_drum:
            candidates = [(DRUM_BANK, plan.program), (DRUM_BANK, 0)]
        else:
            candidates = [(0, plan.program), (0, 0)]
        for bank, program in candidates:
            if self.has_preset(bank, program):
                self._synth.program_select(plan.channel, self._sfid, bank, program)
                return
        if plan.is_drum:
            # No drum kit in this soundfont: leave the channel without a preset (drums silent)
            # rather than fail the whole file.
            self._synth.program_unset(plan.channel)
            return
        raise SoundfontLoadError(
            f"soundfont {self.soundfont_path} has neither program {plan.program} nor program 0 "
            "in bank 0"
        )

    def _dispatch(self, kind: int, channel: int, data1: int, data2: int) -> None:
        if kind == _NOTE_ON:
            self._synth.noteon(channel, data1, data2)
        elif kind == _NOTE_OFF:
            self._synth.noteoff(channel, data1)
        elif kind == _CONTROL:
            self._synth.cc(channel, data1, data2)
        else:
            self._synth.pitch_bend(channel, data1)

    def _warm_up(self) -> None:
        """Play and release a wide chord once, so the first file renders like every later one.

        FluidSynth's voices keep some state from their previous use; without this, the first
        file through a new synth differs from a re-render of it by up to ~-35 dB.
        """
        preset = next(
            (
                (bank, program)
                for bank in (0, DRUM_BANK)
                for program in range(128)
                if self.has_preset(bank, program)
            ),
            None,
        )
        if preset is None:
            return  # nothing to play; render() reports what the MIDI needs and lacks
        keys = range(24, 109, 6)
        self._synth.program_select(0, self._sfid, *preset)
        for key in keys:
            self._synth.noteon(0, key, 100)
        self._samples(8 * FLUID_BLOCK)
        for key in keys:
            self._synth.noteoff(0, key)
        self._samples(8 * FLUID_BLOCK)
        self._reset()

    def _reset(self) -> None:
        """Silence the previous file completely and start on a FluidSynth block boundary."""
        if self._samples_written == 0:
            return
        for channel in range(MIDI_CHANNELS):
            self._synth.all_sounds_off(channel)
        for _ in range(MAX_SILENCING_BLOCKS):  # voices die within a block or two of this
            if self._synth.get_active_voice_count() == 0:
                break
            self._samples(FLUID_BLOCK)
        self._synth.system_reset()  # resets controllers, programs and the reverb/chorus buffers
        if self._reinit_effects is not None:
            # Same rate: rebuilds reverb and chorus, whose modulators system_reset leaves running.
            self._reinit_effects(self._synth.synth, float(self.sample_rate))
        self._samples(FLUID_BLOCK + (-self._samples_written) % FLUID_BLOCK)


def _audible_end(audio: np.ndarray, threshold: float, block: int = 1 << 16) -> int:
    """One past the last frame reaching ``threshold`` (0 if none), scanning back from the end.

    The last audible frame is nearly always in the final block, so this rarely reads the whole
    render.
    """
    stop = audio.shape[0]
    while stop > 0:
        start = max(0, stop - block)
        loud = np.flatnonzero((np.abs(audio[start:stop].astype(np.int32)) >= threshold).any(axis=1))
        if loud.size:
            return start + int(loud[-1]) + 1
        stop = start
    return 0


@dataclass
class SynthCacheStats:
    loads: int = 0
    hits: int = 0


_local = threading.local()
_stats_lock = threading.Lock()
cache_stats = SynthCacheStats()


def _thread_cache() -> OrderedDict[tuple[str, int, int, int], SoundfontSynth]:
    cache = getattr(_local, "synths", None)
    if cache is None:
        cache = _local.synths = OrderedDict()
    return cache


def get_synth(soundfont_path: str | Path, sample_rate: int = DEFAULT_SAMPLE_RATE) -> SoundfontSynth:
    """The calling thread's synth for this soundfont and rate, loading the soundfont on first use.

    Keyed by the resolved path plus the file's size and mtime (a replaced file is reloaded);
    at most SYNTH_CACHE_SIZE soundfonts stay loaded per thread (least recently used goes).
    FluidSynth shares sample data between synths of one process, so a second thread's load of
    the same soundfont is cheap.
    """
    path = existing_soundfont(soundfont_path)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, int(sample_rate))
    cache = _thread_cache()
    synth = cache.get(key)
    if synth is not None:
        cache.move_to_end(key)
        with _stats_lock:
            cache_stats.hits += 1
        return synth
    synth = SoundfontSynth(path, sample_rate)
    cache[key] = synth
    with _stats_lock:
        cache_stats.loads += 1
    while len(cache) > SYNTH_CACHE_SIZE:
        _, evicted = cache.popitem(last=False)
        evicted.close()
    return synth


def clear_synth_cache() -> None:
    """Close the calling thread's synths (frees their soundfonts)."""
    cache = _thread_cache()
    while cache:
        _, synth = cache.popitem()
        synth.close()


def render_midi(
    midi_path: str | Path,
    soundfont_path: str | Path | None = None,
    params: RenderParams | None = None,
    *,
    transpose: int = 0,
) -> np.ndarray:
    """Render one MIDI file, shifted by ``transpose`` semitones, to (n, 2) float32 audio at
    ``params.sample_rate``.

    ``soundfont_path`` defaults to ``default_soundfont()``. MIDI longer than
    ``params.max_midi_minutes`` is rejected with MidiTooLong, MIDI with drum notes only (unless
    ``params.keep_unpitched``) with MidiHasNoPitchedNotes, before any rendering. Every failure
    is a RenderError subclass.
    """
    render_params = params or RenderParams()
    soundfont = existing_soundfont(soundfont_path or default_soundfont())
    midi = load_midi(midi_path, render_params.max_midi_minutes * 60.0, render_params.keep_unpitched)
    synth = get_synth(soundfont, render_params.sample_rate)
    return synth.render(midi, render_params, midi_path, transpose)
