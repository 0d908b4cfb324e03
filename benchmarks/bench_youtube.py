"""YouTube/recording path: segment + quality filters + loudness normalization speed from decoded
audio, and peak memory when segmenting a 3-hour compilation.

Targets (docs/operations.md §6): >= 200x real time per core for segment + filter + normalize;
< 1 GB RSS for a 3-hour compilation. The speed figure divides the audio duration by the
process's CPU time (all threads), so it is per core whatever BLAS does. The 3-hour file is
written to disk in blocks and segmented in a child process whose peak RSS is the figure
(every segment is read, as the stage does before writing it; writing is left out: it adds
disk time, not memory).

Run: ``python -m benchmarks.bench_youtube`` (about a minute; needs ~2 GB of free disk).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 44100
SPEED_MINUTES = 10
LONG_HOURS = 3
_PIECE_S = (95.0, 140.0, 62.0, 230.0, 48.0)  # long pieces get split into windows
_GAP_S = 2.0

# ru_maxrss survives exec on Linux: a child spawned by a large parent would report the
# parent's peak. VmHWM is the peak of the child's own address space; ru_maxrss is the
# fallback where /proc is missing (and the measurement runs first, while the parent is small).
_CHILD = """
import json, resource, sys, time
from pathlib import Path
from tasks.segment.core import iter_segment_audio, plan_file
from tasks.segment.params import SegmentParams
started = time.perf_counter()
plan = plan_file(sys.argv[1], SegmentParams())
audio_s = 0.0
for segment, audio in iter_segment_audio(sys.argv[1], plan):
    audio_s += audio.shape[0] / plan.output_rate
status = Path("/proc/self/status")
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if status.exists():
    peak_kb = int(next(line.split()[1] for line in status.read_text().splitlines() if line.startswith("VmHWM")))
print(json.dumps({"segments": len(plan.segments), "segmented_s": audio_s,
                  "seconds": time.perf_counter() - started, "max_rss_kb": peak_kb}))
"""


def _note_bank() -> np.ndarray:
    """2.5 s notes (decaying harmonics up to 20 kHz) for MIDI pitches 33-89, one per row."""
    t = np.arange(int(2.5 * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = np.exp(-t / 0.8) * np.minimum(1.0, t / 0.004)
    bank = []
    for pitch in range(33, 90):
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        bank.append(envelope * sum(np.sin(2 * np.pi * k * f0 * t) / k**1.3 for k in range(1, 16) if k * f0 < 20000))
    return np.asarray(bank, dtype=np.float32)


def _piece(bank: np.ndarray, seconds: float, seed: int) -> np.ndarray:
    """Stereo piano-like piece: random notes every 0.15-0.5 s over a -72 dBFS noise floor."""
    rng = np.random.default_rng(seed)
    total = int(seconds * SAMPLE_RATE)
    mono = np.zeros(total, dtype=np.float32)
    onset = 0
    while onset < total:
        note = bank[rng.integers(0, bank.shape[0])] * np.float32(0.12 * rng.uniform(0.4, 1.0))
        end = min(total, onset + note.shape[0])
        mono[onset:end] += note[: end - onset]
        onset += int(SAMPLE_RATE * rng.uniform(0.15, 0.5))
    mono[-int(0.2 * SAMPLE_RATE) :] *= np.linspace(1.0, 0.0, int(0.2 * SAMPLE_RATE), dtype=np.float32)
    mono += (10 ** (-72 / 20) * rng.normal(size=total)).astype(np.float32)
    return np.stack([mono, np.roll(mono, 11)], axis=1)


def write_compilation(path: Path, seconds: float, subtype: str) -> float:
    """Pieces separated by silences, written block by block (never held whole); returns its length."""
    bank = _note_bank()
    pieces = [_piece(bank, length, seed) for seed, length in enumerate(_PIECE_S)]
    silence = np.zeros((int(_GAP_S * SAMPLE_RATE), 2), dtype=np.float32)
    written = 0
    with sf.SoundFile(path, "w", SAMPLE_RATE, 2, subtype=subtype) as out:
        number = 0
        while written < seconds * SAMPLE_RATE:
            piece = pieces[number % len(pieces)] * np.float32(0.5 + 0.5 * ((number * 7) % 5) / 4)
            out.write(silence)
            out.write(piece)
            written += silence.shape[0] + piece.shape[0]
            number += 1
    return written / SAMPLE_RATE


def stage_speed(path: Path, audio_s: float) -> dict[str, float]:
    from tasks.normalize.core import ItemRejected, normalize_loudness
    from tasks.quality.core import FingerprintIndex, compute_fingerprint, evaluate_quality
    from tasks.segment.core import iter_segment_audio, plan_file
    from tasks.segment.params import SegmentParams

    timings = {"segment": 0.0, "filter": 0.0, "normalize": 0.0}
    index = FingerprintIndex()
    kept = 0
    wall = time.perf_counter()
    cpu = time.process_time()
    mark = cpu
    plan = plan_file(path, SegmentParams())
    segments = iter_segment_audio(path, plan)
    for segment, audio in segments:
        now = time.process_time()
        timings["segment"] += now - mark
        mark = now
        report = evaluate_quality(audio, SAMPLE_RATE)
        duplicate = index.find_duplicate(fingerprint := compute_fingerprint(audio, SAMPLE_RATE))
        if duplicate is None:
            index.add(f"segment-{segment.index}", fingerprint)
        now = time.process_time()
        timings["filter"] += now - mark
        mark = now
        try:
            normalize_loudness(audio, SAMPLE_RATE)
            kept += report.ok
        except ItemRejected:
            pass
        now = time.process_time()
        timings["normalize"] += now - mark
        mark = now
    cpu_s = time.process_time() - cpu
    wall_s = time.perf_counter() - wall
    figures = {
        "speed_audio_minutes": round(audio_s / 60.0, 1),
        "speed_segments": len(plan.segments),
        "speed_segments_kept": kept,
        "speed_x_realtime_per_core (target >= 200)": round(audio_s / cpu_s, 1),
        "speed_x_realtime_wall": round(audio_s / wall_s, 1),
    }
    for stage, seconds in timings.items():
        figures[f"speed_{stage}_x_realtime_per_core"] = round(audio_s / max(seconds, 1e-9), 1)
    return figures


def long_compilation_memory(directory: Path) -> dict[str, float]:
    path = directory / "three-hours.wav"
    started = time.perf_counter()
    seconds = write_compilation(path, LONG_HOURS * 3600.0, "PCM_16")
    generated_s = time.perf_counter() - started
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    child = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "long_hours": round(seconds / 3600.0, 2),
        "long_file_gb": round(path.stat().st_size / 1e9, 2),
        "long_generate_s": round(generated_s, 1),
        "long_segments": child["segments"],
        "long_segmented_hours": round(child["segmented_s"] / 3600.0, 2),
        "long_segment_s": round(child["seconds"], 1),
        "long_peak_rss_mb (target < 1024)": round(child["max_rss_kb"] / 1024.0, 1),
        "long_whole_file_as_float32_mb": round(seconds * SAMPLE_RATE * 2 * 4 / 2**20, 1),
    }


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="musika-bench-youtube-") as scratch:
        directory = Path(scratch)
        figures = long_compilation_memory(directory)
        (directory / "three-hours.wav").unlink()
        speed_path = directory / "compilation.wav"
        audio_s = write_compilation(speed_path, SPEED_MINUTES * 60.0, "FLOAT")
        figures.update(stage_speed(speed_path, audio_s))
    return figures


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:48s} {value}")
