"""Shared state on a real redis-server across real processes, against the fault server.

Each worker is a separate Python process (semcascade.testing.cascade_worker) running a Cascade whose
state is the test's Redis; the fault server in this process counts what reaches "upstream".
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fault_fixtures import cascade_config, fault_server_fixture, fault_server_session, tier  # noqa: F401
from redis_fixtures import redis_server_fixture  # noqa: F401

from semcascade._budget import Estimate
from semcascade.cascade import Cascade
from semcascade.errors import StateUnavailableError
from semcascade.memory.config import MemoryConfig
from semcascade.memory.store import StrategyEntry
from semcascade.state.base import create_state_store
from semcascade.state.redis_store import RedisLedger, RedisStateStore
from semcascade.testing import FaultServer
from semcascade.testing.cascade_worker import read_results, start_workers
from semcascade.testing.redis_server import RedisServer

pytestmark = pytest.mark.redis


def _config(server: FaultServer, redis: RedisServer, ns: str, **over: Any) -> dict[str, Any]:
    state = {"name": "redis", "namespace": ns, "options": {"url": redis.url}, **over.pop("state", {})}
    return cascade_config(tier(server, "cheap", k=2, **over.pop("tier", {})), state=state, **over)


def _wait(procs: list[tuple[subprocess.Popen[bytes], Path]]) -> list[dict[str, Any]]:
    out = []
    for p, path in procs:
        assert p.wait(timeout=120) == 0, (path.parent / f"err-{path.stem[-1]}.txt").read_text()[-2000:]
        out.extend(read_results(path))
    return out


def test_run_budget_holds_across_three_processes(fault_server: FaultServer, redis_server: RedisServer, tmp_path: Path):
    # every answer uses all max_tokens=8 and only output is priced, so a call's worst case is what it bills
    # (2 x 8 x 2e-6 = 3.2e-5): the run budget fits exactly 6 calls in all, where each process alone could do 6
    fault_server.answer = lambda *_: "one two three four five six seven eight"
    cfg = _config(
        fault_server, redis_server, "budget", budget={"max_cost_per_run": 0.000192}, tier={"input_cost_per_token": 0.0}
    )
    procs = start_workers(3, cfg, [[f"question {w}-{i}" for i in range(10)] for w in range(3)], tmp_path)
    results = _wait(procs)
    assert len(results) == 30
    answered = [r for r in results if "error" not in r]
    refused = [r for r in results if r.get("error_type") == "BudgetExceededError"]
    assert answered and refused and len(answered) + len(refused) == 30
    spent = sum(r["cost"] for r in answered)
    assert spent <= 0.000192 + 1e-12 and len(answered) <= 6
    store = create_state_store(Cascade(cfg).config)
    ledger = store.ledger("run", 0.000192, None, scope="run")
    assert isinstance(ledger, RedisLedger)
    totals = ledger.totals()
    assert totals["reserved_cost"] == 0 and totals["spent_cost"] <= 0.000192 + 1e-12
    assert totals["spent_cost"] == pytest.approx(spent, rel=1e-6, abs=1e-9)
    # what upstream billed (its requests) is what the ledger holds: 2 requests per answered call
    assert fault_server.stats.requests == 2 * len(answered)


def test_global_concurrency_limit_and_answer_cache_across_processes(
    fault_server: FaultServer, redis_server: RedisServer, tmp_path: Path
):
    fault_server.base_latency_s = 0.05
    cfg = _config(
        fault_server, redis_server, "limit", tier={"max_concurrency": 2}, state={"answer_cache": {"enabled": True}}
    )
    prompts = [[f"q{w}-{i}" for i in range(6)] for w in range(3)]
    results = _wait(start_workers(3, cfg, prompts, tmp_path))
    assert len(results) == 18 and all("error" not in r and not r["answer_cache_hit"] for r in results)
    assert fault_server.stats.requests == 36
    assert fault_server.stats.peak_in_flight <= 2  # three processes, each allowed 2 alone, share 2
    assert fault_server.stats.peak_in_flight == 2
    # the answers those processes cached are hits in this one: no upstream call
    by_prompt = {r["prompt"]: r for r in results}

    async def again() -> list[Any]:
        async with Cascade(cfg) as cascade:
            return [await cascade.generate(p) for p in prompts[1]]

    hits = asyncio.run(again())
    assert all(h.answer_cache_hit and h.cost == 0 for h in hits)
    assert [h.text for h in hits] == [by_prompt[p]["text"] for p in prompts[1]]
    assert hits[0].cached_cost == pytest.approx(by_prompt[prompts[1][0]]["cost"])
    assert fault_server.stats.requests == 36


_ADD_STRATEGY = """
import sys, numpy as np
from semcascade.config import CascadeConfig
from semcascade.memory.config import MemoryConfig
from semcascade.memory.store import StrategyEntry
from semcascade.state.base import create_state_store
cfg = CascadeConfig.model_validate({"tiers": [{"name": "t", "model": "openai/x"}],
    "state": {"name": "redis", "namespace": "mem", "lease_s": 1.0, "options": {"url": sys.argv[1]}}})
st = create_state_store(cfg).strategy_store(MemoryConfig(enabled=True))
v = np.asarray([1.0, 0.0, 0.0], dtype=np.float32)
print(st.add(StrategyEntry(v, v, "learned elsewhere", "m", "strong", 1.0, "qh")).added, flush=True)
if len(sys.argv) > 2:
    ledger = create_state_store(cfg).ledger("run", 1.0, None, scope="run")
    assert ledger.try_reserve(__import__("semcascade._budget", fromlist=["x"]).Estimate(0.5, 10)) is None
    print("reserved", flush=True)
    import time; time.sleep(600)
