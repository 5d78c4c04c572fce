"""Pytest fixtures for the loopback fault-injection server (import them into a test module).

    from fault_fixtures import fault_server_fixture, fault_server_session  # noqa: F401

gives tests a ``fault_server`` argument: one :class:`FaultServer` per session,
reset (no faults, no script, zeroed stats) before each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from semcascade.testing import FaultServer
from semcascade.testing.fault_server import default_answer

#: retries without waiting, so fault tests spend no time in backoff
FAST_RETRY: dict[str, Any] = {"max_attempts": 3, "backoff_base_s": 0.0, "backoff_max_s": 0.0, "retry_after_max_s": 0.0}


#: the env var the fault tiers read their (dummy) key from; litellm's OpenAI client needs one
KEY_ENV = "SEMCASCADE_FAULT_KEY"


@pytest.fixture(scope="session", name="fault_server_session")
def fault_server_session() -> Iterator[FaultServer]:
    os.environ.setdefault(KEY_ENV, "fault-dummy-key")
    with FaultServer(seed=1234) as server:
        yield server


@pytest.fixture(name="fault_server")
def fault_server_fixture(fault_server_session: FaultServer) -> FaultServer:
    server = fault_server_session
    server.reset_stats()
    server.fault_rate = 0.0
    server.retry_after = "0"
    server.latency_s = 0.2
    server.base_latency_s = 0.0
    server.latency = None
    server.hang_s = 3600.0
    server.answer = default_answer
    server.usage = "sum"
    server.n_support = "yes"
    return server


def tier(server: FaultServer, name: str, *, fault: str | None = None, **over: Any) -> dict[str, Any]:
    """A tier config whose model is served by ``server`` (``fault``: every request gets it)."""
    cfg: dict[str, Any] = {
        "name": name,
        "model": f"openai/fault-{fault}" if fault else f"openai/{name}-model",
        "api_base": server.base_url,
        "api_key_env": KEY_ENV,
        "k": 3,
        "native_n": False,  # k single requests unless a test says otherwise (no n probe)
        "max_tokens": 8,
        "threshold": 0.5,
        "timeout": 5.0,
        "retry": dict(FAST_RETRY),
        "input_cost_per_token": 1e-6,
        "output_cost_per_token": 2e-6,
    }
    cfg.update(over)
    return cfg


def cascade_config(*tiers: dict[str, Any], **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"tiers": list(tiers), "scorer": {"name": "lexical"}}
    cfg.update(over)
    return cfg
