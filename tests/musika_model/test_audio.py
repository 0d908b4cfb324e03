"""musika_model.audio, the one audio I/O module: reading, writing, conversion, the NaN rule,
the error family, and faults of the machine kept as OSError (plus the stage-level helpers
left in tasks.pipeline.audio_io).

Files are written with soundfile directly and read back with soundfile directly, so each side
is checked against libsndfile rather than against the module itself.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musika_model import audio
from tasks.pipeline.audio_io import audio_stats, single_audio_file
from tests.helpers import two_partials

SR = 44100


def _with_nan(tmp_path: Path, frame: int = 30_000, value: float = np.nan) -> tuple[Path, np.ndarray]:
    data = two_partials(1.0)
    data[frame, 1] = value
    path = tmp_path / "nan.wav"
    sf.write(path, data, SR, subtype="FLOAT")
    return path, data


# ------------------------------------------------------------------ the error family


def test_every_audio_error_is_a_value_error_of_one_family():
    for error in (audio.AudioFileError, audio.EmptyAudioError, audio.NonFiniteAudioError,
                  audio.ChannelLayoutError, audio.AudioDtypeError, audio.SampleRateError):
        assert issubclass(error, audio.AudioError)
    assert issubclass(audio.AudioError, ValueError)
    assert not issubclass(audio.AudioError, OSError)
    assert issubclass(audio.TruncatedAudioError, audio.AudioFileError)


# ------------------------------------------------------------------ reading


def test_wav_round_trip_is_float32_stereo(tmp_path):
    data = two_partials(1.0)
    path = audio.write_wav(tmp_path / "sub" / "a.wav", data, SR)
    assert sf.info(path).subtype == "FLOAT" and sf.info(path).channels == 2
    back, rate = audio.read_audio(path)
    assert rate == SR and back.dtype == np.float32 and np.array_equal(back, data)
    read, rate = sf.read(path, dtype="float32")
    assert rate == SR
    np.testing.assert_array_equal(read, data)


def test_reading_a_mono_file_gives_stereo_at_its_own_rate(tmp_path):
    mono = two_partials(1.0, rate=22050)[:, 0]
    sf.write(tmp_path / "mono.flac", mono, 22050, subtype="PCM_16")
    data, rate = audio.read_audio(tmp_path / "mono.flac")
    assert rate == 22050 and data.shape == (mono.size, 2)
    assert np.array_equal(data[:, 0], data[:, 1])
    assert np.abs(data[:, 0] - mono).max() < 1e-4


def test_load_audio_resamples_and_duplicates_mono(tmp_path):
    mono = two_partials(2.0, rate=22050)[:, 0]
    path = tmp_path / "mono.flac"
    sf.write(path, mono, 22050)
    loaded = audio.load_audio(path)
    assert loaded.shape == (2 * SR, 2)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded[:, 0], loaded[:, 1])
    # The 262 Hz partial survives resampling: compare spectra peaks.
    spectrum = np.abs(np.fft.rfft(loaded[:, 0]))
    assert abs(np.argmax(spectrum) * SR / len(loaded) - 262) < 2


def test_int16_pcm_is_scaled_to_unit_range(tmp_path):
    samples = np.array([0, 16384, -32768, 32767] * 1000, np.int16)
    path = tmp_path / "pcm16.wav"
    sf.write(path, samples, SR, subtype="PCM_16")
    loaded = audio.load_audio(path)
    np.testing.assert_allclose(loaded[:4, 0], [0.0, 0.5, -1.0, 32767 / 32768])
    np.testing.assert_allclose(audio.to_stereo_float(samples)[:4, 1], loaded[:4, 1])


def test_streaming_blocks_equal_whole_file_for_resampled_ogg(tmp_path):
    path = tmp_path / "clip.ogg"
    sf.write(path, two_partials(3.0, rate=48000), 48000, format="OGG", subtype="VORBIS")
    blocks = list(audio.iter_audio_blocks(path, block_frames=10_000))
    assert len(blocks) > 10
    assert max(len(block) for block in blocks) <= 10_000
    whole = audio.load_audio(path)
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    assert abs(len(whole) - 3 * SR) <= 1


def test_blocks_at_the_file_rate_and_windows(tmp_path):
    data = two_partials(1.0, rate=48000)
    path = tmp_path / "clip.wav"
    sf.write(path, data, 48000, subtype="FLOAT")
    blocks = list(audio.iter_audio_blocks(path, None, block_frames=10_000))
    assert [len(block) for block in blocks] == [10_000] * 4 + [8000]
    np.testing.assert_array_equal(np.concatenate(blocks), data)
    window, rate = audio.read_audio_window(path, 1000, 500)
    assert rate == 48000
    np.testing.assert_array_equal(window, data[1000:1500])
    tail, _ = audio.read_audio_window(path, 47_900, 500)  # fewer frames at the end
    np.testing.assert_array_equal(tail, data[47_900:])
    assert audio.read_audio_window(path, 10**6, 10)[0].shape == (0, 2)


def test_audio_info_reads_the_header(tmp_path):
    path = tmp_path / "clip.flac"
    sf.write(path, two_partials(0.5, rate=22050)[:, 0], 22050, subtype="PCM_16")
    info = audio.audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (22050, 1, 11025)
    assert (info.format, info.subtype, info.duration) == ("FLAC", "PCM_16", 0.5)


def test_bad_files_raise_the_family_and_name_the_file(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....WAVEjunk")
    other = tmp_path / "broken.wav"
    other.write_bytes(b"this is not audio at all" * 10)
    for path in (junk, other):
        for read in (audio.read_audio, audio.load_audio, audio.audio_info):
            with pytest.raises(audio.AudioFileError, match=rf"{path.name}: cannot open as audio"):
                read(path)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 2), np.float32), SR)
    for read in (audio.read_audio, audio.load_audio, lambda path: audio.read_audio_window(path, 0, 10)):
        with pytest.raises(audio.EmptyAudioError, match="empty.wav"):
            read(empty)
    surround = tmp_path / "surround.wav"
    sf.write(surround, np.zeros((100, 6), np.float32), SR)
    with pytest.raises(audio.ChannelLayoutError, match="6 channels"):
        audio.load_audio(surround)
    with pytest.raises(audio.ChannelLayoutError, match="6 channels"):
        audio.read_audio(surround)
    assert audio.audio_info(surround).channels == 6  # the header alone is no error


# ------------------------------------------------------------------ files cut short


def _cut_to(path: Path, seconds: float, held_s: float, file_format: str, subtype: str) -> Path:
    """`seconds` of audio written at `path`, then cut to the bytes a file of `held_s` takes."""
    sf.write(path, two_partials(seconds), SR, format=file_format, subtype=subtype)
    short = path.with_name("short-" + path.name)
    sf.write(short, two_partials(held_s), SR, format=file_format, subtype=subtype)
    os.truncate(path, short.stat().st_size)
    return path


_READERS = {
    "audio_info": audio.audio_info,
    "read_audio": audio.read_audio,
    "load_audio": audio.load_audio,
    "read_audio_window": lambda path: audio.read_audio_window(path, 0, 10),
    "iter_audio_blocks": lambda path: list(audio.iter_audio_blocks(path, None, 4096)),
    "copy_to_flac": lambda path: audio.copy_to_flac(path, path.with_suffix(".copy.flac")),
}


@pytest.mark.parametrize("file_format, subtype, suffix", [
    ("WAV", "PCM_16", ".wav"), ("WAV", "FLOAT", ".wav"), ("WAVEX", "PCM_24", ".wav"), ("AIFF", "PCM_16", ".aiff"),
])
def test_a_wav_or_aiff_cut_short_is_refused_by_every_reader_with_both_lengths(tmp_path, file_format, subtype,
                                                                              suffix):
    """libsndfile opens a cut WAV or AIFF as a valid 2 s file; its header still says 60 s."""
    path = _cut_to(tmp_path / f"cut{suffix}", 60.0, 2.0, file_format, subtype)
    assert sf.info(path).frames == 2 * SR
    for name, read in _READERS.items():
        with pytest.raises(audio.TruncatedAudioError) as caught:
            read(path)
        assert str(caught.value) == f"{path}: truncated file: declares 60.00 s, holds 2.00 s", name
        assert (caught.value.reason, caught.value.declared_frames, caught.value.frames) == ("truncated", 60 * SR, 2 * SR)
    assert not path.with_suffix(".copy.flac").exists()


def test_a_flac_cut_short_is_refused_while_decoding(tmp_path):
    """FLAC's header keeps the declared length (audio_info trusts it); decoding breaks off at the
    end of the file, and the error counts the frames that still decode. A window inside what is
    left reads."""
    path = tmp_path / "cut.flac"
    sf.write(path, two_partials(60.0), SR, subtype="PCM_16")
    os.truncate(path, path.stat().st_size // 30)
    assert audio.audio_info(path).frames == 60 * SR
    assert audio.read_audio_window(path, 0, 10)[0].shape == (10, 2)
    readers = {**_READERS, "read_audio_window": lambda path: audio.read_audio_window(path, 0, 10 * SR)}
    del readers["audio_info"]
    for read in readers.values():
        with pytest.raises(audio.TruncatedAudioError, match=r"cut.flac: truncated file: declares 60.00 s, holds 1\.\d\d s"):
            read(path)


def test_damage_inside_a_file_and_an_open_ended_wav_are_not_truncation(tmp_path):
    damaged = tmp_path / "damaged.flac"
    sf.write(damaged, two_partials(20.0), SR, subtype="PCM_16")
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4000] = bytes(4000)
    damaged.write_bytes(bytes(data))
    with pytest.raises(audio.AudioFileError, match="decoding failed") as caught:
        audio.read_audio(damaged)
    assert not isinstance(caught.value, audio.TruncatedAudioError)
    # A streaming writer leaves the sizes open (0xFFFFFFFF): the file holds what it holds.
    streamed = tmp_path / "streamed.wav"
    sf.write(streamed, two_partials(1.0), SR, subtype="PCM_16")
    data = bytearray(streamed.read_bytes())
    data[4:8] = data[data.index(b"data") + 4 : data.index(b"data") + 8] = b"\xff" * 4
    streamed.write_bytes(bytes(data))
    assert audio.read_audio(streamed)[0].shape == (SR, 2)


# ------------------------------------------------------------------ in memory


def test_pcm_conversion_uses_the_integer_range():
    assert audio.to_stereo_float(np.array([-32768, 0, 16384], np.int16))[:, 0].tolist() == [-1.0, 0.0, 0.5]
    assert audio.to_stereo_float(np.array([-(2**31), 2**30], np.int32))[:, 0].tolist() == [-1.0, 0.5]
    assert audio.to_stereo_float(np.array([0, 128, 192], np.uint8))[:, 0].tolist() == [-1.0, 0.0, 0.5]
    np.testing.assert_allclose(audio.to_stereo_float(np.array([128, 255, 0], np.uint8))[:, 0],
                               [0.0, 127 / 128, -1.0])
    with pytest.raises(audio.AudioDtypeError, match="uint16"):
        audio.to_stereo_float(np.array([1], np.uint16))  # only 8-bit PCM is unsigned


def test_mono_is_duplicated_and_other_layouts_refused():
    mono = np.arange(4, dtype=np.float32)
    assert audio.to_stereo_float(mono).tolist() == [[0, 0], [1, 1], [2, 2], [3, 3]]
    assert audio.to_stereo_float(mono[:, None]).shape == (4, 2)


@pytest.mark.parametrize(
    ("array", "error", "message"),
    [
        (np.zeros((2, 5000), np.float32), audio.ChannelLayoutError, "channels-first"),
        (np.zeros((10, 2, 2), np.float32), audio.ChannelLayoutError, "got \\(10, 2, 2\\)"),
        (np.zeros(100, np.complex64), audio.AudioDtypeError, "complex64"),
        (np.array([0.0, np.inf, 0.0]), audio.NonFiniteAudioError, "frame 1"),
        (np.array([0.0, 0.0, 1e39]), audio.NonFiniteAudioError, "frame 2"),  # inf in float32
    ],
)
def test_bad_arrays(array, error, message):
    with pytest.raises(error, match=message):
        audio.to_stereo_float(array)


def test_resample_refuses_a_bad_rate():
    with pytest.raises(audio.SampleRateError, match="positive"):
        audio.resample(two_partials(0.1), 0)


# ------------------------------------------------------------------ the NaN rule


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_reading_non_finite_samples_names_the_file_and_first_frame(tmp_path, value):
    path, _ = _with_nan(tmp_path, 30_000, value)
    readers = [
        audio.read_audio,
        audio.load_audio,
        lambda p: list(audio.iter_audio_blocks(p, None, block_frames=8192)),  # in the 4th block
        lambda p: audio.read_audio_window(p, 29_000, 2000),
    ]
    for read in readers:
        with pytest.raises(audio.NonFiniteAudioError, match=r"nan\.wav: .*at frame 30000 \(0\.680 s\)") as caught:
            read(path)
        assert caught.value.frame == 30_000 and caught.value.source == str(path)
    clean, _ = audio.read_audio_window(path, 0, 29_000)  # a range without it reads fine
    assert np.isfinite(clean).all()


@pytest.mark.parametrize("write", [audio.write_wav, audio.write_pcm16_flac, audio.write_pcm16_wav])
def test_writers_refuse_non_finite_samples_and_create_no_file(tmp_path, write):
    data = two_partials(0.5)
    data[1234, 0] = np.nan
    target = tmp_path / "out" / "refused.wav"
    with pytest.raises(audio.NonFiniteAudioError, match=r"refused\.wav: .*at frame 1234"):
        write(target, data, SR)
    assert not target.exists()
    data[1234, 0] = np.inf  # Inf is not clipped into range either
    with pytest.raises(audio.NonFiniteAudioError):
        write(target, data, SR)
    assert not target.exists()


def test_writers_check_layout_and_rate(tmp_path):
    with pytest.raises(audio.ChannelLayoutError):
        audio.write_pcm16_wav(tmp_path / "six.wav", np.zeros((10, 6), np.float32), SR)
    with pytest.raises(audio.SampleRateError):
        audio.write_wav(tmp_path / "rate.wav", two_partials(0.1), 0)
    assert not any(tmp_path.iterdir())


def test_pcm16_writers(tmp_path):
    grid = (np.round(two_partials(0.5) * 32768) / 32768).astype(np.float32)
    flac = audio.write_pcm16_flac(tmp_path / "a.flac", grid, SR)
    assert sf.info(flac).subtype == "PCM_16"
    np.testing.assert_array_equal(sf.read(flac, dtype="float32")[0], grid)  # exact on the int16 grid
    mono = audio.write_pcm16_wav(tmp_path / "mono.wav", np.full(100, 2.0, np.float32), SR)
    info = sf.info(mono)
    assert (info.channels, info.subtype) == (1, "PCM_16")
    assert sf.read(mono, dtype="int16")[0].max() == 32767  # clipped to full scale


def test_copy_to_flac_keeps_16_bit_samples_and_refuses_nan(tmp_path):
    samples = (two_partials(1.0) * 20000).astype(np.int16)
    sf.write(tmp_path / "in.wav", samples, SR, subtype="PCM_16")
    out = audio.copy_to_flac(tmp_path / "in.wav", tmp_path / "out.flac", block_frames=1000)
    assert sf.info(out).subtype == "PCM_16"
    np.testing.assert_array_equal(sf.read(out, dtype="int16")[0], samples)
    path, _ = _with_nan(tmp_path)
    with pytest.raises(audio.NonFiniteAudioError, match="frame 30000"):
        audio.copy_to_flac(path, tmp_path / "nan.flac", block_frames=1000)
    assert not (tmp_path / "nan.flac").exists()


# ------------------------------------------------------------------ faults of the machine


def test_paths_that_name_no_file_are_os_errors_with_their_errno(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    cases = [
        (tmp_path / "missing.wav", errno.ENOENT),
        (tmp_path / "file" / "a.wav", errno.ENOTDIR),  # the parent is a file: fails for root too
        (tmp_path, errno.EISDIR),
    ]
    for path, code in cases:
        for read in (audio.read_audio, audio.audio_info, audio.load_audio):
            with pytest.raises(OSError) as caught:
                read(path)
            assert caught.value.errno == code and not isinstance(caught.value, audio.AudioError)
    with pytest.raises(OSError) as caught:
        audio.write_wav(tmp_path / "file" / "a.wav", two_partials(0.1), SR)
    assert caught.value.errno in (errno.EEXIST, errno.ENOTDIR)


def test_an_os_error_inside_libsndfile_is_raised_as_itself():
    """/proc/self/mem refuses a seek to its end (EINVAL), for root too. soundfile given the path
    reports that as "Format not recognised."; the module raises the OS's error."""
    with pytest.raises(sf.LibsndfileError, match="Format not recognised"):
        sf.info("/proc/self/mem")
    with pytest.raises(OSError) as caught:
        audio.read_audio("/proc/self/mem")
    assert caught.value.errno == errno.EINVAL and caught.value.filename == "/proc/self/mem"
    assert not isinstance(caught.value, audio.AudioError)


