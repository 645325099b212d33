# `make run` and `make test` bootstrap .venv on a fresh machine.
# TORCH_SPEC pins the torch build CI tests with; on a CUDA box pass your own, e.g.
#   make TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cu124"
PY ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
BIN = $(VENV)/bin

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e '.[dev,ray]'
	touch $@

.PHONY: install run test lint bench gpu-check learnability learnability-bench
install: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/cnnprobe-tui

test: $(VENV)/.installed
	$(BIN)/ruff check cnnprobe tui tests bench
	$(BIN)/lint-imports
	$(BIN)/pytest -q

bench: $(VENV)/.installed
	$(BIN)/python bench/bench_engine.py

# The CUDA path's checks and figures (bench/gpu_check.py): the whole script on a CUDA machine
# (at most --budget-s, 300 s by default), its CPU half elsewhere (under a minute). Results in exports/gpu-check.*;
# e.g. make gpu-check GPU_CHECK_ARGS="--skip tui,studies".
GPU_CHECK_ARGS ?=
gpu-check: $(VENV)/.installed
	$(BIN)/python bench/gpu_check.py --json exports/gpu-check.json \
		--markdown exports/gpu-check.md $(GPU_CHECK_ARGS)

# Slow: every built-in model must beat the mean guess (tests/test_learnability.py).
learnability: $(VENV)/.installed
	$(BIN)/pytest -q -m slow tests/test_learnability.py

# The figures behind docs/benchmarks.md's learnability table (3 seeds, resumable).
learnability-bench: $(VENV)/.installed
	$(BIN)/python bench/learnability.py
