# Backprop: `make run` serves the API on $(HOST):$(PORT), 127.0.0.1:8000 by default (SQLite),
# with only the serving dependencies; `make test` adds the test tools (and PyTorch) and runs
# every check.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv
STAMP := $(VENV)/.synced
SERVE_STAMP := $(VENV)/.synced-serve
HOST ?= 127.0.0.1
PORT ?= 8000
LOCKED := pyproject.toml uv.lock clients/python/pyproject.toml
# PyTorch is optional: the parity tests and the benchmark use it when its wheel is on disk.
TORCH_WHEEL := $(firstword $(wildcard /opt/wheels/torch-*cp311*.whl))

.PHONY: run test lint typecheck deploy-check docs pytest bench env clean

env: $(STAMP)

$(UV):
	$(PYTHON) -m pip install --user --quiet uv

# Bytecode is compiled at install time (--compile-bytecode, and compileall for our own
# sources): with PYTHONDONTWRITEBYTECODE set, as on the CI machines and in the Docker
# image, every process (each `backprop serve`, each spawned worker) would otherwise
# compile every module it imports from source: 4.2 s to import the server, 1.6 s compiled.
COMPILE_SOURCES := $(VENV)/bin/python -m compileall -q app engine clients/python/src > /dev/null

# Everything: the server, the client, the test tools (dev group) and PyTorch when on disk.
$(STAMP): $(LOCKED) | $(UV)
	$(UV) sync --frozen --compile-bytecode
	$(COMPILE_SOURCES)
ifneq ($(TORCH_WHEEL),)
	$(UV) pip install --quiet --python $(VENV)/bin/python "$(TORCH_WHEEL)" || echo "torch wheel not installed; torch parity tests will be skipped"
endif
	touch $(STAMP)

# Serving only: no dev group, no PyTorch. --inexact keeps what `make env` added before.
$(SERVE_STAMP): $(LOCKED) | $(UV)
	$(UV) sync --frozen --no-dev --inexact --compile-bytecode
	$(COMPILE_SOURCES)
	touch $(SERVE_STAMP)

run: $(SERVE_STAMP)
	$(VENV)/bin/backprop serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Two processes (pytest-xdist), a test file per process at a time: many tests wait on
# real servers, so the two cores stay busy; PYTEST_ARGS="-n 0" runs them in one process.
# Files are handed out in tests/conftest.py's order (slow files first):
# --no-loadscope-reorder, as xdist otherwise sorts files by their number of tests and
# the few long fault-injection tests ran last, one file per process. Three processes
# were slower on two cores (32 min against 27) and starved the lease-timing tests.
# The 20 slowest tests are listed at the end (where the suite's time goes).
pytest: $(STAMP)
	$(VENV)/bin/pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=20 $(PYTEST_ARGS)

# Deployment files, checked without a Docker engine.
deploy-check: $(STAMP)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(VENV)/bin/hadolint --failure-threshold warning Dockerfile

# README.md and docs/ alone (make test runs them too, in pytest): every block runs against a
# real server, links resolve, tables match the code.
docs: $(STAMP)
	$(VENV)/bin/pytest tests/test_docs.py $(PYTEST_ARGS)

test: lint typecheck deploy-check pytest

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/engine.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
