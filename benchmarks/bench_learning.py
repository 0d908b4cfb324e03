"""Proof that the GAN learns, on 2 CPU cores in about 20 minutes: `python -m benchmarks.run learning`.

Phases, each through the project's real stages, timed:

1. MIDI: the demo sets (`data/demo/midi`, `midi-b`: 12 pieces, ~6 min) plus `generated_pieces`
   pieces written here with the demo script's building blocks (four left-hand textures, seeded
   keys, tempi, diatonic phrases and melodies; the same bytes on every run): over 10 minutes;
2. `build_midi_dataset`: render through FluidSynth, normalize to -20 LUFS;
3. `train_autoencoder_flow`: a small autoencoder on all items but `held_out_items`; its round
   trip log-spectral distance on the held-out items is printed (they are still GAN data);
4. `encode_dataset`: latents of every item;
5. GAN: `musika_model.training.Trainer` for `gan_steps` steps as 4 epochs. At steps 0, 1/4, 1/2
   and the end, the EMA generator and the generator being trained each make `samples_per_seed`
   clips for each of two seeds (`musika_model.generation.generate`, decoded by the autoencoder),
   measured with `tasks.evaluate.metrics` against the reference: `reference_clips` random crops of the
   normalized training audio, as long as the samples.

Two rows of real audio put the distances in scale: as many other crops as a sample set (what
real data scores at that set size) and the same crops through the autoencoder (what the
autoencoder alone does to real audio; samples can score below it, as nothing ties their level
to the encoder's latents).

Everything lands in a store of its own (`data/bench-learning/store`, or `$MUSIKA_BENCH_LEARNING/
store`). A re-run reuses the stages' outputs (each phase says so), and the GAN phase is one
store object keyed by its settings and its input objects (samples, `fd_curve.png`,
`results.json`), published as a version of `bench-learning-curve`: an unchanged re-run reads
it back instead of training. Figures are printed, never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

    from musika_model.codec import Autoencoder
    from musika_model.train_config import TrainConfig
    from musika_model.training_data import LatentSource
    from tasks.store import ArtifactStore, DatasetItem

PROJECT = Path(__file__).resolve().parents[1]
DEMO = PROJECT / "data" / "demo"
ROOT_ENV = "MUSIKA_BENCH_LEARNING"
DATASET_NAME = "bench-learning-piano"
AUTOENCODER_NAME = "bench-learning-ae"
CURVE_NAME = "bench-learning-curve"
CURVE_STAGE = "bench-learning"
CURVE_STAGE_VERSION = 1
CURVE_ITEM = "learning"
RESULTS_FILE = "results.json"
PLOT_FILE = "fd_curve.png"
SAMPLES_DIR = "samples"
SAMPLE_RATE = 44100
GENERATORS = ("ema", "raw")
"""The EMA generator (what checkpoints are sampled with) and the generator being trained."""


@dataclass(frozen=True)
class LearningSettings:
    """Sizes of the benchmark; the defaults fit about 20 minutes on 2 CPU cores."""

    generated_pieces: int = 12
    held_out_items: int = 4
    ae_stage1_steps: int = 1200
    ae_stage2_steps: int = 600
    base_channels: int = 32
    batch_size: int = 8
    gan_steps: int = 2000
    """A multiple of 4: four epochs, so 1/4, 1/2 and the end are epoch boundaries."""
    learning_rate: float = 1e-4
    ema_decay: float = 0.999
    seed: int = 0
    sample_seconds: float = 10.0
    samples_per_seed: int = 8
    sample_seeds: tuple[int, int] = (1, 2)
    truncation: float = 2.0
    reference_clips: int = 32
    kept_wavs_per_row: int = 1
    """Sample WAVs kept in the store per (step, generator, seed) row."""

    def curve_params(self) -> dict[str, Any]:
        """What the GAN phase's object depends on besides its input objects (the MIDI and
        autoencoder settings reach it through those)."""
        values = asdict(self)
        for upstream in ("generated_pieces", "held_out_items", "ae_stage1_steps", "ae_stage2_steps"):
            del values[upstream]
        return {**values, "sample_seeds": list(self.sample_seeds)}


# ---- MIDI ----------------------------------------------------------------------------------------


def demo_midi_module() -> ModuleType:
    """`data/demo/make_demo_midi.py` (not a package), loaded once."""
    name = "make_demo_midi"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DEMO / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


MAJOR_DEGREES = {"I": (0, "maj"), "ii": (2, "min"), "iii": (4, "min"), "IV": (5, "maj"),
                 "V": (7, "dom7"), "vi": (9, "min")}
MINOR_DEGREES = {"i": (0, "min"), "ii": (2, "dim"), "III": (3, "maj"), "iv": (5, "min"),
                 "V": (7, "dom7"), "VI": (8, "maj")}
MAJOR_PHRASES = ("I vi IV V", "I IV V I", "vi ii V I", "I iii IV V", "I V vi IV", "IV I ii V")
MINOR_PHRASES = ("i iv V i", "i VI iv V", "i III VI V", "iv i V i", "i ii V i", "VI iv V V")
MELODY_RHYTHMS = {4: ((1, 1, 1, 1), (2, 1, 1), (1.5, 0.5, 2), (0.5, 0.5, 1, 1, 1), (1, 0.5, 0.5, 2)),
                  3: ((2, 1), (1, 1, 1), (3,), (1.5, 0.5, 1))}


def alberti_bass(piece: Any, bar: int, chord: Any, beats: int) -> None:
    """Broken root-fifth-third-fifth eighths in octave 3."""
    root, third, fifth = chord.voicing(3)[:3]
    for step in range(beats * 2):
        pitch = (root, fifth, third, fifth)[step % 4]
        piece.note(piece.left, bar * beats + step * 0.5, pitch, 0.5, 64 if step % 2 == 0 else 56)


def broken_chords(piece: Any, bar: int, chord: Any, beats: int) -> None:
    """Pedalled eighths rising through the chord over two octaves."""
    tones = chord.voicing(2)[:3] + [pitch + 12 for pitch in chord.voicing(3)[:3]]
    piece.pedal(bar * beats, bar * beats + beats)
    for step in range(beats * 2):
        piece.note(piece.left, bar * beats + step * 0.5, tones[step % len(tones)], 0.5,
                   66 if step == 0 else 54)


def block_chords(piece: Any, bar: int, chord: Any, beats: int) -> None:
    """Bass and a close three-note voicing on every beat."""
    bass = chord.voicing(2)[0]
    upper = demo_midi_module().nearest_voicing(chord, [55, 59, 62], 52, 67, 3)
    for beat in range(beats):
        piece.note(piece.left, bar * beats + beat, bass, 0.9, 62)
        piece.chord(piece.left, bar * beats + beat, upper, 0.9, 52)


def waltz_accompaniment(piece: Any, bar: int, chord: Any, beats: int) -> None:
    """Bass on the first beat, a voicing on the others."""
    upper = demo_midi_module().nearest_voicing(chord, [54, 57, 62], 52, 67, 3)
    piece.note(piece.left, bar * beats, chord.voicing(2)[0], 0.9, 66)
    for beat in range(1, beats):
        piece.chord(piece.left, bar * beats + beat, upper, 0.5, 50)


TEXTURES: dict[str, tuple[Callable[[Any, int, Any, int], None], int]] = {
    "alberti": (alberti_bass, 4),
    "arpeggio": (broken_chords, 4),
    "block": (block_chords, 4),
    "waltz": (waltz_accompaniment, 3),
}
"""Left-hand textures, called as (demo Piece, bar, demo Chord, beats per bar), and their beats per bar."""


def generated_piece(index: int) -> Any:
    """Piece `index`: texture by index, seeded key, mode, tempo and 16 bars of diatonic phrases
    ending on V-V-I-I, with a melody over the chords (the demo's `melody`)."""
    demo = demo_midi_module()
    rng = random.Random(f"bench-learning-{index}")
    texture = sorted(TEXTURES)[index % len(TEXTURES)]
    accompany, beats = TEXTURES[texture]
    minor = rng.random() < 0.4
    tonic_name = rng.choice(sorted(demo.PITCH_CLASS))
    tonic = demo.PITCH_CLASS[tonic_name]
    degrees, phrases = (MINOR_DEGREES, MINOR_PHRASES) if minor else (MAJOR_DEGREES, MAJOR_PHRASES)
    home = "i" if minor else "I"
    numerals = [numeral for _ in range(3) for numeral in rng.choice(phrases).split()]
    numerals += ["V", "V", home, home]
    chords = [demo.Chord((tonic + degrees[n][0]) % 12, degrees[n][1]) for n in numerals]
    bpm = rng.randrange(72, 132, 4) * (1.5 if beats == 3 else 1.0)
    piece = demo.Piece(f"generated_{index:02d}_{texture}", bpm=bpm, beats_per_bar=beats,
                       key=f"{tonic_name} {'minor' if minor else 'Major'}", time_signature=(beats, 4))
    for bar, chord in enumerate(chords):
        accompany(piece, bar, chord, beats)
    rhythms = [rng.choice(MELODY_RHYTHMS[beats]) for _ in range(4)]
    tune = demo.melody(piece, chords, tonic, demo.MINOR_SCALE if minor else demo.MAJOR_SCALE,
                       lambda bar: rhythms[bar % 4] if bar < len(chords) - 1 else [beats],
                       low=67, high=86, start=72 + tonic // 2)
    demo.play_melody(piece, tune, rng.randrange(72, 92), legato=rng.choice((0.8, 0.95)))
    return piece


def write_generated_midi(folder: Path, count: int) -> list[Path]:
    """Write pieces 0..count-1 into `folder` (files of other counts removed)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(count):
        piece = generated_piece(index)
        path = folder / f"{piece.name}.mid"
        piece.to_midi().write(str(path))
        written.append(path)
    for stale in set(folder.glob("*.mid")) - set(written):
        stale.unlink()
    return written


# ---- clips and measures --------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioItem:
    """A normalized dataset item: its object key, audio file and length in samples."""

    key: str
    path: Path
    frames: int


def audio_items(store: ArtifactStore, items: Sequence[DatasetItem]) -> list[AudioItem]:
    """The audio file and length of each item of a normalized dataset version."""
    from musika_model.audio import audio_info
    from tasks.pipeline.audio_io import single_audio_file

    found = []
    for item in items:
        path = single_audio_file(store.local_path(item.key))
        found.append(AudioItem(item.key, path, audio_info(path).frames))
    return found


def read_clip(item: AudioItem, start: int, frames: int) -> np.ndarray:
    """(frames, 2) float32 from sample `start` of the item's audio."""
    from musika_model.audio import read_audio_window

    return read_audio_window(item.path, start, frames)[0]


def random_crops(items: Sequence[AudioItem], count: int, seconds: float, seed: int) -> list[np.ndarray]:
    """`count` crops of `seconds`; every start position of every long enough item is equally likely."""
    frames = round(seconds * SAMPLE_RATE)
    usable = [item for item in items if item.frames >= frames]
    if not usable:
        raise ValueError(f"no item holds {seconds} s of audio")
    starts = np.array([item.frames - frames + 1 for item in usable], dtype=np.float64)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(usable), size=count, p=starts / starts.sum())
    return [read_clip(usable[index], int(rng.integers(0, starts[index])), frames) for index in chosen]


@dataclass(frozen=True)
class MeasuredSet:
    """Set-level measures of some clips and the Gaussian fit of their embedding frames."""

    summary: dict[str, float | None]
    mean: np.ndarray
    cov: np.ndarray


def measure_set(clips: Sequence[np.ndarray]) -> MeasuredSet:
    """`tasks.evaluate.metrics` measures of every clip, summarized, and the embedding statistics."""
    from tasks.evaluate.metrics import embedding_frames, embedding_stats, measure_clip, summarize

    summary = summarize([measure_clip(clip) for clip in clips])
    mean, cov = embedding_stats([embedding_frames(clip) for clip in clips])
    return MeasuredSet(summary, mean, cov)


def compared(measured: MeasuredSet, reference: MeasuredSet, **label: Any) -> dict[str, Any]:
    """A table row: the label fields, the Fréchet distance to the reference, the set measures."""
    from tasks.evaluate.metrics import frechet_distance

    distance = frechet_distance(measured.mean, measured.cov, reference.mean, reference.cov)
    return {**label, "frechet_distance": distance, **measured.summary}


def round_trip(autoencoder: Autoencoder, clip: np.ndarray) -> np.ndarray:
    """The clip encoded and decoded by the autoencoder, trimmed to its length."""
    encoded = autoencoder.encode(clip)
    return autoencoder.decode(encoded.latents, num_samples=encoded.num_samples, seed=0)


def held_out_lsd(autoencoder: Autoencoder, items: Sequence[AudioItem], seconds: float) -> float:
    """Mean log-spectral distance (dB) of the round trip of each item's middle `seconds`."""
    from musika_model.ae_training import reconstruction_metrics

    distances = []
    for item in items:
        frames = min(item.frames, round(seconds * SAMPLE_RATE))
        clip = read_clip(item, (item.frames - frames) // 2, frames)
        distances.append(reconstruction_metrics(autoencoder, clip)["log_spectral_distance_db"])
    return float(np.mean(distances))


def baseline_rows(
    items: Sequence[AudioItem], autoencoder: Autoencoder, settings: LearningSettings
) -> tuple[MeasuredSet, list[dict[str, Any]]]:
    """The reference set, and rows for it, for real crops apart from it (as many as a sample set:
    the distance of real data at that set size) and for those crops through the autoencoder."""
    crops = random_crops(items, settings.reference_clips + settings.samples_per_seed,
                         settings.sample_seconds, settings.seed)
    reference = measure_set(crops[: settings.reference_clips])
    apart = crops[settings.reference_clips:]
    rows = [
        {"label": f"reference: {settings.reference_clips} training crops", "frechet_distance": 0.0,
         **reference.summary},
        compared(measure_set(apart), reference, label=f"real: {len(apart)} other crops"),
        compared(measure_set([round_trip(autoencoder, clip) for clip in apart]), reference,
                 label="real through the autoencoder"),
    ]
    return reference, rows


# ---- the GAN phase -------------------------------------------------------------------------------


def checkpoint_rows(
    generators: dict[str, keras.Model],
    autoencoder: Autoencoder,
    settings: LearningSettings,
    reference: MeasuredSet,
    step: int,
    out_dir: Path,
) -> list[dict[str, Any]]:
    """Per generator and seed, `samples_per_seed` samples measured against the reference; the
    first `kept_wavs_per_row` of each are written under out_dir/samples."""
    from musika_model.audio import write_pcm16_wav
    from musika_model.generation import generate

    rows = []
    for name, generator in generators.items():
        for seed in settings.sample_seeds:
            clips = generate(generator, autoencoder, settings.sample_seconds, settings.samples_per_seed,
                             settings.truncation, seed)
            for index, clip in enumerate(clips[: settings.kept_wavs_per_row]):
                path = out_dir / SAMPLES_DIR / f"step-{step:05d}-{name}-seed-{seed}-{index:02d}.wav"
                path.parent.mkdir(exist_ok=True)
                write_pcm16_wav(path, np.nan_to_num(clip), SAMPLE_RATE)
            rows.append(compared(measure_set(clips), reference, step=step, generator=name, seed=seed))
    return rows


def train_config(settings: LearningSettings) -> TrainConfig:
    """The TrainConfig: small windows, fp32 without XLA, 4 epochs of gan_steps / 4 steps, and no
    per-epoch samples (this module samples at the epoch boundaries itself)."""
    from musika_model.config import GanConfig
    from musika_model.train_config import TrainConfig

    if settings.gan_steps % 4:
        raise ValueError(f"gan_steps must be a multiple of 4, got {settings.gan_steps}")
    return TrainConfig(
        gan=GanConfig(base_channels=settings.base_channels, small=True),
        batch_size=settings.batch_size,
        iterations_per_epoch=settings.gan_steps // 4,
        lr_phases=((4, settings.learning_rate),),
        ema_decay=settings.ema_decay,
        seed=settings.seed,
        mixed_precision=False,
        xla=False,
        log_every=max(1, settings.gan_steps // 40),
        save_every=4,
        keep_checkpoints=1,
        sample_count=0,
    )


def train_and_measure(
    sources: Sequence[LatentSource],
    autoencoder: Autoencoder,
    settings: LearningSettings,
    reference: MeasuredSet,
    out_dir: Path,
    timings: dict[str, float],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train epoch by epoch and measure the samples at steps 0, 1/4, 1/2 and the end; returns
    (rows, the trainer's per-epoch history). Adds training and sampling time to `timings`."""
    from musika_model.training import Trainer

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-learning-run-") as run_dir:
        trainer = Trainer(train_config(settings), sources, run_dir)
        generators = {"ema": trainer.networks.generator_ema, "raw": trainer.networks.generator}
        for epochs in (0, 1, 1, 2):
            with timed(timings, "GAN training"):
                if epochs:
                    trainer.train(max_epochs=epochs)
            with timed(timings, "GAN samples and measures"):
                measured = checkpoint_rows(generators, autoencoder, settings, reference, trainer.step, out_dir)
            rows += measured
            print(f"  step {trainer.step}: FD " + ", ".join(
                f"{row['generator']} seed {row['seed']} {row['frechet_distance']:.0f}" for row in measured),
                flush=True)
        return rows, list(trainer.state.history)


def fd_curve_png(rows: Sequence[dict[str, Any]], baselines: Sequence[dict[str, Any]], steps: int) -> bytes:
    """FD against step, one line per generator and seed, and the real-data rows as flat lines."""
    from tasks.reports.plots import line_chart_png

    series: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        xs, ys = series.setdefault(f"{row['generator']} generator, seed {row['seed']}", ([], []))
        xs.append(row["step"])
        ys.append(row["frechet_distance"])
    for row in baselines[1:]:
        series[row["label"]] = ([0, steps], [row["frechet_distance"]] * 2)
    return line_chart_png(series, "Fréchet distance of log-mel statistics to the training audio",
                          "GAN step", "Fréchet distance (dB²)")


# ---- printing ------------------------------------------------------------------------------------

COLUMNS = (
    ("frechet_distance", "FD", "{:9.1f}"),
    ("onset_density", "onsets/s", "{:8.2f}"),
    ("loudness_lufs", "LUFS", "{:6.1f}"),
    ("loudness_spread_lu", "spread LU", "{:9.2f}"),
    ("silence_ratio", "silence", "{:7.3f}"),
    ("beep_score", "beep", "{:5.3f}"),
)
LABEL_WIDTH = 36


def table_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Fixed-width lines: the row's label, then the COLUMNS ("-" where undefined)."""
    widths = [len(fmt.format(0.0)) for _, _, fmt in COLUMNS]
    lines = [" " * LABEL_WIDTH + " ".join(f"{title:>{width}s}" for (_, title, _), width in zip(COLUMNS, widths))]
    for row in rows:
        cells = []
        for (name, _, fmt), width in zip(COLUMNS, widths):
            value = row.get(name)
            cells.append(fmt.format(value) if value is not None and math.isfinite(value) else "-".rjust(width))
        lines.append(f"{row['label']:{LABEL_WIDTH}s}" + " ".join(cells))
    return lines


def step_label(row: dict[str, Any]) -> str:
    return f"step {row['step']:5d}, {row['generator']} generator, seed {row['seed']}"


def first_and_last(rows: Sequence[dict[str, Any]], generator: str, seed: int) -> tuple[float, float]:
    """FD at the first and at the last step of one generator and seed."""
    mine = sorted((row["step"], row["frechet_distance"]) for row in rows
                  if row["generator"] == generator and row["seed"] == seed)
    return mine[0][1], mine[-1][1]


# ---- the benchmark -------------------------------------------------------------------------------


@contextmanager
def timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    """Add the block's wall time to `timings[phase]`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - started


def bench_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or PROJECT / "data" / "bench-learning")


def quiet_prefect(root: Path) -> None:
    """Unless set already: Prefect's ephemeral API with its state under `root`, warnings only."""
    root.mkdir(parents=True, exist_ok=True)  # Prefect creates its home folder, not the parents
    for name, value in {"PREFECT_HOME": str(root / "prefect-home"), "PREFECT_LOGGING_LEVEL": "WARNING",
                        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
                        "TF_CPP_MIN_LOG_LEVEL": "2"}.items():
        os.environ.setdefault(name, value)


def state(computed: bool) -> str:
    return "computed" if computed else "reused"


def run_learning(settings: LearningSettings = LearningSettings()) -> dict[str, Any]:
    """Run every phase and print what it did, the table and the timings; returns headline figures."""
    root = bench_root()
    quiet_prefect(root)
    from flows.encode_dataset import encode_dataset
    from flows.midi_dataset import build_midi_dataset
    from flows.train_autoencoder import train_autoencoder_flow
    from musika_model.training_data import LatentSource
    from tasks.encode.stage import LATENTS_FILE
    from tasks.pipeline.models import load_autoencoder, resolve_model
    from tasks.pipeline.params import RunSettings
    from tasks.reports.report import write_report
    from tasks.store import ArtifactStore, object_key
    from tasks.train.params import AutoencoderTrainingParams

    timings: dict[str, float] = {}
    total_started = time.perf_counter()
    store = ArtifactStore.open(str(root / "store"))
    run = RunSettings(store=store.root)
    print(f"store: {store.root}", flush=True)

    with timed(timings, "MIDI, render, normalize"):
        generated = write_generated_midi(root / "midi", settings.generated_pieces)
        dataset = build_midi_dataset(name=DATASET_NAME, run=run,
                                     sources=[str(DEMO / "midi"), str(DEMO / "midi-b"), str(root / "midi")])
        items = audio_items(store, store.resolve(dataset["ref"]).items)
    minutes = sum(item.frames for item in items) / SAMPLE_RATE / 60.0
    counts = {stage: f"{done['computed']} computed, {done['reused']} reused, {done['failed']} failed"
              for stage, done in dataset["stages"].items()}
    print(f"dataset {dataset['ref']}: {len(items)} items ({len(generated)} generated pieces), {minutes:.1f} min "
          f"of audio; render: {counts['render']}; normalize: {counts['normalize']}", flush=True)

    with timed(timings, "autoencoder, held-out LSD"):
        ae_settings = AutoencoderTrainingParams(
            preset="demo", stage1_steps=settings.ae_stage1_steps, stage2_steps=settings.ae_stage2_steps,
            max_items=len(items) - settings.held_out_items)
        trained = train_autoencoder_flow(dataset=dataset["ref"], name=AUTOENCODER_NAME, settings=ae_settings,
                                         run=run)
        ae_key, _ = resolve_model(store, trained["ref"]).require_autoencoder()
        autoencoder = load_autoencoder(store.root, ae_key)
        trained_on = set(store.manifest(ae_key).inputs)
        held_out = [item for item in items if item.key not in trained_on]
        lsd = held_out_lsd(autoencoder, held_out, settings.sample_seconds)
    ae_stats = trained["stats"]
    print(f"autoencoder {trained['ref']}: {state(trained['trained'])} ({ae_stats['steps']} steps, trained in "
          f"{ae_stats['seconds']:.0f} s); log-spectral distance {lsd:.2f} dB on {len(held_out)} held-out "
          f"items, {ae_stats['evaluation']['log_spectral_distance_db']:.2f} dB on training items", flush=True)

    with timed(timings, "encode"):
        latents = encode_dataset(dataset=dataset["ref"], autoencoder=trained["ref"], run=run)
        latent_keys = [item.key for item in store.resolve(latents["ref"]).items]
    encoded = latents["stages"]["encode"]
    print(f"latents {latents['ref']}: {encoded['computed']} computed, {encoded['reused']} reused, "
          f"{encoded['failed']} failed", flush=True)

    params, inputs = settings.curve_params(), [ae_key, *latent_keys]
    key = object_key(CURVE_STAGE, CURVE_STAGE_VERSION, params, inputs)
    gan_trained = not store.has(key)
    if gan_trained:
        with store.publish_object(CURVE_STAGE, CURVE_STAGE_VERSION, params, inputs, item=CURVE_ITEM) as staged:
            with timed(timings, "reference and real-data rows"):
                reference, baselines = baseline_rows(items, autoencoder, settings)
            print(f"GAN: {settings.gan_steps} steps, base_channels {settings.base_channels}, small windows, "
                  f"batch {settings.batch_size}, lr {settings.learning_rate:g}, EMA decay {settings.ema_decay:g}",
                  flush=True)
            sources = [LatentSource(latents["ref"], [store.local_path(k) / LATENTS_FILE for k in latent_keys])]
            rows, history = train_and_measure(sources, autoencoder, settings, reference, staged.dir, timings)
            (staged.dir / PLOT_FILE).write_bytes(fd_curve_png(rows, baselines, settings.gan_steps))
            results = {"settings": asdict(settings), "baselines": baselines, "rows": rows, "history": history,
                       "timings_s": {phase: round(seconds, 1) for phase, seconds in timings.items()}}
            (staged.dir / RESULTS_FILE).write_text(json.dumps(results, indent=1, allow_nan=False))
            staged.stats.update({f"fd_{row['generator']}_seed{row['seed']}_step{row['step']}":
                                 round(row["frechet_distance"], 1) for row in rows})
    folder = store.local_path(key)
    results = json.loads((folder / RESULTS_FILE).read_text())
    curve = store.publish_dataset(
        CURVE_NAME, stage=CURVE_STAGE, params=params,
        items=[{"item_id": CURVE_ITEM, "key": key, "stats": store.manifest(key).stats}],
        lineage={"parents": [latents["ref"], trained["ref"]]},
        stats={"autoencoder_lsd_held_out_db": round(lsd, 2), "audio_minutes": round(minutes, 1)})
    write_report(store, curve.ref)

    print(f"\nGAN {'trained' if gan_trained else 'reused from the store'}; per-epoch mean losses:")
    for entry in results["history"]:
        print(f"  steps to {entry['step']:5d}: lr {entry['lr']:g}, critic real {entry['critic_real']:.3f}, "
              f"critic fake {entry['critic_fake']:.3f}, generator {entry['generator']:.3f}, "
              f"R1 {entry['r1_penalty']:.4f} x weight {entry['r1_weight']:.2f}, {entry['seconds']:.0f} s")
    print(f"\n{settings.samples_per_seed} clips of {settings.sample_seconds:g} s per row (truncation "
          f"{settings.truncation:g}); FD: Fréchet distance of 1 s log-mel embedding frames, dB²")
    rows = results["rows"]
    for line in table_lines(results["baselines"] + [{**row, "label": step_label(row)} for row in rows]):
        print(line)
    figures: dict[str, Any] = {}
    print("\nFD from step 0 to the end:")
    for generator in GENERATORS:
        for seed in settings.sample_seeds:
            first, last = first_and_last(rows, generator, seed)
            print(f"  {generator} generator, seed {seed}: {first:.1f} -> {last:.1f} "
                  f"({100 * (last - first) / first:+.0f}%)")
            figures[f"fd_{generator}_seed{seed}_step0_to_end"] = f"{first:.1f} -> {last:.1f}"
    print(f"\nartifacts: {curve.ref} ({'published' if curve.created else 'unchanged'}), "
          f"{store.dataset_uri(curve.name, curve.version)}\n  plot: {folder / PLOT_FILE}\n"
          f"  samples: {folder / SAMPLES_DIR}/\n  results: {folder / RESULTS_FILE}")

    timings["total"] = time.perf_counter() - total_started
    print("\ntimings (this run):")
    for phase, seconds in timings.items():
        print(f"  {phase:30s} {seconds:7.1f} s")
    figures.update({
        "audio_minutes": round(minutes, 1),
        "autoencoder_lsd_held_out_db": round(lsd, 2),
        "fd_real_other_crops": round(results["baselines"][1]["frechet_distance"], 1),
        "fd_real_through_autoencoder": round(results["baselines"][2]["frechet_distance"], 1),
        "computed": f"render {dataset['stages']['render']['computed']}, autoencoder {int(trained['trained'])}, "
                    f"encode {encoded['computed']}, gan {int(gan_trained)}",
        "total_s": round(timings["total"], 1),
    })
    return figures


def run() -> dict[str, Any]:
    return run_learning()


if __name__ == "__main__":
    for figure, value in run().items():
        print(f"{figure:48s} {value}")
