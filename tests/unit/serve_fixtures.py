"""Shared pieces of the serve tests: a fault server whose answers make tiers agree or escalate, served models.

Model names on the fault server say how its tiers answer: ``split`` (the k samples disagree: the
tier escalates), ``long`` (a several-word answer, streamed a word a delta), otherwise ``Paris``.
"""

from __future__ import annotations

import os
import random
import re
from typing import Any

from semcascade.config import ServeConfig
from semcascade.serve.app import create_app, observed_cascade
from semcascade.testing import FaultServer
from semcascade.testing.serve_thread import ServeThread

KEY_ENV = "SEMCASCADE_FAULT_KEY"
FAST_RETRY: dict[str, Any] = {"max_attempts": 3, "backoff_base_s": 0.0, "backoff_max_s": 0.0, "retry_after_max_s": 0.0}
LONG_ANSWER = "The capital of France is Paris"
DRAFTS = ("Lyon", "Nice", "Marseille", "Toulouse", "Lille")


def answer(model: str, prompt: str, index: int, rng: random.Random) -> str:
    if "split" in model:
        return DRAFTS[index % len(DRAFTS)]
    if "long" in model:
        return LONG_ANSWER
    return "Paris"


def tier(server: FaultServer, name: str, model: str, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "model": f"openai/{model}",
        "api_base": server.base_url,
        "api_key_env": KEY_ENV,
        "k": 3,
        "native_n": True,
        "max_tokens": 16,
        "threshold": 0.6,
        "timeout": 5.0,
        "retry": dict(FAST_RETRY),
        "input_cost_per_token": 1e-6,
        "output_cost_per_token": 2e-6,
    }
    cfg.update(over)
    return cfg


def two_tiers(server: FaultServer, cheap: str, strong: str, **over: Any) -> dict[str, Any]:
    """A cheap k=3 tier and a strong k=1 tier on ``server`` (models as in the module doc, or ``fault-KIND``)."""
    cfg: dict[str, Any] = {
        "tiers": [tier(server, "cheap", cheap), tier(server, "strong", strong, k=1)],
        "scorer": {"name": "lexical"},
    }
    cfg.update(over)
    return cfg


def start_fault_server() -> FaultServer:
    os.environ.setdefault(KEY_ENV, "fault-dummy-key")
    return FaultServer(seed=7, answer=answer, latency_s=0.3).start()


def serve(models: dict[str, dict[str, Any]], **settings: Any) -> ServeThread:
    """A started uvicorn server of ``models`` (name -> config) with ``ServeConfig(**settings)`` (auth off default)."""
    settings.setdefault("auth", "off")
    app = create_app({name: observed_cascade(cfg) for name, cfg in models.items()}, ServeConfig(**settings))
    return ServeThread(app).start()


_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus sample ``name`` over the series whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m["name"] != name:
            continue
        have = dict(kv.split("=", 1) for kv in m["labels"].split(",") if kv)
        if all(have.get(k) == f'"{v}"' for k, v in labels.items()):
            total += float(m["value"])
    return total
