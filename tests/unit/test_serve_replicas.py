"""Three real ``semcascade serve`` processes on loopback sharing one real redis-server.

The replicas serve two models from the same two config files: ``load`` (a cheap k=3 tier and a strong
k=1 tier with global concurrency limits, a run budget and the answer cache) and ``mem`` (strategy
memory on). The fault server in this process is the upstream: it counts requests and the peak in
flight per model (= per tier). The official ``openai`` client sends the load from 64 concurrent tasks
spread over the replicas; one replica is ``kill -9``-ed mid-load.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from redis_fixtures import redis_server_fixture  # noqa: F401
from serve_fixtures import DRAFTS, KEY_ENV, metric, serve

from semcascade.config import load_config
from semcascade.memory.config import MemoryConfig
from semcascade.state.base import create_state_store
from semcascade.state.redis_store import RedisLedger
from semcascade.testing import FaultServer
from semcascade.testing.redis_server import RedisServer
from semcascade.testing.serve_process import ServeProcess

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 2000
CLIENTS = 64
CHEAP_LIMIT, STRONG_LIMIT = 3, 2
LEASE_S = 4.0
KILL_AFTER = 400  # responses before replica 0 is killed
# only output tokens are priced: a "Paris" answer bills 1 token a sample, the worst case max_tokens=4
OUT_PRICE = 2e-6
BUDGET = 0.004  # ~750 answered requests: the rest of the 2,000 are refused with 429 budget_exceeded
WORST_RESERVATION = 3 * 4 * OUT_PRICE  # the cheap tier's bound: k=3 samples of max_tokens=4
STRATEGY = "Recall which country the question is about first, then give its seat of government in one word."


def answer(model: str, prompt: str, index: int, rng: random.Random) -> str:
    if "teacher writing advice" in prompt:  # the strategy memory asks the strong tier for a strategy
        return STRATEGY
    if model.endswith("cheap") and ("hard" in prompt or model == "mem-cheap"):
        return DRAFTS[index % len(DRAFTS)]  # the k samples disagree: escalate
    return "Paris"


def _tier(server: FaultServer, name: str, model: str, k: int, limit: int | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name, "model": f"openai/{model}", "api_base": server.base_url, "api_key_env": KEY_ENV, "k": k,
        "native_n": True, "max_tokens": 4, "threshold": 0.6, "timeout": 10.0,
        "retry": {"max_attempts": 2, "backoff_base_s": 0.0, "backoff_max_s": 0.0, "retry_after_max_s": 0.0},
        "input_cost_per_token": 0.0, "output_cost_per_token": OUT_PRICE,
    }  # fmt: skip
    if limit is not None:
        cfg["max_concurrency"] = limit
    return cfg


def _configs(server: FaultServer, redis: RedisServer, tmp: Path) -> list[Path]:
    def state(ns: str, **over: Any) -> dict[str, Any]:
        return {"name": "redis", "namespace": ns, "lease_s": LEASE_S, "options": {"url": redis.url}, **over}

    load = {
        "tiers": [_tier(server, "cheap", "cheap", 3, CHEAP_LIMIT), _tier(server, "strong", "strong", 1, STRONG_LIMIT)],
        "scorer": {"name": "lexical"},
        "budget": {"max_cost_per_run": BUDGET},
        "state": state("replicas-load", answer_cache={"enabled": True}),
        # the drift monitor's counters are in the shared store: one stream of every replica's requests
        "drift": {"enabled": True, "baseline": {"escalation_rate": 0.2, "n": 100}, "window": 50},
        "serve": {"max_in_flight": 64, "max_queue": 256, "request_timeout_s": 60.0},
    }
    mem = {
        "tiers": [_tier(server, "cheap", "mem-cheap", 3), _tier(server, "strong", "mem-strong", 1)],
        "scorer": {"name": "lexical"},
        "memory": {"enabled": True, "min_similarity": 0.5},
        "state": state("replicas-mem"),
    }
    paths = []
    for name, cfg in (("load", load), ("mem", mem)):
        paths.append(tmp / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump(cfg))
    return paths


@pytest.fixture(name="upstream")
def upstream_fixture() -> Iterator[FaultServer]:
    os.environ.setdefault(KEY_ENV, "fault-dummy-key")
    with FaultServer(seed=15, answer=answer, base_latency_s=0.04, jitter_s=0.02) as server:
        yield server


@pytest.fixture(name="replicas")
def replicas_fixture(upstream: FaultServer, redis_server: RedisServer, tmp_path: Path) -> Iterator[list[ServeProcess]]:
    configs = _configs(upstream, redis_server, tmp_path)
    reps = [ServeProcess(configs, pythonpath=str(REPO)) for _ in range(3)]  # started together: they load in parallel
    try:
        for r in reps:
            r.wait()
        yield reps
    finally:
        for i, r in enumerate(reps):
            r.kill()
            print(f"--- replica {i} output (tail)\n" + "".join(r.output[-30:]))  # shown when the test fails


async def _chat(client: openai.AsyncOpenAI, model: str, prompt: str) -> tuple[dict[str, str], dict[str, Any], str]:
    raw = await client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}]
    )
    completion = raw.parse()
    meta = completion.model_extra["semcascade"]  # type: ignore[index]
    return dict(raw.headers), meta, completion.choices[0].message.content or ""


def _mem_requests(server: FaultServer) -> list[dict[str, Any]]:
    return [r for r in server.requests_seen if r.get("model") == "mem-cheap"]


@pytest.mark.load
def test_three_replicas_share_limits_budget_caches_and_memory(
    upstream: FaultServer, redis_server: RedisServer, replicas: list[ServeProcess]
) -> None:
    cfg_load, cfg_mem = (load_config(p) for p in replicas[0].configs)
    ledger = create_state_store(cfg_load).ledger("run", BUDGET, None, scope="run")
    strategies = create_state_store(cfg_mem).strategy_store(MemoryConfig(enabled=True))
    assert isinstance(ledger, RedisLedger)

    async def main() -> None:
        clients = [
            openai.AsyncOpenAI(base_url=r.base_url, api_key="none", max_retries=0, timeout=60.0) for r in replicas
        ]
        # an answer cached through replica 0 is a hit through replica 1: no upstream call, marked
        h0, m0, t0 = await _chat(clients[0], "load", "What is the capital of France (cache)?")
        seen = upstream.stats.requests
        h1, m1, t1 = await _chat(clients[1], "load", "What is the capital of France (cache)?")
        assert h0["x-semcascade-answer-cache"] == "miss" and not m0["answer_cache_hit"]
        assert h1["x-semcascade-answer-cache"] == "hit" and m1["answer_cache_hit"] and t1 == t0
        assert m1["cost"] == 0 and m1["cached_cost"] == pytest.approx(m0["cost"]) and m0["cost"] > 0
        assert upstream.stats.requests == seen
        paid_seen = m0["cost"]

        # a strategy learned through replica 0 (which is killed below)
        await _chat(clients[0], "mem", "Which city is the capital of France?")
        assert strategies.count() == 1
        assert not any(STRATEGY in str(r["messages"]) for r in _mem_requests(upstream))

        upstream.reset_stats()  # the peaks below are the load's
        outcomes: Counter[str] = Counter()
        queue = list(range(REQUESTS))
        dead: set[int] = set()
        killed_at: list[float] = []

        async def worker(w: int) -> None:
            nonlocal paid_seen
            while queue:
                i = queue.pop()
                live = [k for k in range(3) if k not in dead]
                rep = w % 3 if w % 3 in live else live[w % len(live)]
                prompt = f"{'hard ' if i % 5 == 0 else ''}question {i}: what is the capital of France?"
                try:
                    _, meta, _ = await _chat(clients[rep], "load", prompt)
                    outcomes["200"] += 1
                    paid_seen += meta["cost"]
                except openai.RateLimitError as exc:
                    assert exc.response.json()["error"]["code"] == "budget_exceeded", exc.response.text
                    outcomes["429"] += 1
                except openai.APIConnectionError:
                    assert rep in dead, f"replica {rep} failed a request"  # only the killed one loses requests
                    outcomes["lost"] += 1
                if sum(outcomes.values()) == KILL_AFTER and not dead:
                    os.kill(replicas[0].proc.pid, signal.SIGKILL)  # mid-load, with requests in flight
                    dead.add(0)
                    killed_at.append(time.monotonic())

        await asyncio.gather(*(worker(w) for w in range(CLIENTS)))
        assert sum(outcomes.values()) == REQUESTS and outcomes["200"] > KILL_AFTER and outcomes["429"] > 0, outcomes
        assert replicas[0].proc.wait(timeout=10) == -signal.SIGKILL  # it died (no graceful shutdown)

        # the global per-tier concurrency limits held at the upstream (and were reached)
        peaks = upstream.stats.peak_by_model
        assert peaks["cheap"] <= CHEAP_LIMIT and peaks["strong"] <= STRONG_LIMIT, peaks
        assert peaks["cheap"] == CHEAP_LIMIT, peaks

        # the strategy survived its replica's death and is used by another replica's cheap tier
        assert strategies.count() == 1
        await _chat(clients[1], "mem", "What city is the capital of France?")
        assert any(STRATEGY in str(r["messages"]) for r in _mem_requests(upstream))

        # one drift stream: both live replicas report the same count, which includes the dead replica's requests
        scraped = [httpx.get(r.base_url.removesuffix("/v1") + "/metrics").text for r in replicas[1:]]
        stream = [metric(t, "semcascade_task_drift_stream_requests", model="load", shared="true") for t in scraped]
        served_here = sum(metric(t, "semcascade_task_requests_total", model="load") for t in scraped)
        assert stream[0] == stream[1] > served_here > 0, (stream, served_here)

        # the dead replica's reservations: after their lease the next reservation reclaims them
        await asyncio.sleep(max(0.0, killed_at[0] + LEASE_S + 0.5 - time.monotonic()))
        with contextlib.suppress(openai.RateLimitError):  # budget spent or not: a reservation reclaims first
            await _chat(clients[2], "load", "one more question after the lease?")
        t = ledger.totals()
        assert t["reserved_cost"] == 0 and t["reserved_tokens"] == 0, t
        assert t["reclaimed"] >= 1, t  # the killed replica had reservations open
        # consistent: every answer delivered was charged, and nothing else was charged but reservations that
        # were reclaimed (in full) or whose answer never reached a client (the killed replica's, the last one)
        unexplained = (t["reclaimed"] + outcomes["lost"] + 1) * WORST_RESERVATION
        assert paid_seen <= t["spent_cost"] <= min(BUDGET + 1e-12, paid_seen + unexplained), (paid_seen, t)
        for c in clients:
            with contextlib.suppress(Exception):
                await c.close()

    asyncio.run(main())


def test_redis_stopped_under_serve_fails_closed_with_a_typed_503(upstream: FaultServer, redis_server: RedisServer):
    state = {"name": "redis", "namespace": "down", "options": {"url": redis_server.url, "timeout_s": 0.5},
             "answer_cache": {"enabled": True}}  # fmt: skip
    cfg = {"tiers": [_tier(upstream, "cheap", "cheap", 3)], "scorer": {"name": "lexical"}, "state": state,
           "budget": {"max_cost_per_run": 1.0}}  # fmt: skip
    srv = serve({"down": cfg})
    client = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0, timeout=30.0)
    q = [{"role": "user", "content": "Capital of France?"}]
    try:
        assert client.chat.completions.create(model="down", messages=q).choices[0].message.content == "Paris"
        redis_server.stop()
        paid = upstream.stats.requests
        for content in ("Capital of Spain?", "Capital of France?"):  # new, and cached (the cache lookup degrades)
            with pytest.raises(openai.InternalServerError) as info:
                client.chat.completions.create(model="down", messages=[{"role": "user", "content": content}])
            err = info.value
            assert err.status_code == 503 and err.response.headers["retry-after"] == "1"
            body = err.response.json()["error"]
            assert body["code"] == "state_unavailable" and body["type"] == "server_error"
            assert redis_server.url.removesuffix("/0") in body["message"] and "Traceback" not in body["message"]
        assert upstream.stats.requests == paid  # failed closed: nothing was sent unmetered
        text = httpx.get(srv.url + "/metrics").text
        assert metric(text, "semcascade_state_degraded_operations", kind="answers") >= 1
        assert metric(text, "semcascade_state_failed_closed_operations", kind="budget") >= 2
        assert httpx.get(srv.url + "/health").status_code == 200  # the process is alive
        redis_server.start()  # back (same port): the same server answers again
        r = client.chat.completions.with_raw_response.create(model="down", messages=q)
        assert r.status_code == 200 and r.parse().choices[0].message.content == "Paris"
        assert r.headers["x-semcascade-answer-cache"] == "miss"  # the restarted redis-server kept nothing
    finally:
        srv.stop()
