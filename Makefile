# Two commands do all the set-up on a fresh machine:
#   make demo   - build/assemble the local models and server once, run the cascade
#   make test   - lint, type-check and run the whole test suite (incl. integration)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.semcascade-installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export LITELLM_LOCAL_MODEL_COST_MAP := True
export TOKENIZERS_PARALLELISM := false

.PHONY: setup prepare demo test lint unit integration bench clean-venv

setup: $(STAMP)

# torch is pinned and installed first: it comes from this machine's CPU wheel;
# an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml requirements-local.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[nli,eval,dev]'
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements-local.txt
	touch $@

# One-time, cached in ~/.cache/semcascade: compile llama-server, assemble models.
prepare: setup
	$(BIN)/semcascade local prepare
	$(BIN)/python -c "from semcascade.evaluation.datasets import ensure_evals_wheel; ensure_evals_wheel()"

demo: prepare
	$(BIN)/semcascade demo

lint: setup
	$(BIN)/ruff check semcascade tests benchmarks
	$(BIN)/mypy

unit: setup
	$(BIN)/python -m pytest -q -m "not integration"

integration: prepare
	$(BIN)/python -m pytest -q -m integration

test: prepare lint
	$(BIN)/python -m pytest -q

bench: prepare
	$(BIN)/python benchmarks/agreement_signals.py

clean-venv:
	rm -rf $(VENV)
