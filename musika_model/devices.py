"""Which device a run trains on: whether TensorFlow sees a GPU, and hiding or requiring one.

TensorFlow is imported inside the functions, on first use, and not at all to find that a Linux
machine without GPU drivers has no GPU (importing it takes seconds, more than the answer is worth
when a command is about to be refused).
"""

from __future__ import annotations

import glob
import sys

DEVICE_CHOICES = ("auto", "gpu", "cpu")


class DeviceUnavailableError(RuntimeError):
    """The device asked for cannot be used in this process (said with the alternatives)."""


GPU_DRIVER_NODES = ("/dev/nvidia[0-9]*", "/dev/dxg", "/dev/kfd")
"""Device files of the drivers TensorFlow reaches GPUs through on Linux: NVIDIA (CUDA), WSL2
(CUDA over /dev/dxg) and AMD ROCm. Without any of them TensorFlow sees no GPU."""


def _without_gpu_drivers() -> bool:
    return sys.platform.startswith("linux") and not any(glob.glob(pattern) for pattern in GPU_DRIVER_NODES)


def gpu_visible() -> bool:
    """Whether TensorFlow places work on a GPU in this process.

    The visible devices, not the physical ones: after `select_device("cpu")` a GPU host has
    physical GPUs that this process does not use."""
    if _without_gpu_drivers():
        return False
    import tensorflow as tf

    return bool(tf.config.get_visible_devices("GPU"))


def select_device(choice: str) -> None:
    """Apply a device choice before TensorFlow places anything: "auto" leaves TensorFlow's own
    choice (a GPU when it sees one), "cpu" hides the GPUs from this process, "gpu" refuses to go
    on without one."""
    if choice not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    if choice == "cpu" and not _without_gpu_drivers():
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
