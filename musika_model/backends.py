"""Which Keras backend a process computes with: TensorFlow (the default install, and the only one
that encodes audio) or JAX (multi-device data parallel, and hosts that have JAX but no TensorFlow).

Keras reads `KERAS_BACKEND` once, when it is first imported, so a backend is chosen here before
anything imports Keras; asking for another one afterwards is refused with the way out.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

BACKENDS = ("tensorflow", "jax")
DEFAULT_BACKEND = "tensorflow"
INSTALL_HINTS = {
    "tensorflow": "pip install -e . (or '.[gpu]' for CUDA)",
    "jax": "pip install -e '.[jax]' (CPU) or -e '.[jax-cuda]' (NVIDIA GPUs)",
}


class BackendError(ValueError):
    """An unknown, missing or conflicting Keras backend (said with what to do instead)."""


def requested_backend(name: str | None = None) -> str:
    """`name`, else $KERAS_BACKEND, else TensorFlow; an unknown name is refused."""
    backend = name or os.environ.get("KERAS_BACKEND") or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}: choose {' or '.join(BACKENDS)}")
    return backend


def active_backend() -> str:
    """The backend Keras runs on in this process (or will, once imported)."""
    if "keras" in sys.modules:
        import keras

        return keras.backend.backend()
    return requested_backend()


def use_backend(name: str | None = None) -> str:
    """Make `name` (see `requested_backend`) the backend of this process; returns it.

    Sets KERAS_BACKEND while Keras is not yet imported (child processes inherit it). Refuses a
    backend whose package is not installed, or one other than the backend Keras already loaded.
    """
    backend = requested_backend(name)
    if importlib.util.find_spec(backend) is None:
        raise BackendError(f"--backend {backend}: {backend} is not installed here; {INSTALL_HINTS[backend]}")
    if "keras" in sys.modules:
        loaded = active_backend()
        if loaded != backend:
            raise BackendError(
                f"--backend {backend}: Keras was already loaded with {loaded} in this process; "
                f"start a new process with KERAS_BACKEND={backend} set"
            )
    else:
        os.environ["KERAS_BACKEND"] = backend
    return backend


@contextmanager
def _without_tensorflow_import() -> Iterator[None]:
    """Make `import tensorflow` fail inside the block unless TensorFlow is already loaded."""
    if "tensorflow" in sys.modules:
        yield
        return
    sys.modules["tensorflow"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        yield
    finally:
        del sys.modules["tensorflow"]


def set_random_seed(seed: int) -> None:
    """`keras.utils.set_random_seed` (Python, NumPy and Keras' global seed), without importing
    TensorFlow on another backend: Keras imports it whenever it is installed, only to seed it,
    which would load TensorFlow into every JAX training run."""
    import keras

    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    with _without_tensorflow_import():
        keras.utils.set_random_seed(seed)
