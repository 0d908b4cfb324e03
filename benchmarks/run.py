"""Print every performance figure of the project: `python -m benchmarks.run [SUITE]...` (suites below).

Targets (docs/operations.md §6) are printed beside the figures; nothing here fails on a miss: these are
measurements, not tests.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time

SUITES = {
    "stages": ("benchmarks.bench_stages", "MIDI render and loudness normalization"),
    "model": ("benchmarks.bench_model", "Musika encode, generate, training steps"),
    "pipeline": ("benchmarks.bench_pipeline", "MIDI dataset flow: first run vs unchanged re-run"),
    "youtube": ("benchmarks.bench_youtube", "segment + filter + normalize speed, 3-hour compilation memory"),
    "training": ("benchmarks.bench_training", "GAN trainer step, checkpoint save, input pipeline"),
    "demo": ("benchmarks.bench_demo", "the whole demo: fresh store, then an unchanged re-run"),
    "gpu": ("benchmarks.gpu_train", "GAN training on Keras' JAX backend: steps/s, memory, compile, recipe hours"),
    "learning": ("benchmarks.bench_learning", "the GAN learns: Fréchet distance of samples from step 0 to the end"),
}


def main(argv: list[str]) -> int:
    chosen = argv or list(SUITES)
    unknown = [name for name in chosen if name not in SUITES]
    if unknown:
        print(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}", file=sys.stderr)
        return 2
    print(f"# musika-piano benchmarks on {platform.node()} ({platform.processor() or platform.machine()}),"
          f" Python {platform.python_version()}")
    for name in chosen:
        module_name, title = SUITES[name]
        print(f"\n## {name}: {title}")
        started = time.perf_counter()
        figures = importlib.import_module(module_name).run()
        for figure, value in figures.items():
            print(f"{figure:48s} {value}")
        print(f"({name} took {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
