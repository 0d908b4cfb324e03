"""GAN training speed on Keras' JAX backend: steps/s, samples/s, peak device memory and compile
time per (base_channels, batch size, precision), and the hours the report's final recipe would
take (283 epochs x 9375 steps at batch 32, base_channels 256; target: under 24 h on one H200,
i.e. at least 31 steps/s).

Runs where TensorFlow cannot: it needs Python 3.12 (or 3.11), JAX (with CUDA for GPU figures),
numpy, h5py, this repository's `musika_model` and Keras. It imports no Prefect, TensorFlow,
librosa or data stage (checked at the end). Where Keras is not installed, the wheels that
`benchmarks/fetch_gpu_wheels.sh` puts in `benchmarks/wheels/` are unpacked and used: keras,
optree, typing-extensions, absl-py, namex, rich, markdown-it-py, mdurl, pygments and packaging
(4.7 MB together, optree built for CPython 3.12 on x86_64 Linux).

    python benchmarks/gpu_train.py                      # the table above, on JAX's default device
    python benchmarks/gpu_train.py --tiny               # seconds on a CPU: checks the script runs

What limits the figure: `compile s` is the one-off XLA compilation; `input ms` the host time to
draw a step's numpy batch (its copy to the device is part of the step), which overlaps the
previous step's kernels since JAX dispatches asynchronously; `step ms` the wall time per step. If
step ms is far above input ms, the kernels (compute or memory bandwidth) limit the speed.

Each row runs in a process of its own, so `peak GiB` is that row's and a row that fails (out of
device memory, say) is shown as failed while the others still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "benchmarks" / "wheels"
RECIPE_STEPS = 283 * 9375
TARGET_STEPS_PER_SECOND = 31.0
FORBIDDEN_MODULES = ("prefect", "tensorflow", "librosa", "tasks", "flows")
PREALLOCATE = "XLA_PYTHON_CLIENT_PREALLOCATE"


def _use_carried_wheels() -> None:
    """Put the carried wheels on sys.path when Keras is not installed (unpacked: optree has a
    compiled extension, which Python cannot import from inside a zip), and on PYTHONPATH for the
    per-row child processes; the unpacked copy is removed at exit."""
    try:
        import keras  # noqa: F401
    except ImportError:
        wheels = sorted(WHEELS.glob("*.whl"))
        if not wheels:
            sys.exit(f"gpu_train: Keras is not installed and {WHEELS} holds no wheels; run "
                     "benchmarks/fetch_gpu_wheels.sh where PyPI is reachable")
        target = Path(tempfile.mkdtemp(prefix="musika-wheels-"))
        atexit.register(shutil.rmtree, target, ignore_errors=True)
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(target)
        sys.path.insert(0, str(target))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-channels", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--policies", nargs="+", default=["float32", "mixed_bfloat16"],
                        choices=["float32", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=5, help="steps after compilation, not timed")
    parser.add_argument("--tiny", action="store_true",
                        help="base_channels 16, batch 2, small windows, 3 steps: a check that runs on a CPU")
    parser.add_argument("--json", type=Path, help="also write the rows here, after each row")
    parser.add_argument("--configuration", nargs=3, metavar=("BASE_CHANNELS", "BATCH", "POLICY"),
                        help=argparse.SUPPRESS)  # one row, in the child process main() starts per row
    arguments = parser.parse_args(argv)
    if arguments.tiny:
        arguments.base_channels, arguments.batch_sizes, arguments.steps, arguments.warmup = [16], [2], 3, 1
    return arguments


def _peak_bytes(device) -> int | None:
    stats = device.memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def measure(base_channels: int, batch_size: int, policy: str, steps: int, warmup: int, small: bool) -> dict:
    """One configuration: fresh networks, the compiled step's first call, then timed steps."""
    import jax
    import numpy as np

    from musika_model.config import GanConfig
    from musika_model.gan_training import create_gan_training
    from musika_model.networks import build_gan
    from musika_model.train_config import using_dtype_policy

    gan = GanConfig(base_channels=base_channels, small=small)
    with using_dtype_policy(policy):
        networks = build_gan(gan)
    training = create_gan_training(networks, policy=policy, seed=0)
    rng = np.random.default_rng(0)

    def batch() -> np.ndarray:
        return rng.uniform(-1, 1, (batch_size, gan.latent_length, 128)).astype(np.float32)

    started = time.perf_counter()
    jax.block_until_ready(training.step(batch()))
    compile_seconds = time.perf_counter() - started
    for _ in range(warmup):
        losses = training.step(batch())
    jax.block_until_ready(losses)
    input_seconds = 0.0
    started = time.perf_counter()
    for _ in range(steps):
        drawn = time.perf_counter()
        real = batch()
        input_seconds += time.perf_counter() - drawn
        losses = training.step(real)
    jax.block_until_ready(losses)
    seconds = time.perf_counter() - started
    steps_per_second = steps / seconds
    if not all(np.isfinite(float(value)) for value in losses.values()):
        raise RuntimeError(f"non-finite losses at base_channels {base_channels}, batch {batch_size}, {policy}")
    peak = _peak_bytes(jax.devices()[0])
    return {
        "base_channels": base_channels, "batch": batch_size, "policy": policy,
        "steps_per_s": round(steps_per_second, 2), "samples_per_s": round(steps_per_second * batch_size, 1),
        "step_ms": round(1000 / steps_per_second, 2), "input_ms": round(1000 * input_seconds / steps, 2),
        "compile_s": round(compile_seconds, 1),
        "peak_gib": None if peak is None else round(peak / 2**30, 2),
        "recipe_hours": round(RECIPE_STEPS / steps_per_second / 3600, 1),
    }


