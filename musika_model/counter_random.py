"""Random numbers that are the same eagerly, in a graph, under XLA and on every Keras backend.

TensorFlow's random kernels and XLA's lowering of the same ops produce different streams
from the same seed, even with the algorithm pinned to Philox and the key and counter given
explicitly (measured with TensorFlow 2.21 on CPU), and JAX's generators differ again. A
training step compiled with XLA would then draw other coordinates and noise than the same
step uncompiled, and no comparison of the two could be exact.

Here every draw is a pure function of (seed, element index) computed with 32-bit unsigned
multiply, xor and shift, which every backend and compiler evaluates exactly; only the last
conversion to floats (log, cos, sqrt for normals) may differ in the last bit. The mixing
function is Chris Wellons' "lowbias32" integer hash (xor-shift 16, multiply 0x7feb352d,
xor-shift 15, multiply 0x846ca68b, xor-shift 16). Element i of a draw seeded (a, b) is
h(h(i ^ h(a ^ GOLDEN)) ^ h(b ^ h(a ^ GOLDEN))); normals use the Box-Muller transform on two
such uniforms.

A seed is a pair of integers (a tensor of shape (2,), any integer dtype), e.g. the state of a
`keras.random.SeedGenerator` or (run seed, draw counter).
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

GOLDEN = 0x9E3779B9
"""2^32 / golden ratio: keeps a zero seed word from hashing to zero."""
UINT32_RANGE = 1 << 32
MANTISSA_BITS = 24


def _constant(value: int):
    return ops.convert_to_tensor(value, "uint32")


def _mix(x):
    """The lowbias32 hash of uint32 values: a bijection that scatters every input bit."""
    x = ops.bitwise_xor(x, ops.right_shift(x, _constant(16)))
    x = ops.multiply(x, _constant(0x7FEB352D))
    x = ops.bitwise_xor(x, ops.right_shift(x, _constant(15)))
    x = ops.multiply(x, _constant(0x846CA68B))
    return ops.bitwise_xor(x, ops.right_shift(x, _constant(16)))


def _seed_words(seed: Any):
    """The two uint32 words of a seed pair (wider integers are taken modulo 2^32)."""
    seed = ops.convert_to_tensor(seed)
    if keras.backend.standardize_dtype(seed.dtype) in ("int64", "uint64"):
        seed = ops.mod(seed, ops.convert_to_tensor(UINT32_RANGE, seed.dtype))
    seed = ops.cast(seed, "uint32")
    return seed[0], seed[1]


def _size(shape: tuple) -> Any:
    size = 1
    for dimension in shape:
        size = size * dimension
    return size


def _bits(count: Any, seed: Any):
    """`count` pseudo-random uint32 words of `seed`, as a flat tensor."""
    first, second = _seed_words(seed)
    key_a = _mix(ops.bitwise_xor(first, _constant(GOLDEN)))
    key_b = _mix(ops.bitwise_xor(second, key_a))
    index = ops.cast(ops.arange(count, dtype="int32"), "uint32")
    return _mix(ops.bitwise_xor(_mix(ops.bitwise_xor(index, key_a)), key_b))


def _unit_interval(bits):
    """uint32 words -> float32 in (0, 1): the top 24 bits, centred in their interval."""
    top = ops.cast(ops.right_shift(bits, _constant(32 - MANTISSA_BITS)), "float32")
    return (top + 0.5) * (2.0**-MANTISSA_BITS)


def uniform(shape: tuple, seed: Any, dtype: str = "float32"):
    """Uniform values in (0, 1) of `shape` (entries may be symbolic batch sizes)."""
    values = _unit_interval(_bits(_size(shape), seed))
    return ops.cast(ops.reshape(values, shape), dtype)


def normal(shape: tuple, seed: Any, dtype: str = "float32"):
    """Standard normal values of `shape` (Box-Muller on pairs of uniforms)."""
    size = _size(shape)
    pairs = ops.reshape(_unit_interval(_bits(size * 2, seed)), (size, 2))
    radius = ops.sqrt(-2.0 * ops.log(pairs[:, 0]))
    values = radius * ops.cos((2.0 * math.pi) * pairs[:, 1])
    return ops.cast(ops.reshape(values, shape), dtype)


def integers(shape: tuple, seed: Any, count: int):
    """Integers uniform in [0, count) of `shape`, int32."""
    scaled = ops.floor(uniform(shape, seed) * count)
    return ops.cast(ops.minimum(scaled, count - 1), "int32")