"""


def _mem_store(redis: RedisServer, lease_s: float = 600.0) -> Any:
    from semcascade.config import CascadeConfig

    cfg = CascadeConfig.model_validate(
        {
            "tiers": [{"name": "t", "model": "openai/x"}],
            "state": {"name": "redis", "namespace": "mem", "lease_s": lease_s, "options": {"url": redis.url}},
        }
    )
    return create_state_store(cfg)


def test_strategy_learned_in_one_process_is_used_by_another(redis_server: RedisServer):
    store = _mem_store(redis_server).strategy_store(MemoryConfig(enabled=True))
    q = np.asarray([1.0, 0.0, 0.0], dtype=np.float32)
    assert store.search(q, top_k=1, min_similarity=0.5) == []  # this process's copy: empty
    out = subprocess.run([sys.executable, "-c", _ADD_STRATEGY, redis_server.url], capture_output=True, check=True)
    assert out.stdout.strip() == b"True"
    hits = store.search(q, top_k=1, min_similarity=0.5)  # the version key changed: the copy refreshed
    assert [h.entry.strategy for h in hits] == ["learned elsewhere"]
    # dedup holds across processes: the same query from here is refused
    v = np.asarray([1.0, 0.0, 0.0], dtype=np.float32)
    assert not store.add(StrategyEntry(v, v, "again", "m", "strong", 1.0, "qh")).added


def test_kill_9_mid_run_reservation_is_reclaimed_and_strategies_kept(redis_server: RedisServer):
    proc = subprocess.Popen(
        [sys.executable, "-c", _ADD_STRATEGY, redis_server.url, "hold"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "True"
    assert proc.stdout.readline().strip() == "reserved"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = _mem_store(redis_server)
    ledger = store.ledger("run", 1.0, None, scope="run")
    assert isinstance(ledger, RedisLedger)
    assert ledger.totals()["reserved_cost"] == pytest.approx(0.5)  # the dead process's reservation, still held
    assert ledger.try_reserve(Estimate(0.6, 1)) is not None  # 0.5 reserved + 0.6 > 1.0: not over-spent
    time.sleep(1.2)  # past the dead reservation's 1 s lease
    assert ledger.try_reserve(Estimate(0.4, 1)) is None  # reclaim: charged in full (0.5), then 0.4 fits
    t = ledger.totals()
    assert t["reclaimed"] == 1 and t["spent_cost"] == pytest.approx(0.5) and t["reserved_cost"] == pytest.approx(0.4)
    assert ledger.try_reserve(Estimate(0.2, 1)) is not None  # never over-spent: 0.5 + 0.4 + 0.2 > 1.0
    st = store.strategy_store(MemoryConfig(enabled=True))
    assert st.count() == 1  # the strategy it stored before dying is there


def test_a_free_reservation_settles_and_a_dead_one_is_reclaimed(redis_server: RedisServer) -> None:
    # local models bill 0 money: a 0 decrement must reach HINCRBY as "0" (Lua's -0 prints as "-0")
    store = RedisStateStore(redis_server.url, namespace="free", lease_s=0.3)
    ledger = store.ledger("run", None, 100, scope="run")
    assert isinstance(ledger, RedisLedger)
    assert ledger.try_reserve(Estimate(0.0, 60)) is None
    ledger.settle(Estimate(0.0, 60), Estimate(0.0, 5))
    assert ledger.totals()["reserved_tokens"] == 0 and ledger.totals()["spent_tokens"] == 5
    dead = store.ledger("run", None, 100, scope="run")  # a holder that never settles (its process died)
    assert dead.try_reserve(Estimate(0.0, 60)) is None
    time.sleep(0.5)  # past its lease
    assert ledger.try_reserve(Estimate(0.0, 30)) is None  # the reclaim of a free reservation does not fail
    t = ledger.totals()
    assert t["reclaimed"] == 1 and t["spent_tokens"] == 65 and t["reserved_tokens"] == 30, t
    store.close()


def test_redis_stopped_mid_run_fails_closed_and_caches_degrade(fault_server: FaultServer, redis_server: RedisServer):
    cfg = _config(fault_server, redis_server, "down", state={"answer_cache": {"enabled": True}})

    async def main() -> None:
        async with Cascade(cfg) as cascade:
            ok = await cascade.generate("before")
            assert ok.text
            redis_server.stop()
            paid = fault_server.stats.requests
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with pytest.raises(StateUnavailableError) as info:
                    await cascade.generate("during")
            assert redis_server.url.removesuffix("/0") in str(info.value)
            assert fault_server.stats.requests == paid  # failed closed: nothing sent unmetered
            assert any("degraded to a miss" in str(w.message) for w in caught)  # the answer cache lookup
            health = cascade.state.health.snapshot()
            assert health["degraded"].get("answers", 0) >= 1 and health["failed_closed"].get("budget", 0) >= 1
            redis_server.start()  # back: the same process goes on
            again = await cascade.generate("after")
            assert again.text and not again.answer_cache_hit

    asyncio.run(main())


def test_unreachable_redis_at_start_is_a_typed_error_naming_the_url(fault_server: FaultServer):
    from semcascade.testing.redis_server import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    cfg = cascade_config(tier(fault_server, "cheap"), state={"name": "redis", "options": {"url": url}})
    with pytest.raises(StateUnavailableError) as info:
        Cascade(cfg)
    assert url in str(info.value) and info.value.url == url
    assert json.dumps(str(info.value))  # one line, no traceback needed
