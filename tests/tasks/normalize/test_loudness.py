"""Loudness normalization, checked with independent measurements.

Loudness is measured by calling pyloudnorm directly on the audio read back from a WAV file, and
true peak with scipy's resample_poly at 4x: never through the module's own helpers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from pydantic import ValidationError
from scipy.signal import firwin, resample_poly

from tasks.normalize.core import (
    ItemRejected,
    UnmeasurableAudio,
    _true_peak_envelope,
    integrated_loudness,
    normalize_loudness,
    true_peak,
    true_peak_dbtp,
)
from tasks.normalize.params import LoudnessParams

RATE = 44100


def measured_lufs(audio: np.ndarray, rate: int = RATE) -> float:
    return pyloudnorm.Meter(rate).integrated_loudness(np.asarray(audio, dtype=np.float64))


def measured_true_peak_dbtp(audio: np.ndarray) -> float:
    upsampled = resample_poly(np.asarray(audio, dtype=np.float64), 4, 1, axis=0)
    return 20 * np.log10(np.abs(upsampled).max())


def round_trip(audio: np.ndarray, tmp_path: Path) -> np.ndarray:
    """The normalized audio as a later stage would see it: written to WAV and read back."""
    path = tmp_path / "normalized.wav"
    sf.write(path, audio, RATE, subtype="FLOAT")
    data, rate = sf.read(path, dtype="float64", always_2d=True)
    assert rate == RATE
    return data


def piano_like(seconds: float = 6.0, level: float = 0.1, seed: int = 0) -> np.ndarray:
    """Decaying harmonic tones in both channels with a little noise: music-like dynamics."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    signal = np.zeros((t.size, 2))
    for onset in np.arange(0.0, seconds, 0.5):
        frequency = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        local = t[t >= onset] - onset
        tone = sum(np.sin(2 * np.pi * frequency * h * local) / h for h in (1, 2, 3, 4))
        decay = np.exp(-local * 3.0)
        pan = rng.uniform(0.3, 0.7)
        signal[t >= onset, 0] += (1 - pan) * tone * decay
        signal[t >= onset, 1] += pan * tone * decay
    signal += 0.01 * rng.standard_normal(signal.shape)
    return (level * signal / np.abs(signal).max()).astype(np.float32)


