"""GAN training windows: validation of latent sources, mixture sampling and the prefetching batch stream."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from musika_model.training_data import (
    EmptySourceError,
    LatentSource,
    LatentWidthError,
    NonFiniteTrainingLatentsError,
    SourceTooShortError,
    SourceWeightError,
    TrainingDataError,
    WindowSampler,
    prefetched_batches,
)

WINDOW = 16


def constant_items(value: float, lengths: list[int]) -> list[np.ndarray]:
    return [np.full((length, 128), value, dtype=np.float32) for length in lengths]


def ramp(length: int, offset: float = 0.0) -> np.ndarray:
    """Latents whose every value in frame t is offset + t, so a window shows where it was cut."""
    return np.repeat(offset + np.arange(length, dtype=np.float32)[:, None], 128, axis=1)


def test_source_choice_follows_the_weights():
    sampler = WindowSampler(
        [
            LatentSource("new", constant_items(0.5, [40, 90]), weight=3.0),
            LatentSource("replay", constant_items(-0.5, [200]), weight=1.0),
        ],
        WINDOW,
    )
    positions = sampler.positions(np.random.default_rng(0), 20000)
    share = np.bincount(positions.sources, minlength=2) / 20000
    assert share == pytest.approx([0.75, 0.25], abs=0.02)


def test_items_are_drawn_in_proportion_to_their_windows_and_starts_are_uniform():
    # 20 and 115 frames hold 5 and 100 windows of 16 frames; the 10-frame item holds none.
    sampler = WindowSampler([LatentSource("s", [ramp(20), ramp(10), ramp(115)])], WINDOW)
    assert sampler.sources[0].skipped == ["source 's' item 1"]
    positions = sampler.positions(np.random.default_rng(1), 42000)
    long_item = positions.items == 1  # index among the usable items
    assert long_item.mean() == pytest.approx(100 / 105, abs=0.01)
    starts = positions.starts[long_item]
    assert starts.min() == 0 and starts.max() == 115 - WINDOW
    counts = np.bincount(starts, minlength=100)
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()


def test_batches_are_contiguous_windows_of_the_sources():
    sampler = WindowSampler([LatentSource("a", [ramp(50)]), LatentSource("b", [ramp(70, 1000.0)])], WINDOW)
    batch = sampler.batch(np.random.default_rng(2), 64)
    assert batch.shape == (64, WINDOW, 128) and batch.dtype == np.float32
    first = batch[:, 0, 0]
    np.testing.assert_array_equal(batch[:, :, 0], first[:, None] + np.arange(WINDOW))
    from_a = first < 1000
    assert (first[from_a] <= 50 - WINDOW).all()
    assert (first[~from_a] - 1000 <= 70 - WINDOW).all()
    assert 0 < from_a.sum() < 64


def test_dataset_batches_mix_the_sources_by_weight():
    sampler = WindowSampler(
        [
            LatentSource("a", constant_items(0.5, [60]), weight=0.2),
            LatentSource("b", constant_items(-0.5, [60, 30]), weight=0.8),
        ],
        WINDOW,
    )
    batches = list(prefetched_batches(sampler, 8, seed=(0, 1, 0), count=250))
    assert len(batches) == 250
    assert all(batch.shape == (8, WINDOW, 128) for batch in batches)
    windows = np.concatenate(batches)[:, :, 0]
    assert ((windows == 0.5) | (windows == -0.5)).all()
    assert (windows[:, 0] == 0.5).mean() == pytest.approx(0.2, abs=0.03)


def test_same_seed_gives_the_same_windows_and_another_seed_others():
    sampler = WindowSampler([LatentSource("a", [ramp(300)])], WINDOW)

    def first_batches(seed):
        return np.stack(list(prefetched_batches(sampler, 4, seed=seed, count=3)))

    np.testing.assert_array_equal(first_batches((7, 2, 0)), first_batches((7, 2, 0)))
    assert not np.array_equal(first_batches((7, 2, 0)), first_batches((7, 3, 0)))


def test_a_stream_closed_early_stops_its_thread_and_a_sampling_error_reaches_the_consumer():
    sampler = WindowSampler([LatentSource("a", [ramp(300)])], WINDOW)
    stream = prefetched_batches(sampler, 4, seed=0, count=1000, prefetch=1)
    next(stream)
    stream.close()
    assert not any(thread.name == "training-batches" for thread in threading.enumerate())

    class Broken(WindowSampler):
        def batch(self, rng, size):
            raise OSError("read error of a memory-mapped item")

    broken = Broken([LatentSource("a", [ramp(300)])], WINDOW)
    with pytest.raises(OSError, match="read error"):
        list(prefetched_batches(broken, 4, seed=0, count=3))


def test_npy_files_are_memory_mapped(tmp_path):
    path = tmp_path / "piece.npy"
    np.save(path, ramp(40))
    sampler = WindowSampler([LatentSource("files", [path, str(path)])], WINDOW)
    assert isinstance(sampler.sources[0].items[0], np.memmap)
    batch = sampler.batch(np.random.default_rng(0), 5)
    np.testing.assert_array_equal(batch[:, :, 3], batch[:, :1, 3] + np.arange(WINDOW))
    assert sampler.summary()[0]["windows"] == 2 * (40 - WINDOW + 1)


def test_no_source_or_an_empty_source_is_refused():
    with pytest.raises(EmptySourceError, match="no latent sources"):
        WindowSampler([], WINDOW)
    with pytest.raises(EmptySourceError, match="source 'empty' has no items"):
        WindowSampler([LatentSource("ok", [ramp(40)]), LatentSource("empty", [])], WINDOW)


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "gone.npy"
    with pytest.raises(EmptySourceError, match="gone.npy"):
        WindowSampler([LatentSource("files", [missing])], WINDOW)


def test_wrong_width_is_refused_with_the_shape():
    with pytest.raises(LatentWidthError, match=r"item 1.*\(T, 128\).*\(40, 64\)"):
        WindowSampler([LatentSource("s", [ramp(40), np.zeros((40, 64), np.float32)])], WINDOW)


def test_every_item_too_short_names_the_lengths():
    with pytest.raises(SourceTooShortError, match=r"window of 16 .*lengths: 3, 15, 9"):
        WindowSampler([LatentSource("short", [ramp(3), ramp(15), ramp(9)])], WINDOW)


def test_nan_is_refused_with_the_frame():
    bad = ramp(40)
    bad[27, 5] = np.nan
    with pytest.raises(NonFiniteTrainingLatentsError, match="item 0.*frame 27"):
        WindowSampler([LatentSource("s", [bad])], WINDOW)


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_weights_are_refused(weight):
    with pytest.raises(SourceWeightError, match="weight must be a positive number"):
        WindowSampler([LatentSource("s", [ramp(40)], weight=weight)], WINDOW)


def test_batch_size_must_be_positive():
    sampler = WindowSampler([LatentSource("s", [ramp(40)])], WINDOW)
    with pytest.raises(TrainingDataError, match="batch_size"):
        prefetched_batches(sampler, 0, seed=0, count=1)
