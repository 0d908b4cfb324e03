"""The GAN on Keras' JAX backend against the TensorFlow one: the same step (parity), checkpoints
that move between them both ways, mixed precision on JAX, data parallel over two devices, and
no TensorFlow in a JAX training process.

This process runs on TensorFlow; the JAX side runs `backend_scenarios` in child processes
(Keras fixes its backend at import).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from musika_model import official
from musika_model.checkpoints import read_checkpoint_info
from musika_model.networks import build_gan
from tests.e2e.prefect_helpers import free_port
from tests.musika_model import backend_scenarios as scenarios

pytest.importorskip("jax")
pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def scenario_child(folder: Path, name: str, spec: list, extra_env: dict[str, str]) -> tuple[Path, list[str], dict]:
    """Write the scenario list `spec` to folder/NAME.json: (that path, the command that runs it on
    JAX's CPU backend, its environment with `extra_env`); the report lands in NAME.out.json."""
    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", **extra_env}
    return path, [sys.executable, "-m", "tests.musika_model.backend_scenarios", str(path)], env


def run_on_jax(folder: Path, name: str, spec: list, extra_env: dict[str, str] | None = None) -> dict:
    """Run scenarios in a child process on the JAX backend; its report."""
    path, command, env = scenario_child(folder, name, spec, extra_env or {})
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(path.with_suffix(".out.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Starting weights (official layout), a TensorFlow run, and one child process on JAX doing
    the parity steps, a run, a resume, a fine-tune and generation of the TensorFlow run, and runs
    under both mixed precision policies."""
    folder = tmp_path_factory.mktemp("backends")
    keras.utils.set_random_seed(0)
    nets = build_gan(scenarios.tiny_config().gan)
    start = folder / "start"
    start.mkdir()
    official.save_gan_weights(start, nets.generator, nets.generator_ema, nets.critic)
    tf_checkpoint = scenarios.train(str(folder / "tf-run"), epochs=1)
    shutil.copytree(folder / "tf-run", folder / "tf-run-for-jax")
    tf_copy = str(folder / "tf-run-for-jax" / Path(tf_checkpoint).relative_to(folder / "tf-run"))
    spec = [
        ["parity_steps", {"start": str(start), "out": str(folder / "jax-parity")}],
        ["train", {"run_dir": str(folder / "jax-run"), "epochs": 1}],
        ["resume", {"checkpoint": tf_copy, "epochs": 2}],
        ["finetune", {"parent": tf_checkpoint, "run_dir": str(folder / "jax-finetune")}],
        ["generate", {"checkpoint": tf_checkpoint}],
        ["train", {"run_dir": str(folder / "jax-bf16"), "mixed_precision": True, "mixed_precision_dtype": "bfloat16"}],
        ["train", {"run_dir": str(folder / "jax-fp16"), "mixed_precision": True, "mixed_precision_dtype": "float16"}],
        ["diverge", {"run_dir": str(folder / "jax-diverge")}],
    ]
    report = run_on_jax(folder, "jax", spec)
    return {"folder": folder, "start": start, "tf_checkpoint": tf_checkpoint, "jax": report}


def _losses_and_weights(folder: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    with np.load(folder / "weights.npz") as weights:
        return json.loads((folder / "losses.json").read_text()), dict(weights)


def test_the_jax_step_computes_what_the_tensorflow_step_computes(runs):
    """Same weights, batches, draws and noise: same losses after 1 and 3 steps, same weights.

    The draws are `counter_random`'s on both backends, so the two differ only by float32
    rounding in different kernels (oneDNN's against XLA's). Measured: the losses by at most
    2e-6 relative, except a hinge term near its kink at step 3 (4e-3 relative of a small value);
    bound 1e-4 relative or absolute. Weights, in units of the learning rate (lr = 1e-3 here, so
    3 steps move weights by up to 3 lr, far beyond rounding): Adam moves each weight by about
    lr per step in the direction of its gradient's sign, so where rounding flips a near-zero
    gradient's sign the two runs end about 2 lr apart in that weight. After 1 step, every weight
    within lr / 10 (measured 0.08 lr). After 3 steps, the rounding differences of step 1 have
    changed the later gradients: measured, the median difference is 5e-4 lr, 99.9 % are within
    0.19 lr and 12 of 1.05 million weights differ by more than lr (at most 1.45 lr). Bounds:
    median lr / 100, 99.9 % within lr / 2, every weight within 4 lr (two flipped steps).
    """
    tf_folder = runs["folder"] / "tf-parity"
    scenarios.parity_steps(str(runs["start"]), str(tf_folder))
    tf_losses, tf_weights = _losses_and_weights(tf_folder)
    jax_losses, jax_weights = _losses_and_weights(runs["folder"] / "jax-parity")
    assert_losses_agree(tf_losses, jax_losses)
    assert all(len(found) == 7 for found in jax_losses)  # assert_losses_agree: 3 steps
    assert set(tf_weights) == set(jax_weights)
    assert_weights_agree(tf_weights, jax_weights)
    lr = scenarios.PARITY_LEARNING_RATE
    moved = max(float(np.abs(tf_weights[n] - tf_weights[n.replace("3/", "1/", 1)]).max())
                for n in tf_weights if n.startswith("3/"))
    assert moved > lr, "the weights barely moved: the comparison would say nothing"


def assert_weights_agree(expected: dict[str, np.ndarray], found: dict[str, np.ndarray]) -> None:
    """The bounds of `test_the_jax_step_computes_what_the_tensorflow_step_computes`, in lr."""
    lr = scenarios.PARITY_LEARNING_RATE
    for step in (1, 3):
        names = [name for name in expected if name.startswith(f"{step}/")]
        differences = np.concatenate([np.abs(expected[n] - found[n]).ravel() for n in names])
        median, most = np.quantile(differences, [0.5, 0.999])
        if step == 1:
            assert differences.max() <= lr / 10, differences.max()
        else:
            assert median <= lr / 100 and most <= lr / 2 and differences.max() <= 4 * lr, (median, most)


def test_a_jax_run_resumes_finetunes_and_generates_on_tensorflow(runs, tmp_path):
    jax_checkpoint = runs["jax"]["results"][1]
    assert read_checkpoint_info(jax_checkpoint).step == 2
    run_copy = tmp_path / "jax-run"
    shutil.copytree(Path(jax_checkpoint).parents[1], run_copy)
    resumed = scenarios.resume(str(run_copy / "checkpoints" / Path(jax_checkpoint).name), epochs=2)
    assert (resumed["step"], resumed["iterations"], resumed["final_step"]) == (2, 2, 4)
    assert -1.0 <= resumed["switch"] <= 0.0
    tuned = scenarios.finetune(jax_checkpoint, str(tmp_path / "finetune"))
    assert tuned["step"] == 2 and tuned["parent"] == jax_checkpoint
    shape, finite, spread = scenarios.generate(jax_checkpoint)
    assert shape[0] == 2 and shape[2] == 128 and finite and spread > 0


def test_a_tensorflow_run_resumes_finetunes_and_generates_on_jax(runs):
    _, _, resumed, tuned, generated, *_ = runs["jax"]["results"]
    assert runs["jax"]["backend"] == "jax"
    assert (resumed["step"], resumed["iterations"], resumed["final_step"]) == (2, 2, 4)
    assert read_checkpoint_info(resumed["checkpoint"]).step == 4
    assert tuned["step"] == 2 and tuned["parent"] == runs["tf_checkpoint"]
    shape, finite, spread = generated
    assert shape[0] == 2 and shape[2] == 128 and finite and spread > 0
    # the same generator and seed give the same latents on TensorFlow, to rounding
    assert scenarios.generate(runs["tf_checkpoint"])[2] == pytest.approx(spread, rel=1e-3)


@pytest.mark.parametrize("index, dtype", [(5, "bfloat16"), (6, "float16")])
def test_mixed_precision_trains_on_jax_and_saves_float32_weights(runs, index, dtype):
    checkpoint = Path(runs["jax"]["results"][index])
    info = read_checkpoint_info(checkpoint)
    assert info.step == 2 and info.training.config.mixed_precision_dtype == dtype
    losses = info.training.history[-1]
    assert all(np.isfinite(losses[key]) for key in ("critic_real", "critic_fake", "generator", "r1_penalty"))
    dtypes = set()
    for role in ("generator", "generator_ema", "critic"):
        with h5py.File(checkpoint / official.GAN_FILE_NAMES[role]) as file:
            file.visititems(lambda _, item: dtypes.add(str(item.dtype)) if isinstance(item, h5py.Dataset) else None)
    assert dtypes == {"float32"}


def test_the_divergence_guard_rolls_back_on_jax(runs):
    """The rollback restores the snapshot into the step's state (sync, assign, reload)."""
    diverged = runs["jax"]["results"][7]
    assert diverged["events"] == [["divergence", 0], ["divergence", 0]]
    assert diverged["lr_scale"] == 0.5 and diverged["step"] == 0 and diverged["finite"] is True
    assert "after 1 rollback(s), the limit" in diverged["message"]


def test_jax_training_imports_no_tensorflow(runs):
    assert runs["jax"]["tensorflow_imported"] is False


@pytest.fixture(scope="module")
def device_runs(runs) -> dict:
    """The parity steps on 1 and on 2 virtual CPU devices in one process, and the device checks."""
    folder = runs["folder"]
    report = run_on_jax(folder, "devices", [
        ["parity_steps", {"start": str(runs["start"]), "out": str(folder / "one-device"), "devices": 1}],
        ["parity_steps", {"start": str(runs["start"]), "out": str(folder / "two-devices"), "devices": 2}],
        ["device_errors", {}],
    ], extra_env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    return {"one": _losses_and_weights(folder / "one-device"), "two": _losses_and_weights(folder / "two-devices"),
            "errors": report["results"][2]}


def assert_losses_agree(expected: list[dict], found: list[dict]) -> None:
    """Three steps' losses, each within 1e-4 relative or absolute (the parity bound)."""
    assert len(found) == len(expected) == 3
    for step, (wanted, got) in enumerate(zip(expected, found, strict=True), start=1):
        assert set(got) == set(wanted)
        for key in wanted:
            assert got[key] == pytest.approx(wanted[key], rel=1e-4, abs=1e-4), (step, key)


def test_two_devices_give_the_losses_of_one_at_the_same_global_batch(device_runs):
    """Data parallel over 2 virtual CPU devices against 1, global batch 4: the same losses within
    float rounding (the batch means become a cross-device sum of two halves: measured, the
    losses differ by at most 9e-7 relative and the weights by 0.012 lr after 3 steps; held to the
    TensorFlow/JAX bounds), and the device checks refuse 3 devices and a batch of 3."""
    (one, one_weights), (two, two_weights) = device_runs["one"], device_runs["two"]
    assert_losses_agree(one, two)
    assert_weights_agree(one_weights, two_weights)
    too_many, uneven = device_runs["errors"]
    assert "--devices 3: JAX sees 2 CPU device(s)" in too_many
    assert "batch size 3 does not split evenly over 2 devices" in uneven


def run_as_jax_hosts(folder: Path, name: str, specs: list[list]) -> list[dict]:
    """Run one scenario list per process as a multi-host JAX job on this machine: the processes
    join through `jax.distributed` from the KERAS_DISTRIBUTION_* variables, as on real hosts
    (README, "Several GPUs"), with one CPU device each and CPU collectives over gloo."""
    coordinator = f"127.0.0.1:{free_port()}"
    children = []
    for index, spec in enumerate(specs):
        path, command, env = scenario_child(folder, f"{name}-{index}", spec, {
            "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo", "KERAS_DISTRIBUTION_JOB_ADDRESSES": coordinator,
            "KERAS_DISTRIBUTION_NUM_PROCESSES": str(len(specs)), "KERAS_DISTRIBUTION_PROCESS_ID": str(index)})
        env.pop("XLA_FLAGS", None)  # one device per process
        log = path.with_suffix(".log").open("w")
        children.append((path, log, subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log,
                                                     stderr=subprocess.STDOUT)))
    deadline = time.monotonic() + 600
    try:
        while any(child.poll() is None for _, _, child in children) and time.monotonic() < deadline:
            # one process that fails leaves the others waiting at a barrier: stop at its error
            if any(child.returncode not in (None, 0) for _, _, child in children):
                break
            time.sleep(0.5)
    finally:
        for _, log, child in children:
            child.kill()
            child.wait()
            log.close()
    failed = [f"{path.stem}: exit {child.returncode}\n{path.with_suffix('.log').read_text()[-2000:]}"
              for path, _, child in children if child.returncode != 0]
    assert not failed, "\n".join(failed)
    return [json.loads(path.with_suffix(".out.json").read_text()) for path, _, _ in children]


def test_two_hosts_train_as_two_devices_of_one(runs, device_runs):
    """A multi-host run, two processes on this machine with one device each: every process sees
    the global losses, which are those of one process with two devices (each process feeds its half
    of each batch); a short training run ends with the same checkpoint weights on both hosts."""
    folder = runs["folder"]
    reports = run_as_jax_hosts(folder, "hosts", [
        [["parity_steps", {"start": str(runs["start"]), "out": str(folder / f"host-{index}")}],
         ["train", {"run_dir": str(folder / f"host-{index}-run"), "epochs": 1, "batch_size": 4,
                    "devices": "all"}]]
        for index in range(2)
    ])
    two, two_weights = device_runs["two"]
    for index in range(2):
        losses, weights = _losses_and_weights(folder / f"host-{index}")
        assert_losses_agree(two, losses)
        assert_weights_agree(two_weights, weights)
    checkpoints = [Path(report["results"][1]) for report in reports]
    assert checkpoints[0] != checkpoints[1] and all(path.is_dir() for path in checkpoints)
    files = sorted(path.name for path in checkpoints[0].glob("*.h5"))
    assert files == sorted(path.name for path in checkpoints[1].glob("*.h5")) and "gen.h5" in files
    for file in files:
        with h5py.File(checkpoints[0] / file) as first, h5py.File(checkpoints[1] / file) as second:
            first_values, second_values = _datasets(first), _datasets(second)
        assert first_values.keys() == second_values.keys() and first_values, file
        for name, value in first_values.items():
            np.testing.assert_array_equal(value, second_values[name], err_msg=f"{file}:{name}")


def _datasets(h5: h5py.File) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    h5.visititems(lambda name, item: found.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return found


def test_the_gpu_benchmark_runs_on_the_jax_cpu_backend_without_the_data_half(tmp_path):
    report = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_train.py", "--tiny", "--policies", "float32", "--json", str(report)],
        cwd=PROJECT_ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(report.read_text())
    assert result["forbidden_imported"] == []
    (row,) = result["rows"]
    assert (row["base_channels"], row["batch"], row["policy"]) == (16, 2, "float32")
    assert row["steps_per_s"] > 0 and row["compile_s"] > 0
    assert row["recipe_hours"] == pytest.approx(283 * 9375 / row["steps_per_s"] / 3600, rel=0.01)
    assert "steps_per_s" in done.stdout and "cpu" in done.stdout
