# llmforge — every target works from a fresh clone (test/demo/bench install first when .venv is missing).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
LLMFORGE := $(VENV)/bin/llmforge
RECIPE ?= recipes/tiny.toml
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# torch: the CPU build (a wheel on this disk) when there is no NVIDIA GPU, the ordinary CUDA build otherwise.
TORCH_SPEC := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 'torch>=2.11' || echo 'torch==2.13.0')

.PHONY: install test test-fast demo bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install "$(TORCH_SPEC)"
	# pin the torch just installed so no later resolver step swaps in another build
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/constraints.txt
	$(PY) -m pip install -c $(VENV)/constraints.txt -e ".[dev]"
	touch $@

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

demo: install
	$(LLMFORGE) recipe check $(RECIPE)

bench: install
	$(PY) -m benchmarks.run

lint: install
	$(VENV)/bin/ruff check llmforge tests benchmarks
	$(VENV)/bin/ruff format --check llmforge tests benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
