#!/usr/bin/env bash
# Download, for a GPU host with Python 3.12 and JAX but no Keras (and no registry), the wheels
# benchmarks/gpu_train.py unpacks there: Keras and its dependencies that JAX does not bring.
# Run where PyPI is reachable; benchmarks/wheels/ is git-ignored, so carry it with the sources.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
PLATFORM=${PLATFORM:-manylinux2014_x86_64}
rm -rf wheels && mkdir wheels
../.venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version "$PYTHON_VERSION" --platform "$PLATFORM" --dest wheels \
    keras==3.15.1 'optree>=0.13' typing-extensions absl-py namex rich markdown-it-py mdurl pygments packaging
du -sh wheels && ls wheels