def _forbidden_loaded() -> list[str]:
    """The modules of FORBIDDEN_MODULES this process has imported."""
    return sorted({name.split(".")[0] for name in sys.modules} & set(FORBIDDEN_MODULES))


COLUMNS = ("base_channels", "batch", "policy", "steps_per_s", "samples_per_s", "step_ms", "input_ms",
           "compile_s", "peak_gib", "recipe_hours")


def _measure_here(arguments: argparse.Namespace) -> int:
    """`--configuration`: one row in this process, printed as JSON with the forbidden modules it
    loaded on the last line of stdout."""
    base_channels, batch_size, policy = arguments.configuration
    row = measure(int(base_channels), int(batch_size), policy, arguments.steps, arguments.warmup, arguments.tiny)
    print(json.dumps({"row": row, "forbidden_imported": _forbidden_loaded()}))
    return 0


def _measure_in_a_child(arguments: argparse.Namespace, base_channels: int, batch_size: int, policy: str,
                        users_preallocate: str | None) -> dict:
    """One configuration in a process of its own: the device's peak memory is that row's alone, and
    a configuration that fails (out of memory) leaves the others standing. The child gets the
    user's XLA_PYTHON_CLIENT_PREALLOCATE (JAX's default when unset), not the parent's."""
    import subprocess

    command = [sys.executable, str(Path(__file__).resolve()), "--configuration", str(base_channels),
               str(batch_size), policy, "--steps", str(arguments.steps), "--warmup", str(arguments.warmup),
               *(["--tiny"] if arguments.tiny else [])]
    env = {name: value for name, value in os.environ.items() if name != PREALLOCATE}
    if users_preallocate is not None:
        env[PREALLOCATE] = users_preallocate
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        cause = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return {"row": {"base_channels": base_channels, "batch": batch_size, "policy": policy,
                        "failed": cause[:300]}, "forbidden_imported": []}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write_rows(path: Path, device: object, rows: list[dict], loaded: set[str]) -> None:
    path.write_text(json.dumps({"device": str(device), "rows": rows, "forbidden_imported": sorted(loaded)}))


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    os.environ["KERAS_BACKEND"] = "jax"
    sys.path.insert(0, str(ROOT))
    _use_carried_wheels()
    if arguments.configuration:
        return _measure_here(arguments)
    users_preallocate = os.environ.get(PREALLOCATE)
    # This process only lists the devices: without this, JAX would take 75 % of a GPU's memory
    # here, away from the rows measured in the children.
    os.environ[PREALLOCATE] = "false"
    import jax
    import keras

    device = jax.devices()[0]
    print(f"# JAX {jax.__version__}, Keras {keras.__version__}, Python {sys.version.split()[0]}, "
          f"{len(jax.devices())} x {device.device_kind} ({device.platform}); one process per row")
    print(" ".join(f"{name:>13s}" for name in COLUMNS))
    rows, loaded = [], set()
    for base_channels in arguments.base_channels:
        for batch_size in arguments.batch_sizes:
            for policy in arguments.policies:
                measured = _measure_in_a_child(arguments, base_channels, batch_size, policy, users_preallocate)
                row = measured["row"]
                rows.append(row)
                loaded.update(measured["forbidden_imported"])
                shown = [row[name] for name in COLUMNS[:3]] + (
                    [f"failed: {row['failed']}"] if "failed" in row else [row[name] for name in COLUMNS[3:]])
                print(" ".join(f"{value!s:>13s}" for value in shown), flush=True)
                if arguments.json:  # row by row, so a run cut off by a time limit keeps what it measured
                    _write_rows(arguments.json, device, rows, loaded)
    target = [row for row in rows if (row["base_channels"], row["batch"]) == (256, 32) and "failed" not in row]
    for row in target:
        verdict = "meets" if row["steps_per_s"] >= TARGET_STEPS_PER_SECOND else "misses"
        print(f"final recipe ({row['policy']}): {row['recipe_hours']} h; {verdict} the target of "
              f"{TARGET_STEPS_PER_SECOND:g} steps/s (under 24 h)")
    loaded.update(_forbidden_loaded())
    if arguments.json:
        _write_rows(arguments.json, device, rows, loaded)
    if loaded:
        print(f"gpu_train: imported {', '.join(sorted(loaded))}, which this benchmark must not need", file=sys.stderr)
        return 1
    return 1 if any("failed" in row for row in rows) else 0


def run() -> dict[str, object]:
    """The `gpu` suite of `python -m benchmarks.run`: this script in a child process (Keras fixes
    its backend at import), the full table where JAX sees a GPU, else `--tiny`."""
    import subprocess

    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "rows.json"
        probe = "import jax, sys; sys.exit(0 if jax.default_backend() == 'gpu' else 1)"
        gpu = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=False).returncode == 0
        command = [sys.executable, str(Path(__file__)), "--json", str(report), *([] if gpu else ["--tiny"])]
        subprocess.run(command, check=True, env={**os.environ, "KERAS_BACKEND": "jax"})
        rows = json.loads(report.read_text())["rows"]
    return {f"c{row['base_channels']} b{row['batch']} {row['policy']} steps/s (target >= 31 at c256 b32)":
            row["steps_per_s"] for row in rows}


if __name__ == "__main__":
    sys.exit(main())
