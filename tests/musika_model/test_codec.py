"""The encode/decode codec with a tiny autoencoder (audio file I/O itself: test_audio.py)."""

import json

import numpy as np
import pytest
import soundfile as sf

from musika_model import audio
from musika_model.codec import (
    Autoencoder,
    AutoencoderFolderError,
    LatentShapeError,
    NonFiniteLatentsError,
)
from musika_model.config import AutoencoderConfig
from musika_model.frontend import latents_for_samples, samples_for_latents
from musika_model.layers import noise_layers
from tests.helpers import two_partials

SR = 44100


@pytest.fixture(scope="module")
def autoencoder() -> Autoencoder:
    return Autoencoder.build(AutoencoderConfig.tiny())


# ------------------------------------------------------------------ encode / decode


@pytest.mark.parametrize("seconds", [0.01, 0.5, 1.0, 3.3])
def test_encode_decode_shapes_lengths_and_padding(autoencoder, seconds):
    data = two_partials(seconds)
    result = autoencoder.encode(data)
    count = latents_for_samples(len(data))
    assert result.latents.shape == (count, 128)
    assert result.latents.dtype == np.float32
    assert np.isfinite(result.latents).all() and np.abs(result.latents).max() <= 1.0
    assert result.num_samples == len(data)
    assert result.num_samples + result.padded_samples == samples_for_latents(count)
    assert result.padded == (result.padded_samples > 0)

    decoded = autoencoder.decode(result.latents)
    assert decoded.shape == (samples_for_latents(count), 2)
    assert np.isfinite(decoded).all() and np.abs(decoded).max() <= 1.0
    trimmed = autoencoder.decode(result.latents, num_samples=result.num_samples)
    assert trimmed.shape == data.shape


def test_audio_shorter_than_one_chunk_is_padded_not_dropped(autoencoder):
    tiny = two_partials(0.01)  # 441 samples: less than one STFT frame
    result = autoencoder.encode(tiny)
    assert result.num_latents == 1
    assert result.padded and result.padded_samples == 4096 + 768 - 441
    exact = np.zeros((8 * 4096 + 768, 2), np.float32)
    assert not autoencoder.encode(exact).padded


def test_latents_are_local_so_a_prefix_encodes_to_a_prefix(autoencoder):
    data = two_partials(4.0)
    whole = autoencoder.encode(data).latents
    prefix = autoencoder.encode(data[: samples_for_latents(13)]).latents
    assert prefix.shape == (13, 128)
    np.testing.assert_allclose(prefix, whole[:13], atol=1e-5)


def test_mono_input_is_duplicated_to_both_halves(autoencoder):
    mono = two_partials(1.5)[:, 0]
    latents = autoencoder.encode(mono).latents
    np.testing.assert_array_equal(latents[:, :64], latents[:, 64:])
    stereo = autoencoder.encode(np.stack([mono, mono], axis=1)).latents
    np.testing.assert_array_equal(latents, stereo)


def test_integer_pcm_encodes_like_its_float_equivalent(autoencoder):
    pcm = (two_partials(1.0) * 32767).astype(np.int16)
    from_int = autoencoder.encode(pcm).latents
    from_float = autoencoder.encode(pcm.astype(np.float32) / 32768).latents
    np.testing.assert_allclose(from_int, from_float, atol=1e-6)


@pytest.mark.parametrize("rate", [16000, 22050, 48000])
def test_other_sample_rates_are_resampled_first(autoencoder, rate):
    data = two_partials(2.0, rate=rate)
    result = autoencoder.encode(data, sample_rate=rate)
    assert result.source_sample_rate == rate
    assert abs(result.num_samples - 2 * SR) <= 1
    direct = autoencoder.encode(audio.resample(data, rate))
    np.testing.assert_array_equal(result.latents, direct.latents)


def test_streaming_file_encode_equals_in_memory_encode(autoencoder, tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, two_partials(12.0, rate=48000), 48000)
    in_memory = autoencoder.encode(audio.load_audio(path), piece_latents=40)
    streamed = autoencoder.encode_file(path, piece_latents=40, block_frames=30_000)
    assert streamed.source_sample_rate == 48000
    assert streamed.num_samples == in_memory.num_samples
    assert streamed.padded_samples == in_memory.padded_samples
    np.testing.assert_array_equal(streamed.latents, in_memory.latents)
    # Piece size changes only the batching, not the result.
    single_piece = autoencoder.encode(audio.load_audio(path), piece_latents=10_000)
    np.testing.assert_allclose(single_piece.latents, streamed.latents, atol=1e-5)


def test_piecewise_decode_equals_whole_decode(autoencoder):
    latents = autoencoder.encode(two_partials(6.0)).latents
    whole = autoencoder.decode(latents, piece_latents=1024)
    pieces = autoencoder.decode(latents, piece_latents=16)
    np.testing.assert_allclose(pieces, whole, atol=1e-5)


