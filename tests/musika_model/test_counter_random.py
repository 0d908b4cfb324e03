"""The counter-based random numbers: deterministic, well distributed, the same under XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from musika_model import counter_random


def test_the_same_seed_draws_the_same_numbers_and_another_seed_others():
    first = np.array(counter_random.normal((1000,), [3, 7]))
    again = np.array(counter_random.normal((1000,), [3, 7]))
    np.testing.assert_array_equal(first, again)
    for other in ([3, 8], [4, 7]):
        assert np.abs(first - np.array(counter_random.normal((1000,), other))).max() > 1


def test_uniform_values_fill_the_open_unit_interval_evenly():
    values = np.array(counter_random.uniform((200_000,), [1, 2]), dtype=np.float64)
    assert 0.0 < values.min() and values.max() < 1.0
    counts, _ = np.histogram(values, bins=10, range=(0.0, 1.0))
    assert np.abs(counts / len(values) - 0.1).max() < 0.005


def test_normal_values_have_the_moments_of_a_standard_normal():
    values = np.array(counter_random.normal((200_000,), [5, 0]), dtype=np.float64)
    assert abs(values.mean()) < 0.01 and values.std() == pytest.approx(1.0, abs=0.01)
    assert np.mean(values**4) == pytest.approx(3.0, abs=0.1)  # kurtosis of a normal
    assert np.mean(np.abs(values) > 3) == pytest.approx(0.0027, abs=0.0008)


def test_integers_cover_their_range_evenly():
    values = np.array(counter_random.integers((30_000,), [9, 9], 3))
    assert set(np.unique(values)) == {0, 1, 2}
    assert np.abs(np.bincount(values) / len(values) - 1 / 3).max() < 0.01


def test_xla_draws_the_same_bits_as_a_plain_graph():
    counter = tf.Variable(41, dtype=tf.int64)

    def draw():
        seed = tf.stack([tf.constant(2, tf.int64), counter.assign_add(1)])
        return counter_random.uniform((4, 64), seed), counter_random.normal((4, 64), seed)

    plain = [np.array(value) for value in tf.function(draw)()]
    counter.assign(41)
    compiled = [np.array(value) for value in tf.function(draw, jit_compile=True)()]
    np.testing.assert_array_equal(compiled[0], plain[0])  # integer hashing and exact scaling
    np.testing.assert_allclose(compiled[1], plain[1], rtol=0, atol=1e-5)  # log, cos, sqrt round
