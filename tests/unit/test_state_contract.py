"""One contract for every state backend (memory, sqlite, redis): ledger, limiter, caches, strategy store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from redis_fixtures import redis_server_fixture  # noqa: F401

from semcascade._budget import Estimate
from semcascade.config import CascadeConfig
from semcascade.memory.config import MemoryConfig
from semcascade.memory.store import StrategyEntry
from semcascade.providers.base import Choice, Completion
from semcascade.state.base import StateStore, create_state_store
from semcascade.testing.redis_server import RedisServer

BACKENDS = ["memory", "sqlite", "redis"]


def _config(name: str, tmp_path: Path, redis: RedisServer | None) -> CascadeConfig:
    options: dict[str, object] = {}
    if name == "sqlite":
        options = {"path": str(tmp_path)}
    if name == "redis":
        assert redis is not None
        options = {"url": redis.url}
    return CascadeConfig.model_validate(
        {"tiers": [{"name": "t", "model": "openai/x"}], "state": {"name": name, "options": options}}
    )


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    redis = request.getfixturevalue("redis_server") if request.param == "redis" else None
    s = create_state_store(_config(request.param, tmp_path, redis))
    yield s
    s.close()


def test_ledger_caps_reservations_and_settles(store: StateStore) -> None:
    ledger = store.ledger("run", 1.0, 1000, scope="run")
    assert ledger.try_reserve(Estimate(0.6, 100)) is None
    why = ledger.try_reserve(Estimate(0.6, 100))
    assert why is not None and "max_cost_per_run" in why  # 0.6 + 0.6 > 1.0 while the first is reserved
    ledger.settle(Estimate(0.6, 100), Estimate(0.1, 10))  # billed less than reserved: the rest is free again
    assert ledger.try_reserve(Estimate(0.6, 100)) is None
    assert ledger.try_reserve(Estimate(0.4, 10)) is not None  # 0.1 spent + 0.6 reserved + 0.4 > 1.0
    assert ledger.try_reserve(Estimate(0.25, 10)) is None


def test_ledger_never_grants_past_the_cap(store: StateStore) -> None:
    ledger = store.ledger("run2", 1.0, None, scope="run")
    granted = [ledger.try_reserve(Estimate(0.3, 1)) is None for _ in range(5)]
    assert granted == [True, True, True, False, False]
    rem = ledger.remaining()
    assert rem.cost == pytest.approx(0.1, abs=1e-9)


def test_token_cap(store: StateStore) -> None:
    ledger = store.ledger("run3", None, 100, scope="run")
    assert ledger.try_reserve(Estimate(0.0, 60)) is None
    why = ledger.try_reserve(Estimate(0.0, 60))
    assert why is not None and "max_tokens_per_run" in why


def test_free_calls_settle_and_free_their_tokens(store: StateStore) -> None:
    # local models and unpriced tiers reserve and bill 0 money: settling must still free the tokens
    ledger = store.ledger("free", None, 100, scope="run")
    for _ in range(5):
        assert ledger.try_reserve(Estimate(0.0, 60)) is None
        ledger.settle(Estimate(0.0, 60), Estimate(0.0, 0))
    assert ledger.remaining().tokens == 100


def test_kv_roundtrip_and_ttl(store: StateStore) -> None:
    kv = store.kv("answers")
    assert kv.get("k") is None
    kv.put("k", b"v", 60.0)
    assert kv.get("k") == b"v"
    kv.put("short", b"x", 0.05)
    time.sleep(0.15)
    assert kv.get("short") is None


def test_response_cache_keeps_first_writer(store: StateStore) -> None:
    rc = store.response_cache()
    c1 = Completion(
        model="m",
        choices=(Choice(text="a", completion_tokens=1), Choice(text="b", completion_tokens=1)),
        prompt_tokens=3,
    )
    stored = rc.put("key", [0, 1], c1, 0.5, read_n=2)
    assert [s.choice.text for s in stored] == ["a", "b"]
    c2 = Completion(model="m", choices=(Choice(text="z", completion_tokens=1),), prompt_tokens=3)
    stored = rc.put("key", [1], c2, 0.1, read_n=2)
    assert [s.choice.text for s in stored] == ["a", "b"]  # sample 1 existed: kept
    assert [s.choice.text for s in rc.get("key", 1)] == ["a"]
    assert rc.recorded_latency("key", 2) == pytest.approx(0.5)


def _entry(vec: list[float], strategy: str, qh: str) -> StrategyEntry:
    v = np.asarray(vec, dtype=np.float32)
    return StrategyEntry(v, v, strategy, "m", "strong", 1.0, qh)


def test_strategy_store_dedup_cap_and_search(store: StateStore) -> None:
    mem = MemoryConfig(enabled=True, max_entries=2, dedup_similarity=0.99, eviction="oldest")
    st = store.strategy_store(mem)
    assert st.add(_entry([1, 0, 0], "a", "q1")).added
    assert not st.add(_entry([1, 0, 0], "a again", "q1")).added  # same query
    assert not st.add(_entry([1, 0.001, 0], "a near", "q2")).added  # near-duplicate strategy
    assert st.add(_entry([0, 1, 0], "b", "q3")).added
    r = st.add(_entry([0, 0, 1], "c", "q4"))
    assert r.added and r.evicted == 1 and st.count() == 2  # the cap holds; the oldest went
    hits = st.search(np.asarray([0, 0, 1], dtype=np.float32), top_k=1, min_similarity=0.5)
    assert [h.entry.strategy for h in hits] == ["c"]
    assert st.search(np.asarray([1, 0, 0], dtype=np.float32), top_k=1, min_similarity=0.5) == []


def test_limiter_caps_concurrency_in_process(store: StateStore) -> None:
    lim = store.limiter("t", 2, None)
    now = 0
    peak = 0

    async def one() -> None:
        nonlocal now, peak
        async with lim.slot():
            now += 1
            peak = max(peak, now)
            await asyncio.sleep(0.01)
            now -= 1

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(8)))

    asyncio.run(main())
    assert peak == 2