def test_decode_noise_is_seeded(autoencoder):
    latents = autoencoder.encode(two_partials(1.0)).latents
    scales = [layer.noise_weight for model in (autoencoder.decoder1, autoencoder.decoder2)
              for layer in noise_layers(model)]
    assert scales
    for scale in scales:
        scale.assign([0.3])
    try:
        first = autoencoder.decode(latents, seed=3)
        again = autoencoder.decode(latents, seed=3)
        other = autoencoder.decode(latents, seed=4)
    finally:
        for scale in scales:
            scale.assign([0.0])
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_bad_audio_and_latents_raise_specific_errors(autoencoder):
    with pytest.raises(audio.EmptyAudioError):
        autoencoder.encode(np.zeros((0, 2), np.float32))
    with pytest.raises(audio.NonFiniteAudioError):
        autoencoder.encode(np.full(5000, np.nan, np.float32))
    with pytest.raises(audio.SampleRateError, match="positive"):
        autoencoder.encode(two_partials(0.2), sample_rate=0)
    with pytest.raises(LatentShapeError, match=r"\(T, 128\)"):
        autoencoder.decode(np.zeros((10, 64), np.float32))
    with pytest.raises(LatentShapeError, match="T >= 1"):
        autoencoder.decode(np.zeros((0, 128), np.float32))
    with pytest.raises(LatentShapeError, match="floating"):
        autoencoder.decode(np.zeros((4, 128), np.int32))
    latents = np.zeros((4, 128), np.float32)
    latents[2, 5] = np.nan
    with pytest.raises(NonFiniteLatentsError, match=r"\(2, 5\)"):
        autoencoder.decode(latents)
    with pytest.raises(ValueError, match="num_samples"):
        autoencoder.decode(np.zeros((4, 128), np.float32), num_samples=10**6)


def test_encode_file_errors(autoencoder, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        autoencoder.encode_file(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(audio.AudioFileError, match="junk.wav"):
        autoencoder.encode_file(tmp_path / "junk.wav")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), SR)
    with pytest.raises(audio.EmptyAudioError):
        autoencoder.encode_file(empty)


# ------------------------------------------------------------------ save / load


def test_save_and_load_round_trip(autoencoder, tmp_path):
    data = two_partials(1.0)
    folder = autoencoder.save(tmp_path / "ae")
    loaded = Autoencoder.load(folder)
    assert loaded.config == autoencoder.config
    np.testing.assert_array_equal(loaded.encode(data).latents, autoencoder.encode(data).latents)
    latents = autoencoder.encode(data).latents
    np.testing.assert_allclose(loaded.decode(latents), autoencoder.decode(latents), atol=1e-6)


def test_load_rejects_incomplete_or_mismatched_folders(autoencoder, tmp_path):
    with pytest.raises(AutoencoderFolderError, match="autoencoder.json"):
        Autoencoder.load(tmp_path)
    folder = autoencoder.save(tmp_path / "ae")
    (folder / "decoder2.npz").unlink()
    with pytest.raises(AutoencoderFolderError, match="missing decoder2.npz"):
        Autoencoder.load(folder)

    other = autoencoder.save(tmp_path / "other")
    meta = json.loads((other / "autoencoder.json").read_text())
    meta["config"] = AutoencoderConfig.tiny(divisor=8).to_dict()
    (other / "autoencoder.json").write_text(json.dumps(meta))
    with pytest.raises(AutoencoderFolderError, match="does not fit"):
        Autoencoder.load(other)


def test_official_layout_export_and_import_round_trip(autoencoder, tmp_path):
    written = autoencoder.save_official(tmp_path / "official")
    assert sorted(path.name for path in written) == ["dec.h5", "dec2.h5", "enc.h5", "enc2.h5"]
    imported = Autoencoder.from_official(tmp_path / "official")
    assert imported.config == autoencoder.config
    data = two_partials(1.0)
    np.testing.assert_array_equal(imported.encode(data).latents, autoencoder.encode(data).latents)


def test_encode_file_memory_is_bounded_by_block_and_piece_not_file_length(autoencoder, tmp_path):
    import tracemalloc

    path = tmp_path / "long.wav"
    seconds = 40.0
    with sf.SoundFile(path, "w", SR, 2, subtype="PCM_16") as handle:
        for index in range(int(seconds)):
            handle.write(two_partials(1.0, seed=index))
    whole_file_bytes = int(seconds * SR) * 2 * 4
    autoencoder.encode_file(path, piece_latents=16, block_frames=8192)  # warm-up: tracing
    tracemalloc.start()
    try:
        result = autoencoder.encode_file(path, piece_latents=16, block_frames=8192)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.num_samples == int(seconds * SR)
    assert peak < whole_file_bytes / 4, (peak, whole_file_bytes)
