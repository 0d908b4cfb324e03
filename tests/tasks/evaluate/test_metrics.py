"""Evaluation measures on synthetic audio whose answers are known by construction."""

from __future__ import annotations

import math
from functools import cache
from itertools import pairwise

import numpy as np
import pytest
from scipy.signal import square

from tasks.evaluate.metrics import (
    CLIP_METRICS,
    FLAG_BEEP,
    FLAG_NON_FINITE,
    FLAG_SILENT,
    METRICS,
    count_flags,
    embedding_frames,
    embedding_stats,
    frechet_distance,
    measure_clip,
    summarize,
)
from tasks.evaluate.stage import flag_lines, set_flags
from tests.helpers import piano_like

SR = 44100


@cache
def _cached_piano(seconds: float, seed: int) -> np.ndarray:
    audio = piano_like(seconds, seed)
    audio.flags.writeable = False
    return audio


def _piano(seconds: float, seed: int, gain: float = 1.0) -> np.ndarray:
    """A writable copy of `tests.helpers.piano_like` (made once per test module: ~0.7 s each)."""
    return _cached_piano(seconds, seed) * np.float32(gain)


def _click_track(times: np.ndarray, seconds: float) -> np.ndarray:
    """Mono clicks (10 ms decaying 2 kHz bursts) at `times`."""
    audio = np.zeros(int(seconds * SR), dtype=np.float32)
    n = np.arange(441)
    burst = (0.5 * np.exp(-n / 60) * np.sin(2 * np.pi * 2000 * n / SR)).astype(np.float32)
    for t in times:
        start = int(t * SR)
        audio[start : start + len(burst)] += burst[: len(audio) - start]
    return audio


def _steady_clicks(bpm: float, seconds: float) -> np.ndarray:
    return _click_track(np.arange(0.1, seconds - 0.1, 60.0 / bpm), seconds)


def _drifting_clicks(start_bpm: float, end_bpm: float, seconds: float) -> np.ndarray:
    times, t = [], 0.1
    while t < seconds - 0.1:
        times.append(t)
        t += 60.0 / (start_bpm + (end_bpm - start_bpm) * t / seconds)
    return _click_track(np.array(times), seconds)


