"""Segmentation on synthetic compilations: piano-like pieces separated by silences, with and
without chapters, long stretches without any silence, short leftovers, and a long file read
in small blocks under a memory bound."""

from __future__ import annotations

import functools
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError

from tasks.segment.core import (
    Chapter,
    NoSegments,
    NotAudio,
    clip_chapters,
    compute_envelope,
    iter_segment_audio,
    plan_file,
    plan_segments,
    write_segments,
)
from tasks.segment.params import GAN_WINDOW_S, InvalidSegmentParams, SegmentParams

RATE = 16000
PARAMS = SegmentParams(sample_rate=RATE)
TOLERANCE_S = 0.5


@functools.lru_cache(maxsize=4)
def _note_bank(rate: int) -> np.ndarray:
    """2.5 s piano-like notes (six decaying harmonics) for MIDI pitches 45..79, one per row."""
    t = np.arange(int(2.5 * rate)) / rate
    decay = np.exp(-t / 0.8) * np.minimum(1.0, t / 0.005)
    bank = []
    for pitch in range(45, 80):
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        harmonics = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 7) if k * f0 < rate / 2)
        bank.append(decay * harmonics)
    return np.asarray(bank, dtype=np.float32)


def piano_piece(seconds: float, rate: int = RATE, seed: int = 0, note_gap_s: float = 0.35) -> np.ndarray:
    """Mono piano-like notes every ~note_gap_s with random pitch and velocity, ending in a 0.2 s fade."""
    rng = np.random.default_rng(seed)
    bank = _note_bank(rate)
    total = int(seconds * rate)
    out = np.zeros(total, dtype=np.float32)
    onset = 0
    while onset < total:
        note = bank[rng.integers(0, bank.shape[0])] * np.float32(0.15 * rng.uniform(0.5, 1.0))
        end = min(total, onset + note.shape[0])
        out[onset:end] += note[: end - onset]
        onset += int(rate * note_gap_s * rng.uniform(0.7, 1.3))
    fade = int(0.2 * rate)
    out[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return out


def compilation(
    pieces: list[float], gaps: list[float], rate: int = RATE, seed: int = 0, stereo: bool = False
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """gaps[i] seconds of silence before piece i (plus a final gap); returns audio and truth."""
    parts, truth, cursor = [], [], 0.0
    for index, (length, gap) in enumerate(zip(pieces, gaps)):
        parts.append(np.zeros(int(gap * rate), dtype=np.float32))
        cursor += int(gap * rate) / rate
        parts.append(piano_piece(length, rate, seed + index))
        truth.append((cursor, cursor + int(length * rate) / rate))
        cursor = truth[-1][1]
    parts.append(np.zeros(int(gaps[-1] * rate), dtype=np.float32))
    audio = np.concatenate(parts)
    if stereo:
        audio = np.stack([audio, 0.8 * audio], axis=1)
    return audio, truth


def write(path: Path, audio: np.ndarray, rate: int = RATE) -> Path:
    sf.write(path, audio, rate, subtype="PCM_16")
    return path


def spans(plan) -> list[tuple[float, float]]:
    return [(s.start_s, s.end_s) for s in plan.segments]


def assert_in_bounds(plan, params: SegmentParams = PARAMS) -> None:
    for segment in plan.segments:
        assert params.min_segment_s - 1e-6 <= segment.duration_s <= params.max_segment_s + 1e-6
        assert segment.duration_s >= GAN_WINDOW_S


def test_silences_split_pieces_within_half_a_second(tmp_path: Path) -> None:
    audio, truth = compilation([40.0, 65.0, 35.0], [1.5, 2.5, 3.0, 2.0], stereo=True)
    plan = plan_file(write(tmp_path / "comp.wav", audio), PARAMS, block_frames=4096)
    assert len(plan.segments) == 3
    for (start, end), (true_start, true_end) in zip(spans(plan), truth):
        assert abs(start - true_start) <= TOLERANCE_S
        assert abs(end - true_end) <= TOLERANCE_S
    assert {s.method for s in plan.segments} == {"silence"}
    assert [s.chapter for s in plan.segments] == [None, None, None]
    assert_in_bounds(plan)


def test_chapter_marks_move_to_the_quiet_point_between_pieces(tmp_path: Path) -> None:
    # 0.4 s gaps are too short to count as silences: the boundaries come from the chapters,
    # whose marks are off by up to 1.4 s and must be pulled into the gaps.
    audio, truth = compilation([45.0, 50.0, 38.0], [0.0, 0.4, 0.4, 0.0])
    path = write(tmp_path / "chapters.wav", audio)
    chapters = [
        {"title": "Prelude", "start_time": 0.0, "end_time": truth[1][0] - 1.4},
        {"title": "Étude / Nº 2", "start_time": truth[1][0] - 1.4, "end_time": truth[2][0] + 1.1},
        {"title": "Fugue", "start_time": truth[2][0] + 1.1, "end_time": 10_000.0},
    ]
    plan = plan_file(path, PARAMS, chapters=chapters)
    assert [s.chapter for s in plan.segments] == ["Prelude", "Étude / Nº 2", "Fugue"]
    assert {s.method for s in plan.segments} == {"chapter"}
    cuts = [s.start_s for s in plan.segments[1:]]
    for cut, (previous_end, next_start) in zip(cuts, zip([t[1] for t in truth], [t[0] for t in truth[1:]])):
        assert previous_end - TOLERANCE_S <= cut <= next_start + TOLERANCE_S
    assert plan.chapter_issues and "after the audio ends" in plan.chapter_issues[0]
    assert plan.chapters[-1].end_s <= plan.duration_s
    assert_in_bounds(plan)


def test_clip_chapters_drops_and_clips_impossible_marks() -> None:
    chapters, issues = clip_chapters(
        [
            {"title": "b", "start_time": 50.0, "end_time": 80.0},
            {"title": "a", "start_time": 0.0, "end_time": 60.0},  # overlaps b
            {"title": "late", "start_time": 130.0, "end_time": 200.0},  # after the end
            {"title": "c", "start_time": 80.0},  # no end: runs to the end of the audio
        ],
        duration_s=100.0,
    )
    assert chapters == [Chapter("a", 0.0, 50.0), Chapter("b", 50.0, 80.0), Chapter("c", 80.0, 100.0)]
    assert len(issues) == 2
    assert any("late" in issue and "dropped" in issue for issue in issues)
    assert any("'a'" in issue and "clipped" in issue for issue in issues)


def test_no_silence_means_windows_cut_at_quiet_points(tmp_path: Path) -> None:
    # 300 s without a silence, loud phrases with a 0.3 s quiet dip every 7 s.
    seconds = 300.0
    audio = piano_piece(seconds, seed=7)
    t = np.arange(audio.shape[0]) / RATE
    dips = (t % 7.0) > 6.7
    audio = audio * np.where(dips, 0.03, 1.0).astype(np.float32)
    plan = plan_file(write(tmp_path / "long.wav", audio), PARAMS)
    assert len(plan.segments) == 3
    assert {s.method for s in plan.segments} == {"window"}
    assert_in_bounds(plan)
    for segment in plan.segments[1:]:
        assert (segment.start_s % 7.0) > 6.6, f"cut at {segment.start_s:.2f} s is not in a quiet dip"
    for previous, following in zip(plan.segments, plan.segments[1:]):
        assert previous.end_sample == following.start_sample


def test_short_piece_merges_into_a_neighbour(tmp_path: Path) -> None:
    audio, truth = compilation([50.0, 10.0, 50.0], [1.0, 3.0, 3.0, 1.0])
    plan = plan_file(write(tmp_path / "short.wav", audio), PARAMS)
    assert len(plan.segments) == 2  # the short piece joins the following one (63 s together)
    assert [s.method for s in plan.segments] == ["silence", "merged"]
    assert abs(plan.segments[1].start_s - truth[1][0]) <= TOLERANCE_S
    assert abs(plan.segments[1].end_s - truth[2][1]) <= TOLERANCE_S
    assert plan.dropped == []
    assert_in_bounds(plan)


def test_short_piece_that_fits_nowhere_is_dropped_with_its_reason(tmp_path: Path) -> None:
    audio, truth = compilation([110.0, 10.0, 110.0], [1.0, 3.0, 3.0, 1.0])
    plan = plan_file(write(tmp_path / "short.wav", audio), PARAMS)
    assert len(plan.segments) == 2
    assert [d.reason for d in plan.dropped] == ["too_short"]
    assert abs(plan.dropped[0].start_s - truth[1][0]) <= TOLERANCE_S
    assert_in_bounds(plan)


def test_all_silence_and_only_fragments_fail_with_reasons(tmp_path: Path) -> None:
    silent = write(tmp_path / "silent.wav", np.zeros(RATE * 90, dtype=np.float32))
    with pytest.raises(NoSegments) as failure:
        plan_file(silent, PARAMS)
    assert failure.value.reason == "silent"
    audio, _ = compilation([12.0], [2.0, 2.0])
    with pytest.raises(NoSegments) as failure:
        plan_file(write(tmp_path / "fragment.wav", audio), PARAMS)
    assert failure.value.reason == "too_short"


def test_bad_files_raise_specific_failures(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    with pytest.raises(NotAudio) as failure:
        plan_file(text, PARAMS)
    assert failure.value.reason == "not_audio"
    with pytest.raises(FileNotFoundError):
        plan_file(tmp_path / "missing.wav", PARAMS)


def test_params_refuse_bounds_that_cannot_hold() -> None:
    with pytest.raises(ValidationError, match="GAN window") as refused:
        SegmentParams(min_segment_s=20.0)
    assert isinstance(refused.value.errors()[0]["ctx"]["error"], InvalidSegmentParams)
    with pytest.raises(ValidationError, match="twice"):
        SegmentParams(min_segment_s=40.0, max_segment_s=60.0)


def test_written_segments_are_stereo_at_the_output_rate_with_provenance(tmp_path: Path) -> None:
    audio, truth = compilation([35.0, 40.0], [1.0, 2.0, 1.0])  # mono source at 16 kHz
    path = write(tmp_path / "mono.wav", audio)
    params = SegmentParams()  # 44.1 kHz output
    plan = plan_file(path, params)
    written = list(write_segments(path, plan, tmp_path / "out", "youtube-abc"))
    assert [w.path.name for w in written] == ["youtube-abc-000.wav", "youtube-abc-001.wav"]
    for item, (true_start, true_end) in zip(written, truth):
        data, rate = sf.read(item.path, always_2d=True)
        assert rate == 44100 and data.shape[1] == 2
        np.testing.assert_array_equal(data[:, 0], data[:, 1])
        assert abs(data.shape[0] / rate - item.segment.duration_s) < 0.01
        record = item.to_dict()
        assert record["parent_id"] == "youtube-abc"
        assert abs(record["start_s"] - true_start) <= TOLERANCE_S
        assert abs(record["end_s"] - true_end) <= TOLERANCE_S
    with pytest.raises(ValueError, match="safe file name"):
        next(write_segments(path, plan, tmp_path / "out", "../escape"))


def test_envelope_is_independent_of_the_block_size(tmp_path: Path) -> None:
    audio, _ = compilation([31.0], [0.5, 0.5], stereo=True)
    path = write(tmp_path / "a.wav", audio)
    small = compute_envelope(path, 0.05, block_frames=1000)
    large = compute_envelope(path, 0.05, block_frames=1 << 20)
    np.testing.assert_allclose(small.energy, large.energy, rtol=1e-9)
    assert small.num_samples == audio.shape[0]
    # plan_segments needs only the envelope: the same plan whatever the block size.
    assert spans(plan_segments(small, PARAMS)) == spans(plan_segments(large, PARAMS))


def test_long_file_is_processed_in_bounded_memory(tmp_path: Path) -> None:
    """20 minutes of stereo audio (150 MB as float32) read in 4096-frame blocks: the peak of
    Python-visible allocations stays near one block plus two segments (the caller's and the
    one being read), far from the whole file."""
    path = tmp_path / "long.wav"
    minutes, piece_s, gap_s = 20, 100.0, 2.0
    piece = piano_piece(piece_s, seed=3)
    with sf.SoundFile(path, "w", RATE, 2, subtype="PCM_16") as out:
        silence = np.zeros((int(gap_s * RATE), 2), dtype=np.float32)
        for _ in range(int(minutes * 60 / (piece_s + gap_s))):
            out.write(silence)
            out.write(np.stack([piece, piece], axis=1))
    whole_file_bytes = sf.info(str(path)).frames * 2 * 4
    segment_bytes = int(PARAMS.max_segment_s * RATE) * 2 * 4
    block = 4096
    tracemalloc.start()
    try:
        plan = plan_file(path, PARAMS, block_frames=block)
        total_s = 0.0
        for segment, audio in iter_segment_audio(path, plan):
            total_s += audio.shape[0] / RATE
        _, peak = tracemalloc.get_traced_memory()
        print(f"peak traced allocations {peak / 1e6:.1f} MB; whole file {whole_file_bytes / 1e6:.1f} MB")
    finally:
        tracemalloc.stop()
    assert len(plan.segments) == int(minutes * 60 / (piece_s + gap_s))
    assert total_s == pytest.approx(sum(s.duration_s for s in plan.segments))
    assert peak < block * 2 * 8 * 4 + 2 * segment_bytes + 4_000_000
    assert peak < whole_file_bytes / 4