def sustained_with_transients(seconds: float = 8.0) -> np.ndarray:
    """Quiet sustained chord plus one very short loud transient per second: the loudness sits in
    the chord, the true peak in the transients, so reaching -20 LUFS needs peak limiting."""
    t = np.arange(int(seconds * RATE)) / RATE
    mono = 0.03 * (
        np.sin(2 * np.pi * 220 * t)
        + np.sin(2 * np.pi * 277 * t)
        + 0.5 * np.sin(2 * np.pi * 330 * t)
    )
    burst = 0.8 * np.hanning(64) * np.sin(2 * np.pi * 1000 * np.arange(64) / RATE)
    for second in range(int(seconds)):
        start = second * RATE + 1000
        mono[start : start + 64] += burst
    return np.stack([mono, 0.8 * mono], axis=1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Normalization


@pytest.mark.parametrize("level", [0.02, 0.3, 0.9])
def test_output_is_at_target_and_under_the_ceiling_measured_independently(
    level: float, tmp_path: Path
) -> None:
    params = LoudnessParams()
    audio = piano_like(level=level)
    result = normalize_loudness(audio, RATE, params)
    assert result.audio.dtype == np.float32 and result.audio.shape == audio.shape
    written = round_trip(result.audio, tmp_path)
    assert abs(measured_lufs(written) - params.target_lufs) <= 0.5
    assert measured_true_peak_dbtp(written) <= params.peak_ceiling_dbfs
    assert result.lufs_before == pytest.approx(measured_lufs(audio), abs=0.01)
    assert result.lufs_after == pytest.approx(measured_lufs(written), abs=0.05)
    assert result.true_peak_before_dbtp == pytest.approx(measured_true_peak_dbtp(audio), abs=0.01)
    assert result.true_peak_after_dbtp == pytest.approx(measured_true_peak_dbtp(written), abs=0.01)
    assert result.gain_db == pytest.approx(params.target_lufs - measured_lufs(audio), abs=0.01)


def test_other_targets_and_sample_rates(tmp_path: Path) -> None:
    params = LoudnessParams(target_lufs=-23.0, peak_ceiling_dbfs=-2.0)
    audio = resample_poly(piano_like(), 1, 2, axis=0).astype(np.float32)  # 22.05 kHz
    result = normalize_loudness(audio, RATE // 2, params)
    assert abs(measured_lufs(result.audio, RATE // 2) + 23.0) <= 0.5
    assert measured_true_peak_dbtp(result.audio) <= -2.0


def test_int16_pcm_is_scaled_by_its_range_not_rejected() -> None:
    floats = piano_like(level=0.5)
    pcm = np.round(floats * 32767).astype(np.int16)
    from_pcm = normalize_loudness(pcm, RATE)
    from_floats = normalize_loudness(floats, RATE)
    assert from_pcm.lufs_before == pytest.approx(from_floats.lufs_before, abs=0.01)
    assert abs(measured_lufs(from_pcm.audio) - LoudnessParams().target_lufs) <= 0.5
    assert np.abs(from_pcm.audio - from_floats.audio).max() < 1e-3


def test_int32_pcm_is_scaled_by_its_range() -> None:
    floats = piano_like(level=0.5)
    pcm = np.round(floats.astype(np.float64) * 2**31).astype(np.int32)
    assert normalize_loudness(pcm, RATE).lufs_before == pytest.approx(
        measured_lufs(floats), abs=0.01
    )


def test_mono_is_duplicated_to_stereo() -> None:
    mono = piano_like()[:, 0]
    result = normalize_loudness(mono, RATE)
    assert result.audio.shape == (mono.size, 2)
    assert np.array_equal(result.audio[:, 0], result.audio[:, 1])
    assert abs(measured_lufs(result.audio) - LoudnessParams().target_lufs) <= 0.5


def test_loud_item_is_turned_down_without_the_limiter() -> None:
    loud = np.clip(piano_like(level=1.0) * 4, -1, 1)
    result = normalize_loudness(loud, RATE)
    assert result.gain_db < 0 and not result.limited and result.limiter_reduction_db == 0.0


def test_item_needing_limiting_stays_at_target_and_under_the_ceiling(tmp_path: Path) -> None:
    params = LoudnessParams()
    audio = sustained_with_transients()
    # Precondition: plain gain to the target would push the true peak over the ceiling.
    needed_gain = params.target_lufs - measured_lufs(audio)
    assert measured_true_peak_dbtp(audio) + needed_gain > params.peak_ceiling_dbfs + 3
    result = normalize_loudness(audio, RATE, params)
    assert result.limited and result.limiter_reduction_db > 3
    written = round_trip(result.audio, tmp_path)
    assert abs(measured_lufs(written) - params.target_lufs) <= 0.5
    assert measured_true_peak_dbtp(written) <= params.peak_ceiling_dbfs
    # Transparent: away from the transients the sustained chord is only scaled, not distorted.
    quiet = slice(int(0.3 * RATE), int(0.9 * RATE))
    ratio = result.audio[quiet] / audio[quiet]
    assert np.ptp(ratio[np.abs(audio[quiet]) > 0.01]) < 1e-3


def test_reject_policy_rejects_the_item_that_needs_limiting() -> None:
    with pytest.raises(ItemRejected) as caught:
        normalize_loudness(sustained_with_transients(), RATE, LoudnessParams(peak_policy="reject"))
    assert caught.value.reason_code == "peak_exceeds_ceiling"
    assert "dB of gain; true peak would reach" in caught.value.message
    assert "dBTP" in caught.value.message


def test_limiting_beyond_the_allowed_depth_is_rejected() -> None:
    with pytest.raises(ItemRejected) as caught:
        normalize_loudness(sustained_with_transients(), RATE, LoudnessParams(max_limiting_db=2.0))
    assert caught.value.reason_code == "peak_exceeds_ceiling"
    assert "limit of 2.0 dB" in caught.value.message


# --------------------------------------------------------------------------------------------
# Rejections


def test_digital_silence_is_rejected_never_nan() -> None:
    with pytest.raises(ItemRejected) as caught:
        normalize_loudness(np.zeros((3 * RATE, 2), np.float32), RATE)
    assert caught.value.reason_code == "silent"


def test_near_silence_needing_absurd_gain_is_rejected() -> None:
    whisper = piano_like(level=10 ** (-50 / 20))
    needed_gain = LoudnessParams().target_lufs - measured_lufs(whisper)
    assert LoudnessParams().max_gain_db < needed_gain and measured_lufs(whisper) > -70
    with pytest.raises(ItemRejected) as caught:
        normalize_loudness(whisper, RATE)
    assert caught.value.reason_code == "excessive_gain"
    assert "dB of gain" in caught.value.message


@pytest.mark.parametrize("seconds, minimum", [(0.5, 1.0), (0.3, 0.4), (0.0, 1.0)])
def test_too_short_is_rejected(seconds: float, minimum: float) -> None:
    with pytest.raises(ItemRejected) as caught:
        normalize_loudness(
            piano_like()[: int(seconds * RATE)], RATE, LoudnessParams(min_duration_s=minimum)
        )
    assert caught.value.reason_code == "too_short"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_rejected(bad: float) -> None:
    audio = piano_like()
    audio[1000, 1] = bad
    with pytest.raises(ItemRejected) as caught:
        normalize_loudness(audio, RATE)
    assert caught.value.reason_code == "non_finite"


def test_more_than_two_channels_is_rejected_with_the_shape() -> None:
    with pytest.raises(ItemRejected, match=r"\(44100, 6\)") as caught:
        normalize_loudness(np.zeros((RATE, 6), np.float32), RATE)
    assert caught.value.reason_code == "bad_shape"


@pytest.mark.parametrize(
    "bad",
    [
        {"peak_policy": "clip"},
        {"min_duration_s": 0.2},
        {"peak_ceiling_dbfs": 0.5},
        {"target_lufs": -0.5},
        {"max_gain_db": 0},
        {"max_limiting_db": -1},
    ],
)
def test_bad_loudness_params_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError, match=next(iter(bad))):
        LoudnessParams(**bad)


def test_params_and_stats_are_json_able() -> None:
    params = LoudnessParams(target_lufs=-18.0, peak_policy="reject")
    assert LoudnessParams.model_validate(json.loads(params.model_dump_json())) == params
    stats = normalize_loudness(piano_like(), RATE).stats()
    assert "audio" not in stats and json.loads(json.dumps(stats))["limited"] is False


# --------------------------------------------------------------------------------------------
# True peak


def test_true_peak_finds_inter_sample_peaks_like_resample_poly() -> None:
    t = np.arange(RATE) / RATE
    # A quarter-rate sine sampled 45 degrees off its crests: samples miss the peak by 3 dB.
    sine = (0.5 * np.sin(2 * np.pi * (RATE / 4) * t + np.pi / 4)).astype(np.float32)
    assert 20 * np.log10(np.abs(sine).max()) == pytest.approx(-9.03, abs=0.01)
    assert true_peak_dbtp(sine) == pytest.approx(measured_true_peak_dbtp(sine), abs=1e-6)
    noise = np.random.default_rng(3).standard_normal((5 * RATE, 2)).astype(np.float32) * 0.1
    assert true_peak_dbtp(noise) == pytest.approx(measured_true_peak_dbtp(noise), abs=1e-6)
    music = piano_like(level=0.7)
    assert true_peak_dbtp(music) == pytest.approx(measured_true_peak_dbtp(music), abs=1e-6)


def oversampled_magnitudes(audio: np.ndarray) -> np.ndarray:
    """|4x oversampled| values, (4n, channels), by resample_poly in float64 (the reference)."""
    samples = np.asarray(audio, dtype=np.float32).astype(np.float64)
    samples = samples[:, None] if samples.ndim == 1 else samples
    return np.abs(resample_poly(samples, 4, 1, axis=0))


def worst_case_burst(amplitude: float) -> np.ndarray:
    """20 samples of +-amplitude signed like the half-sample taps of resample_poly's 4x filter:
    the pattern whose interpolated value overshoots its samples the most (about 2.2x)."""
    taps = firwin(81, 0.25, window=("kaiser", 5.0))
    half_sample_taps = taps[42 - 4 * np.arange(-9, 11)]
    return (amplitude * np.sign(half_sample_taps)).astype(np.float32)


def true_peak_cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    t = np.arange(3 * RATE) / RATE
    loud_sine = np.sin(2 * np.pi * 220 * t)
    hidden = loud_sine.copy()
    hidden[RATE : RATE + 20] = worst_case_burst(0.5)  # samples at 0.5, interpolated above 1.0
    isolated = loud_sine.copy()
    isolated[RATE - 100 : RATE + 120] = 0.0
    isolated[RATE : RATE + 20] = worst_case_burst(0.5)  # nothing loud within reach either
    not_hidden = loud_sine.copy()
    not_hidden[RATE : RATE + 20] = worst_case_burst(0.4)  # interpolated just under 1.0
    clipped = np.clip(3.0 * piano_like(level=1.0, seconds=3.0), -1.0, 1.0)
    near_nyquist = 0.7 * np.sin(2 * np.pi * 0.47 * RATE * t + 0.3)
    edge_peaks = 0.1 * rng.standard_normal((RATE, 2))
    edge_peaks[0, 0], edge_peaks[-1, 1] = 0.95, -0.97
    return {
        "noise": 0.3 * rng.standard_normal((2 * RATE + 7, 2)),
        "piano": piano_like(level=0.8, seconds=3.0),
        "clipped": clipped,
        "hidden_overshoot": np.stack([0.5 * loud_sine, hidden], axis=1),
        "isolated_overshoot": isolated,
        "no_hidden_overshoot": not_hidden,
        "near_nyquist": near_nyquist,
        "peaks_at_the_edges": edge_peaks,
        "impulse": np.eye(1, 101, 50)[0],
        "one_sample": np.array([[0.25, -0.5]]),
        "shorter_than_a_frame": rng.uniform(-1, 1, (31, 2)),
        "one_frame_and_a_bit": rng.uniform(-1, 1, (53, 2)),
    }


@pytest.mark.parametrize("case", sorted(true_peak_cases()))
def test_true_peak_equals_oversampling_the_whole_signal(case: str) -> None:
    audio = true_peak_cases()[case]
    assert true_peak(audio) == pytest.approx(oversampled_magnitudes(audio).max(), rel=1e-12)


@pytest.mark.parametrize("case", ["hidden_overshoot", "isolated_overshoot"])
def test_an_overshoot_between_quieter_samples_is_found(case: str) -> None:
    # Precondition: the burst's samples stay under the sine's peak, its interpolated value not.
    audio = true_peak_cases()[case].reshape(3 * RATE, -1)
    burst = audio[RATE : RATE + 20, -1]
    assert np.abs(burst).max() < np.abs(audio).max() < oversampled_magnitudes(burst).max()
    assert true_peak(audio) > 1.05


@pytest.mark.parametrize(
    "case", ["piano", "clipped", "hidden_overshoot", "isolated_overshoot", "near_nyquist"]
)
def test_limiter_envelope_is_exact_wherever_it_exceeds_the_level(case: str) -> None:
    audio = np.asarray(true_peak_cases()[case], dtype=np.float32)
    audio = audio.reshape(audio.shape[0], -1)  # (n, channels), as the limiter passes it
    level = 0.8 * float(np.abs(audio).max())
    # Reference: per input sample n, the largest oversampled |value| over [n - 1, n + 1).
    per_sample = oversampled_magnitudes(audio).max(axis=1).reshape(-1, 4).max(axis=1)
    reference = np.maximum(per_sample, np.concatenate(([0.0], per_sample[:-1])))
    envelope = _true_peak_envelope(audio, level)
    above = reference > level
    assert above.any() and (~above).any()
    np.testing.assert_allclose(envelope[above], reference[above], rtol=1e-6)  # float32 envelope
    assert envelope[~above].max() <= level


# --------------------------------------------------------------------------------------------
# Loudness measurement


def with_silences(audio: np.ndarray) -> np.ndarray:
    """Loud audio, 2 s of digital silence, a -60 dB whisper: the gates decide what counts."""
    silence = np.zeros((2 * RATE, audio.shape[1]), np.float32)
    return np.concatenate([audio, silence, audio * np.float32(1e-3)])


@pytest.mark.parametrize(
    "audio, rate",
    [
        (piano_like(), RATE),
        (piano_like()[:, 0], RATE),
        (piano_like()[:, :1], RATE),
        (with_silences(piano_like()), RATE),
        (piano_like(seconds=1.234), RATE),
        (piano_like(seconds=0.4), RATE),
        (resample_poly(piano_like(), 1, 2, axis=0), RATE // 2),
        (resample_poly(piano_like(), 160, 147, axis=0), 48000),
        (np.random.default_rng(5).standard_normal((RATE, 5)) * 0.05, RATE),
    ],
    ids=["stereo", "mono-1d", "mono-2d", "gated", "odd-length", "one-block", "22k", "48k", "5ch"],
)
def test_integrated_loudness_matches_pyloudnorm(audio: np.ndarray, rate: int) -> None:
    expected = pyloudnorm.Meter(rate).integrated_loudness(np.asarray(audio, dtype=np.float64))
    assert integrated_loudness(audio, rate) == pytest.approx(expected, abs=1e-6)


def test_loudness_of_silence_is_minus_infinity() -> None:
    assert integrated_loudness(np.zeros((RATE, 2), np.float32), RATE) == float("-inf")
    whisper = piano_like(level=1e-5)  # under the -70 LUFS absolute gate
    assert integrated_loudness(whisper, RATE) == float("-inf")


@pytest.mark.parametrize(
    "audio, match",
    [
        (np.zeros((RATE // 4, 2), np.float32), "shorter than one 0.4 s gating block"),
        (np.zeros((RATE, 2), np.int16), "float samples, got int16"),
        (np.zeros((RATE, 6), np.float32), r"\(44100, 6\)"),
    ],
)
def test_unmeasurable_audio_is_refused_with_the_reason(audio: np.ndarray, match: str) -> None:
    with pytest.raises(UnmeasurableAudio, match=match):
        integrated_loudness(audio, RATE)