@pytest.mark.skipif(
    not (os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode)),
    reason="needs the /dev/full device",
)
@pytest.mark.parametrize("write", [audio.write_wav, audio.write_pcm16_flac, audio.write_pcm16_wav])
def test_a_full_disk_is_enospc_not_bad_audio(write):
    """/dev/full fails every write with ENOSPC, for root too. soundfile given the path says
    "System error.", "problem with initialization of the flac decoder" or AssertionError."""
    with pytest.raises(OSError) as caught:
        write("/dev/full", two_partials(0.5), SR)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == "/dev/full"
    assert isinstance(caught.value.__cause__, OSError)  # the write that failed, kept as the cause
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # a device is never "cleaned up"


def test_a_write_cut_short_by_the_os_leaves_no_partial_file(tmp_path):
    """RLIMIT_FSIZE binds root too: writes past it fail with EFBIG (SIGXFSZ ignored)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    target = tmp_path / "big.wav"
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
    try:
        with pytest.raises(OSError) as caught:
            audio.write_wav(target, two_partials(1.0), SR)  # 353 kB
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert caught.value.errno == errno.EFBIG and caught.value.filename == str(target)
    assert not target.exists()


# ------------------------------------------------------------------ tasks.pipeline.audio_io (stage level)


def test_audio_stats():
    data = np.full((SR // 2, 2), 0.5, np.float32)
    data[0, 0] = -1.0
    stats = audio_stats(data, SR)
    assert stats.duration_s == pytest.approx(0.5)
    assert stats.peak_dbfs == pytest.approx(0.0)
    assert stats.rms_dbfs == pytest.approx(20 * np.log10(0.5), abs=0.01)
    assert audio_stats(np.zeros((10, 2)), SR).peak_dbfs == float("-inf")


def test_single_audio_file_of_a_store_object(tmp_path):
    with pytest.raises(audio.AudioFileError, match=r"found \[\]"):
        single_audio_file(tmp_path)
    (tmp_path / "audio.wav").write_bytes(b"")
    assert single_audio_file(tmp_path) == tmp_path / "audio.wav"
    (tmp_path / "audio.flac").write_bytes(b"")
    with pytest.raises(audio.AudioFileError, match="audio.flac"):
        single_audio_file(tmp_path)


# ------------------------------------------------------------------ the codes stages record


@pytest.fixture()
def bad_objects(tmp_path):
    """A store with one object per bad audio file: NaN, empty, six channels, not audio, cut short."""
    from tasks.store import ArtifactStore

    store = ArtifactStore(str(tmp_path / "store"))
    nan = two_partials(40.0)
    nan[30_000, 1] = np.nan
    files = {"nan": (nan, 2), "empty": (np.zeros((0, 2), np.float32), 2),
             "six": (np.zeros((SR, 6), np.float32), 6)}
    keys = {}
    for seed, (name, (data, _)) in enumerate(files.items()):
        with store.publish_object("test-audio", 1, {"name": name}, [f"sha256:{seed:064x}"]) as staged:
            sf.write(staged.dir / "audio.wav", data, SR, subtype="FLOAT")
        keys[name] = staged.key
    with store.publish_object("test-audio", 1, {"name": "junk"}, [f"sha256:{9:064x}"]) as staged:
        (staged.dir / "audio.wav").write_bytes(b"RIFF....WAVEjunk")
    keys["junk"] = staged.key
    with store.publish_object("test-audio", 1, {"name": "cut"}, [f"sha256:{10:064x}"]) as staged:
        _cut_to(staged.dir / "audio.wav", 60.0, 2.0, "WAV", "PCM_16")
        (staged.dir / "short-audio.wav").unlink()
    keys["cut"] = staged.key
    return store, keys


def test_stages_record_their_reason_codes_for_bad_audio_files(bad_objects, tmp_path):
    from tasks.normalize.params import LoudnessParams
    from tasks.normalize.stage import normalize_item
    from tasks.pipeline.batching import ItemFailed, WorkItem
    from tasks.quality.params import QualityParams
    from tasks.quality.stage import quality_item
    from tasks.segment.core import plan_file
    from tasks.segment.params import SegmentParams

    store, keys = bad_objects
    stages = {
        "normalize": (lambda key: normalize_item(store, WorkItem("x", "k", (key,), LoudnessParams().model_dump(mode="json")),
                                                 tmp_path),
                      {"nan": "non_finite", "empty": "too_short", "six": "bad_shape"}),
        "quality": (lambda key: quality_item(store, WorkItem("x", "k", (key,), QualityParams().measure_key_params()), tmp_path),
                    {"nan": "non_finite", "empty": "empty", "six": "bad_shape"}),
        "segment-plan": (lambda key: plan_file(single_audio_file(store.local_path(key)), SegmentParams()),
                         {"nan": "non_finite", "empty": "empty", "six": "not_audio", "junk": "not_audio",
                          "cut": "truncated"}),
    }
    for stage, (run, codes) in stages.items():
        for name, code in codes.items():
            with pytest.raises(ItemFailed) as caught:
                run(keys[name])
            assert caught.value.reason == code, (stage, name)
            assert "audio.wav" in str(caught.value), (stage, name)  # the message names the file
        if "junk" not in codes:  # an undecodable object of our own stages is no recorded failure
            for name in ("junk", "cut"):
                with pytest.raises(audio.AudioFileError):
                    run(keys[name])
    with pytest.raises(ItemFailed, match=r"frame 30000 \(0\.680 s\)"):
        stages["normalize"][0](keys["nan"])
