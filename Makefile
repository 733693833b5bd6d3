# `make demo` and `make test` create (or reuse) .venv, install the project into it and run.
# On a machine without an NVIDIA GPU the CPU build of torch is installed first, so pip does not
# pull the multi-GB CUDA build. Override with `make TORCH_SPEC="torch==X.Y" ...`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test lint format clean-venv tiny-model

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if ! $(PY) -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	    $(PY) -m pip install torch; \
	  else \
	    $(PY) -m pip install "$(TORCH_SPEC)"; \
	  fi; \
	fi
	$(PY) -m pip install -e '.[test,train]'
	@# lmms-eval for the adapter's registration test, without letting it replace torch
	$(PY) -m pip install --no-deps 'lmms-eval>=0.5' && $(PY) -m pip install pytz loguru
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/oryx demo

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean-venv:
	rm -rf $(VENV)

# Retrain the embedded default model from scratch on CPU (data, train, eval, install); see
# docs/default_model.md.
tiny-model: $(STAMP)
	scripts/build_tiny_model.sh