def _sine(frequency: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * frequency * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


@pytest.mark.parametrize("seed", range(5))
def test_music_like_audio_is_not_a_beep(seed):
    clip = measure_clip(_piano(3.0, seed))
    assert FLAG_BEEP not in clip["flags"] and clip["beep_score"] < 0.75
    assert clip["flags"] == []
    assert -40.0 < clip["loudness_lufs"] < -10.0 and clip["silence_ratio"] < 0.1


def test_stuck_tones_score_as_collapse():
    t = np.arange(3 * SR) / SR
    tones = {
        "sine": _sine(440.0, 3.0),
        "square": (0.3 * square(2 * np.pi * 300 * t)).astype(np.float32),
        "vibrato": (0.3 * np.sin(2 * np.pi * 440 * t + 3 * np.sin(2 * np.pi * 5 * t))).astype(np.float32),
    }
    for name, audio in tones.items():
        clip = measure_clip(np.stack([audio, audio], axis=1))
        assert clip["beep_score"] > 0.85, name
        assert clip["flags"] == [FLAG_BEEP], name
    music = min(measure_clip(_piano(3.0, seed))["beep_score"] for seed in range(3))
    assert measure_clip(_sine(440.0, 3.0))["beep_score"] > music + 0.3


def test_silence_is_measured_and_flagged():
    clip = measure_clip(np.zeros((3 * SR, 2), dtype=np.float32))
    assert clip["silence_ratio"] == 1.0
    assert clip["loudness_lufs"] is None
    assert clip["flags"] == [FLAG_SILENT]
    assert clip["onset_density"] == 0.0 and clip["tempo_ibi_cv"] is None


def test_half_silent_audio_has_half_silent_frames():
    music = _piano(3.0, 3)
    audio = np.concatenate([music, np.zeros_like(music)])
    assert measure_clip(audio)["silence_ratio"] == pytest.approx(0.5, abs=0.03)


def test_non_finite_samples_are_flagged_and_the_rest_measured():
    audio = _piano(3.0, 4)
    audio[1000:5000] = np.nan
    audio[9000, 0] = np.inf
    clip = measure_clip(audio)
    assert clip["flags"] == [FLAG_NON_FINITE]
    assert math.isfinite(clip["loudness_lufs"]) and clip["bandwidth_hz"] > 0
    all_nan = measure_clip(np.full((SR, 2), np.nan, dtype=np.float32))
    assert all_nan["flags"] == [FLAG_NON_FINITE, FLAG_SILENT]


def test_a_clip_too_short_for_loudness_is_still_measured():
    clip = measure_clip(_piano(3.0, 4)[: int(0.3 * SR)])
    assert clip["loudness_lufs"] is None and clip["silence_ratio"] < 0.5


def test_tempo_stability_separates_a_steady_pulse_from_a_drifting_one():
    steady = [measure_clip(_steady_clicks(bpm, 10.0))["tempo_ibi_cv"] for bpm in (90, 120)]
    drifting = [measure_clip(_drifting_clicks(a, b, 10.0))["tempo_ibi_cv"] for a, b in ((80, 160), (100, 140))]
    assert max(steady) < 0.03
    assert min(drifting) > 0.06
    assert min(drifting) > 3 * max(steady)


@pytest.mark.parametrize("bpm", [90, 150, 240])
def test_onset_density_counts_clicks_per_second(bpm):
    seconds = 10.0
    audio = _steady_clicks(bpm, seconds)
    expected = len(np.arange(0.1, seconds - 0.1, 60.0 / bpm)) / seconds
    assert measure_clip(audio)["onset_density"] == pytest.approx(expected, rel=0.1)


def test_bandwidth_follows_the_spectrum():
    low = measure_clip(_sine(300.0, 2.0) + _sine(600.0, 2.0))["bandwidth_hz"]
    rng = np.random.default_rng(0)
    noise = measure_clip((0.1 * rng.normal(size=(2 * SR, 2))).astype(np.float32))["bandwidth_hz"]
    assert 550 < low < 650
    assert noise > 19000


def test_frechet_distance_is_zero_on_itself_and_grows_with_a_gain_change():
    clips = [_piano(3.0, seed) for seed in range(4)]
    reference = embedding_stats([embedding_frames(clip) for clip in clips])
    assert reference[0].shape == (128,) and reference[1].shape == (128, 128)
    assert frechet_distance(*reference, *reference) == pytest.approx(0.0, abs=1e-6)
    distances = [
        frechet_distance(*reference, *embedding_stats([embedding_frames(clip * gain) for clip in clips]))
        for gain in (0.9, 0.7, 0.5, 0.3)
    ]
    assert all(a < b for a, b in pairwise(distances))
    assert distances[0] > 1.0


def test_frechet_distance_grows_with_spectral_tilt():
    """A first-order low-pass of increasing strength moves the set ever further away."""
    clips = [_piano(3.0, seed) for seed in range(3)]
    reference = embedding_stats([embedding_frames(clip) for clip in clips])

    def smoothed(audio: np.ndarray, pole: float) -> np.ndarray:
        from scipy.signal import lfilter

        return lfilter([1 - pole], [1, -pole], audio, axis=0).astype(np.float32)

    distances = [
        frechet_distance(*reference, *embedding_stats([embedding_frames(smoothed(c, pole)) for c in clips]))
        for pole in (0.2, 0.5, 0.8)
    ]
    assert distances[0] < distances[1] < distances[2]


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    mean_a, mean_b = np.array([0.0, 1.0]), np.array([3.0, 1.0])
    cov_a, cov_b = np.diag([4.0, 1.0]), np.diag([1.0, 9.0])
    expected = 9.0 + (2 - 1) ** 2 + (1 - 3) ** 2
    assert frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected)


def test_embedding_of_a_short_clip_is_one_frame_and_its_stats_are_defined():
    frames = embedding_frames(_piano(3.0, 1)[: SR // 2])
    assert frames.shape == (1, 128)
    mean, cov = embedding_stats(frames)
    assert np.all(cov == 0) and np.isfinite(mean).all()
    with pytest.raises(ValueError, match="non-empty"):
        embedding_stats(np.zeros((0, 128)))


def test_summary_and_flag_counts():
    clips = [measure_clip(_piano(3.0, seed, gain=gain)) for seed, gain in ((0, 1.0), (0, 0.25))]
    clips.append(measure_clip(np.zeros((SR, 2), dtype=np.float32)))
    summary = summarize(clips)
    assert set(summary) == set(CLIP_METRICS) | {"loudness_spread_lu"}
    assert set(summary) <= set(METRICS)
    loudness = [clips[0]["loudness_lufs"], clips[1]["loudness_lufs"]]
    assert summary["loudness_lufs"] == pytest.approx(np.mean(loudness))
    # the same piece at a gain of 0.25 is 12 dB quieter: the clips lie 12 LU apart, spread 6 LU
    assert summary["loudness_spread_lu"] == pytest.approx(6.0, abs=0.5)
    assert summary["silence_ratio"] == pytest.approx((clips[0]["silence_ratio"] + clips[1]["silence_ratio"] + 1) / 3)
    assert count_flags(clips) == {FLAG_SILENT: 1}
    assert summarize([])["loudness_lufs"] is None


def test_set_flags_count_the_clips_of_each_flag():
    silent = measure_clip(np.zeros((SR, 2), dtype=np.float32))
    broken = measure_clip(np.full((SR, 2), np.nan, dtype=np.float32))
    music = measure_clip(_piano(3.0, 0))
    flags = set_flags([silent, broken, music], "samples")
    assert flags == ["1/3 samples non-finite", "2/3 samples silent"]
    assert flag_lines([{"subject": "demo-gan@2", "flags": flags}, {"subject": "piano@1", "flags": []}]) == [
        "demo-gan@2: 1/3 samples non-finite", "demo-gan@2: 2/3 samples silent"]
