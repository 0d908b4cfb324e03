"""Quality filters on synthetic audio: bandwidth of real-ish piano against low-passed and MP3
copies, duplicates across two compilations at different gains and offsets, segments that only
partly repeat earlier audio (the repeats cut out, the rest kept), silence and clipping ratios,
loudness range."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError
from scipy.signal import butter, sosfiltfilt

from tasks.quality.core import (
    DuplicateItem,
    Fingerprint,
    FingerprintIndex,
    QualityRejected,
    clipping_ratio,
    compute_fingerprint,
    effective_bandwidth,
    evaluate_quality,
    loudness_range,
    piece_item_id,
    silence_ratio,
)
from tasks.quality.params import QualityParams
from tasks.segment.core import iter_segment_audio, plan_file
from tasks.segment.params import SegmentParams
from tests.tasks.segment.test_segment import compilation, piano_piece

SR = 44100


@functools.lru_cache(maxsize=1)
def _full_band_notes() -> np.ndarray:
    """3 s notes at 12 pitches with stretched (inharmonic) partials up to Nyquist, each partial
    decaying faster the higher it is, and a short noisy hammer transient."""
    rng = np.random.default_rng(11)
    t = np.arange(3 * SR) / SR
    notes = []
    for pitch in range(40, 88, 4):
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        note = np.zeros_like(t)
        for k in range(1, 80):
            fk = k * f0 * np.sqrt(1 + 0.0004 * k * k)
            if fk >= SR / 2:
                break
            note += k**-1.2 * np.exp(-t * (1.2 + fk / 2000)) * np.sin(2 * np.pi * fk * t + rng.uniform(0, 6.3))
        note *= np.minimum(1.0, t / 0.003)
        hammer = int(0.004 * SR)
        note[:hammer] += 0.05 * rng.normal(size=hammer) * np.exp(-np.arange(hammer) / 40)
        notes.append(note)
    return np.asarray(notes, dtype=np.float32)


def realish_piano(seconds: float, seed: int = 0) -> np.ndarray:
    """Stereo piano-like recording: full-band notes, slight channel delay, a -70 dBFS noise floor."""
    rng = np.random.default_rng(seed)
    notes = _full_band_notes()
    total = int(seconds * SR)
    out = np.zeros(total, dtype=np.float32)
    onset = 0
    while onset < total:
        note = notes[rng.integers(0, notes.shape[0])] * np.float32(0.2 * rng.uniform(0.4, 1.0))
        end = min(total, onset + note.shape[0])
        out[onset:end] += note[: end - onset]
        onset += int(SR * rng.uniform(0.15, 0.5))
    out += (10 ** (-70 / 20) * rng.normal(size=total)).astype(np.float32)
    return np.stack([out, np.roll(out, 7)], axis=1)


def low_passed(audio: np.ndarray, cutoff_hz: float) -> np.ndarray:
    return sosfiltfilt(butter(16, cutoff_hz, fs=SR, output="sos"), audio, axis=0).astype(np.float32)


def test_bandwidth_flags_a_low_passed_copy_and_passes_the_original() -> None:
    original = realish_piano(20.0, seed=1)
    report = evaluate_quality(original, SR)
    assert report.measurements["bandwidth_hz"] >= 20000
    assert "low_bandwidth" not in report.reasons
    copy_16k = evaluate_quality(low_passed(original, 16000), SR)
    assert 15000 <= copy_16k.measurements["bandwidth_hz"] <= 16600
    assert "low_bandwidth" in copy_16k.reasons
    # A cutoff above the threshold is not flagged, and the estimate follows the cutoff.
    assert 18500 <= effective_bandwidth(low_passed(original, 19000), SR) <= 19500
    assert "low_bandwidth" not in evaluate_quality(low_passed(original, 19000), SR).reasons


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_bandwidth_flags_a_real_128k_mp3_round_trip(tmp_path: Path) -> None:
    original = realish_piano(15.0, seed=2)
    wav, mp3, decoded = tmp_path / "a.wav", tmp_path / "a.mp3", tmp_path / "b.wav"
    sf.write(wav, original, SR, subtype="PCM_16")
    for arguments in (["-i", str(wav), "-c:a", "libmp3lame", "-b:a", "128k", str(mp3)],
                      ["-i", str(mp3), "-ar", str(SR), str(decoded)]):
        subprocess.run(["ffmpeg", "-y", "-loglevel", "error", *arguments], check=True)
    audio, rate = sf.read(decoded, dtype="float32", always_2d=True)
    report = evaluate_quality(audio, rate)
    assert report.measurements["bandwidth_hz"] < 17000
    assert "low_bandwidth" in report.reasons


def _segments(path: Path, params: SegmentParams) -> list[np.ndarray]:
    return [audio for _, audio in iter_segment_audio(path, plan_file(path, params))]


def test_duplicate_found_across_compilations_at_other_gain_and_offset(tmp_path: Path) -> None:
    rate = 16000
    params = SegmentParams(sample_rate=rate)
    shared = piano_piece(60.0, rate, seed=100)
    first, _ = compilation([40.0, 60.0, 35.0], [2.0, 2.0, 2.0, 1.0], rate=rate, seed=10)
    # The second upload holds the shared piece at -8 dB, with its first 7.3 s cut off, after a
    # gap whose length is no multiple of any frame.
    second, _ = compilation([38.0, 1.0, 50.0], [1.37, 2.71, 2.0, 1.0], rate=rate, seed=20)
    start_a = int((2.0 + 40.0 + 2.0) * rate)
    first[start_a : start_a + shared.shape[0]] = shared
    tail = shared[int(7.3 * rate) :] * np.float32(10 ** (-8 / 20))
    start_b = int((1.37 + 38.0 + 2.71) * rate)
    second = np.concatenate([second[:start_b], tail, second[start_b + int(1.0 * rate) :]])
    path_a, path_b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(path_a, first, rate, subtype="PCM_16")
    sf.write(path_b, second, rate, subtype="PCM_16")

    index = FingerprintIndex()
    segments_a = _segments(path_a, params)
    assert len(segments_a) == 3
    for number, audio in enumerate(segments_a):
        verdict = index.admit(f"a-{number}", compute_fingerprint(audio, rate), audio.shape[0] / rate, 30.0)
        assert verdict.whole  # no false match within A
    assert len(index) == 3
    segments_b = _segments(path_b, params)
    found = [[r.duplicate_of for r in index.find_repeats(compute_fingerprint(audio, rate))] for audio in segments_b]
    assert found == [[], ["a-1"], []]
    with pytest.raises(DuplicateItem) as duplicate:
        index.admit("b-1", compute_fingerprint(segments_b[1], rate), segments_b[1].shape[0] / rate, 30.0)
    assert duplicate.value.reason == "duplicate" and duplicate.value.duplicate_of == "a-1"


BOUNDARY_TOLERANCE_S = 1.0
"""How far a cut may sit from the true edge of a repeat. Each fingerprint hash (23 ms) is judged
by the bit error rate over the 3 s around it: about 0 for a repeat, 0.5 for other audio, so the
0.25 threshold is crossed where about half that window is new audio, within a few hundred ms
of the edge (the fingerprint frames span 0.37 s); 1 s leaves room and still fails a cut made at
a segment's end or a window's width off."""


def _admitted_pieces(rate: int) -> tuple[FingerprintIndex, list[np.ndarray]]:
    """An index holding the two pieces of compilation A (seeds 30 and 31), and those pieces."""
    first, truth = compilation([40.0, 40.0], [2.0, 2.0, 1.0], rate=rate, seed=30)
    pieces = [first[int(start * rate) : int(end * rate)] for start, end in truth]
    index = FingerprintIndex()
    for number, piece in enumerate(pieces):
        assert index.admit(f"a-{number}", compute_fingerprint(piece, rate), piece.shape[0] / rate, 30.0).whole
    return index, pieces


def _one_segment(path: Path, audio: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """Write a recording that has no silence inside and cut it: its one segment and its start."""
    sf.write(path, audio, rate, subtype="PCM_16")
    plan = plan_file(path, SegmentParams(sample_rate=rate))
    (segment,) = [audio for _, audio in iter_segment_audio(path, plan)]
    return segment, plan.segments[0].start_s


def test_a_new_piece_between_two_repeats_is_kept_and_the_repeats_cut(tmp_path: Path) -> None:
    rate = 16000
    index, (first, second) = _admitted_pieces(rate)
    new = piano_piece(35.0, rate, seed=40)
    quiet = np.zeros(int(1.5 * rate), np.float32)
    # One stretch without silence: the new piece cannot get a segment of its own.
    recording = np.concatenate([quiet, first * np.float32(0.5), new, second * np.float32(0.5), quiet])
    segment, start_s = _one_segment(tmp_path / "b.wav", recording, rate)
    duration_s = segment.shape[0] / rate

    verdict = index.admit("b-0", compute_fingerprint(segment, rate), duration_s, 30.0)
    assert [r.duplicate_of for r in verdict.repeats] == ["a-0", "a-1"]
    assert all(r.ber <= QualityParams().duplicate_max_ber for r in verdict.repeats)
    ((kept_start, kept_end),) = verdict.kept
    new_start_s = 1.5 + 40.0
    assert start_s + kept_start == pytest.approx(new_start_s, abs=BOUNDARY_TOLERANCE_S)
    assert start_s + kept_end == pytest.approx(new_start_s + 35.0, abs=BOUNDARY_TOLERANCE_S)
    kept = segment[round(kept_start * rate) : round(kept_end * rate), 0]
    offset = round((start_s + kept_start - new_start_s) * rate)
    placed = np.zeros(recording.shape[0], np.float32)
    placed[round(new_start_s * rate) : round(new_start_s * rate) + new.shape[0]] = new
    truth = placed[round(new_start_s * rate) + offset :][: kept.shape[0]]
    assert np.corrcoef(kept, truth)[0, 1] > 0.99

    # The kept stretch is indexed under its own id: a later copy of the new piece repeats it.
    with pytest.raises(DuplicateItem) as duplicate:
        index.admit("c-0", compute_fingerprint(new, rate), 35.0, 30.0)
    assert duplicate.value.duplicate_of == piece_item_id("b-0", kept_start)


def test_a_repeat_in_the_middle_leaves_two_pieces_and_a_whole_repeat_is_dropped(tmp_path: Path) -> None:
    rate = 16000
    index, (first, second) = _admitted_pieces(rate)
    before, after = piano_piece(35.0, rate, seed=50), piano_piece(32.0, rate, seed=51)
    segment, start_s = _one_segment(tmp_path / "c.wav", np.concatenate([before, first * np.float32(0.7), after]), rate)
    verdict = index.admit("c-0", compute_fingerprint(segment, rate), segment.shape[0] / rate, 30.0)
    (repeat,) = verdict.repeats
    assert repeat.duplicate_of == "a-0"
    assert start_s + repeat.start_s == pytest.approx(35.0, abs=BOUNDARY_TOLERANCE_S)
    assert start_s + repeat.end_s == pytest.approx(75.0, abs=BOUNDARY_TOLERANCE_S)
    assert verdict.kept == ((0.0, repeat.start_s), (repeat.end_s, round(segment.shape[0] / rate, 3)))

    # A piece shorter than min_segment_s is not kept: only a repeat and a fragment is a duplicate.
    fragment = np.concatenate([piano_piece(20.0, rate, seed=52), second * np.float32(0.3)])
    with pytest.raises(DuplicateItem) as duplicate:
        index.admit("d-0", compute_fingerprint(fragment, rate), fragment.shape[0] / rate, 30.0)
    assert duplicate.value.duplicate_of == "a-1" and "no other stretch lasts 30 s" in str(duplicate.value)
    assert len(index) == 4  # a-0, a-1 and the two pieces of c-0


def test_fingerprint_survives_gain_offset_and_serialization() -> None:
    piece = realish_piano(30.0, seed=5)
    index = FingerprintIndex()
    index.add("piece", Fingerprint.from_bytes(compute_fingerprint(piece, SR).to_bytes()))
    shifted = np.concatenate([np.zeros((1234, 2), np.float32), piece * np.float32(0.3)])[: piece.shape[0]]
    assert [r.duplicate_of for r in index.find_repeats(compute_fingerprint(shifted, SR))] == ["piece"]
    other = realish_piano(30.0, seed=6)
    assert index.find_repeats(compute_fingerprint(other, SR)) == []


def test_silence_ratio_measures_the_silent_share() -> None:
    tone = realish_piano(10.0, seed=3)
    audio = np.concatenate([tone, np.zeros((int(10.0 * SR), 2), np.float32), tone[: int(5.0 * SR)]])
    assert silence_ratio(audio, SR) == pytest.approx(10.0 / 25.0, abs=0.02)
    assert silence_ratio(tone, SR) == 0.0
    report = evaluate_quality(np.concatenate([tone[: int(5 * SR)], np.zeros((int(15 * SR), 2), np.float32)]), SR)
    assert "silence" in report.reasons


def test_clipping_ratio_counts_flat_tops_not_single_peaks() -> None:
    t = np.arange(20 * SR) / SR
    clean = 0.5 * np.sin(2 * np.pi * 220 * t)
    loud = np.clip(1.5 * np.sin(2 * np.pi * 220 * t[: 2 * SR]), -1.0, 1.0)
    audio = np.concatenate([loud, clean[2 * SR :]]).astype(np.float32)
    expected = np.mean(np.abs(loud) >= 0.999) * (2 * SR) / audio.shape[0]  # runs are ~50 samples long
    assert clipping_ratio(audio) == pytest.approx(expected, rel=0.02)
    assert "clipping" in evaluate_quality(audio, SR).reasons
    single_peaks = clean.astype(np.float32).copy()
    single_peaks[:: SR // 3] = 1.0  # isolated full-scale samples are not clipping
    assert clipping_ratio(single_peaks) == 0.0


def test_loudness_range_follows_the_spread_of_short_term_loudness() -> None:
    noise = (0.1 * np.random.default_rng(4).normal(size=(60 * SR, 2))).astype(np.float32)
    steps = np.repeat(np.float32([1.0, 0.1, 1.0, 10 ** (-10 / 20)]), 15 * SR)[:, None]
    stepped = noise * steps  # 0, -20, 0 and -10 dB sections of steady noise
    assert loudness_range(stepped, SR) == pytest.approx(20.0, abs=1.0)
    assert loudness_range(noise, SR) == pytest.approx(0.0, abs=0.5)
    piece = realish_piano(60.0, seed=4)
    steady = loudness_range(piece, SR)
    assert steady is not None and 0.5 < steady < 6.0
    assert "loudness_range_high" in evaluate_quality(stepped, SR, QualityParams(max_loudness_range_lu=15.0)).reasons
    assert loudness_range(piece[: SR], SR) is None


def test_report_raises_with_every_reason_and_params_are_checked() -> None:
    audio = np.concatenate([realish_piano(4.0, seed=8), np.zeros((16 * SR, 2), np.float32)])
    report = evaluate_quality(low_passed(audio, 12000), SR)
    assert {"silence", "low_bandwidth"} <= set(report.reasons)
    assert report.to_dict()["measurements"]["silence_ratio"] > 0.5
    with pytest.raises(QualityRejected) as rejected:
        report.raise_if_rejected()
    assert rejected.value.reason == report.reasons[0] and rejected.value.reasons == report.reasons
    with pytest.raises(QualityRejected) as bad:
        evaluate_quality(np.full((SR, 2), np.nan, np.float32), SR)
    assert bad.value.reason == "non_finite"
    with pytest.raises(ValidationError, match="max_silence_ratio"):
        QualityParams(max_silence_ratio=1.5)
    with pytest.raises(ValidationError, match="min_loudness_range_lu"):
        QualityParams(min_loudness_range_lu=30.0)
