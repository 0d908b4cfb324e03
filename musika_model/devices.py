"""Which devices a run trains on: whether the backend (TensorFlow or JAX) sees a GPU, hiding or
requiring one, and on JAX how many devices a data-parallel run splits its batch over.

TensorFlow and JAX are imported inside the functions, on first use, and not at all to find that a
Linux machine without GPU drivers has no GPU (importing them takes seconds, more than the answer
is worth when a command is about to be refused).
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Sequence
from typing import Any

from .backends import active_backend

DEVICE_CHOICES = ("auto", "gpu", "cpu")


class DeviceUnavailableError(RuntimeError):
    """The device asked for cannot be used in this process (said with the alternatives)."""


GPU_DRIVER_NODES = ("/dev/nvidia[0-9]*", "/dev/dxg", "/dev/kfd")
"""Device files of the drivers TensorFlow reaches GPUs through on Linux: NVIDIA (CUDA), WSL2
(CUDA over /dev/dxg) and AMD ROCm. Without any of them TensorFlow sees no GPU."""


def _without_gpu_drivers() -> bool:
    return sys.platform.startswith("linux") and not any(glob.glob(pattern) for pattern in GPU_DRIVER_NODES)


def gpu_visible() -> bool:
    """Whether the active backend places work on a GPU in this process.

    The visible devices, not the physical ones: after `select_device("cpu")` a GPU host has
    physical GPUs that this process does not use."""
    if _without_gpu_drivers():
        return False
    if active_backend() == "jax":
        import jax

        return jax.default_backend() == "gpu"
    import tensorflow as tf

    return bool(tf.config.get_visible_devices("GPU"))


def select_device(choice: str) -> None:
    """Apply a device choice before TensorFlow places anything: "auto" leaves TensorFlow's own
    choice (a GPU when it sees one), "cpu" hides the GPUs from this process, "gpu" refuses to go
    on without one."""
    if choice not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    if active_backend() == "jax":
        _select_jax_device(choice)
    elif choice == "cpu" and not _without_gpu_drivers():
        import tensorflow as tf

        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError as error:
            raise DeviceUnavailableError(
                "--device cpu: TensorFlow already set up its devices in this process, so the GPUs "
                "can no longer be hidden; run in a fresh process or set CUDA_VISIBLE_DEVICES=-1"
            ) from error
    elif choice == "gpu" and not gpu_visible():
        raise DeviceUnavailableError(
            "--device gpu: TensorFlow sees no GPU here (is TensorFlow with CUDA installed, "
            "pip install -e '.[gpu]'? does nvidia-smi list one? is CUDA_VISIBLE_DEVICES set?); "
            "use --device auto to train on what there is, or --device cpu"
        )


def _select_jax_device(choice: str) -> None:
    if choice == "cpu":
        if "jax" in sys.modules:
            import jax

            jax.config.update("jax_platforms", "cpu")
        else:
            os.environ["JAX_PLATFORMS"] = "cpu"
    elif choice == "gpu":
        _jax_gpus()


def _jax_gpus() -> list:
    import jax

    try:
        return jax.devices("gpu")
    except RuntimeError as error:
        raise DeviceUnavailableError(
            "--device gpu: JAX has no GPU backend here (is JAX's CUDA plugin installed, "
            "pip install -e '.[jax-cuda]'? does nvidia-smi list a GPU? is CUDA_VISIBLE_DEVICES set?); "
            "use --device auto to train on what there is, or --device cpu"
        ) from error


DevicesSetting = int | str
"""How many devices a run uses: a count, or "all"."""


def check_devices_setting(devices: DevicesSetting) -> None:
    """Refuse a malformed `devices` value (a positive count or "all") before anything is imported."""
    if devices != "all" and (isinstance(devices, bool) or not isinstance(devices, int) or devices < 1):
        raise ValueError(f"devices must be a positive count or 'all', got {devices!r}")


def training_devices(choice: str, devices: DevicesSetting, batch_size: int) -> Sequence[Any] | None:
    """The devices a JAX run splits each batch over (None on TensorFlow, which trains on one).

    `choice` is the --device choice; `devices` a count or "all" (all devices of the chosen kind,
    on every host of a multi-host run). Refuses more devices than there are, and a global
    `batch_size` that does not split evenly over them.
    """
    check_devices_setting(devices)
    if active_backend() != "jax":
        if devices not in ("all", 1):
            raise DeviceUnavailableError(
                f"--devices {devices}: data parallel training needs the JAX backend (--backend jax); "
                "TensorFlow trains on one device"
            )
        return None
    process_share()  # a multi-host run joins jax.distributed before JAX lists the devices
    import jax

    found = _jax_gpus() if choice == "gpu" else jax.devices()
    if devices != "all":
        if devices > len(found):
            raise DeviceUnavailableError(
                f"--devices {devices}: JAX sees {len(found)} {found[0].platform.upper()} device(s) here "
                f"({', '.join(str(d) for d in found[:4])}{', ...' if len(found) > 4 else ''})"
            )
        found = found[:devices]
    if batch_size % len(found):
        raise DeviceUnavailableError(
            f"batch size {batch_size} does not split evenly over {len(found)} devices; choose a "
            f"multiple of {len(found)} (--batch-size) or fewer devices (--devices)"
        )
    return found


MULTI_HOST_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)
"""Set on every host of a multi-host JAX run (coordinator address first, process count, this
host's index): `keras.distribution.initialize` reads them and starts `jax.distributed`."""


def process_share() -> tuple[int, int]:
    """(this process's index, process count) of a JAX run, starting `jax.distributed` first when
    KERAS_DISTRIBUTION_NUM_PROCESSES asks for several processes; (0, 1) otherwise."""
    if active_backend() != "jax":
        return 0, 1
    import jax

    if int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) > 1 and not jax.distributed.is_initialized():
        import keras

        keras.distribution.initialize()
    return jax.process_index(), jax.process_count()
