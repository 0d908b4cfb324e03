# The two commands of the README: `make demo` and `make test`. Each does its own set-up first.
SHELL := /bin/bash
VENV := .venv
export PREFECT_HOME ?= $(CURDIR)/data/prefect-home
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
export DO_NOT_TRACK ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
export NUMBA_CACHE_DIR ?= $(CURDIR)/data/.numba-cache

.PHONY: setup setup-tests demo test test-fast bench lint

setup:
	@bash scripts/setup.sh

setup-tests:
	@bash scripts/setup.sh --tests

demo: setup
	$(VENV)/bin/musika-piano demo

test: setup-tests
	$(VENV)/bin/python -m pytest tests --durations=25

test-fast: setup-tests
	$(VENV)/bin/python -m pytest tests -m "not slow"

bench: setup
	$(VENV)/bin/python -m benchmarks.run

lint: setup
	$(VENV)/bin/ruff check flows tasks musika_model tests benchmarks deploy
