from __future__ import annotations

import os

import pytest

# Nothing in the test suite may reach a model hub or fetch litellm's cost map.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config: pytest.Config) -> None:
    # registered here, not in pyproject.toml: the default run includes it; `-m "not load"` skips it
    config.addinivalue_line("markers", "load: the 2,000-call load test with faults over HTTP (slow; runs in CI)")
