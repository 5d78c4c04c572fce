"""The drift monitor's counters behind the state store: per process locally, one stream on a real Redis.

Two :class:`RedisStateStore` objects (two connections, as two replicas would hold) feed one monitor
stream; the Lua CUSUM is checked against the Python rule step by step.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np
import pytest
from redis_fixtures import redis_server_fixture  # noqa: F401

from semcascade import Cascade, MockProvider
from semcascade.drift import DriftAlarm, DriftBaseline, DriftConfig, DriftMonitor
from semcascade.state.base import StateStore, create_state_store
from semcascade.state.drift_counters import LocalDriftCounters
from semcascade.state.local import MemoryStateStore
from semcascade.state.redis_drift import RedisDriftCounters
from semcascade.state.redis_store import RedisStateStore
from semcascade.testing.redis_server import RedisServer

BASE = DriftBaseline(escalation_rate=0.2, scores=[float(x) for x in np.linspace(0.5, 1.0, 60)], n=500)
DRIFT = DriftConfig(enabled=True, baseline=BASE, window=40, false_alarms_per_10k=5.0)


def _stream(n: int, seed: int, shift_at: int) -> list[tuple[bool, float]]:
    """A stationary stream at the baseline rate, then escalations at 0.5 and lower scores."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        moved = i >= shift_at
        out.append((bool(rng.random() < (0.5 if moved else 0.2)), float(rng.uniform(0.2, 0.7) if moved else
                                                                          rng.uniform(0.5, 1.0))))  # fmt: skip
    return out


def _monitor(state: StateStore | None, task: str = "qa", **kw: Any) -> DriftMonitor:
    monitor = DriftMonitor.from_config(DRIFT, task=task, state=state, **kw)
    assert monitor is not None
    return monitor


def _redis(url: str, ns: str, **opts: Any) -> RedisStateStore:
    store = RedisStateStore(url, namespace=ns, **opts)
    return store


def test_local_counters_are_the_default_and_per_monitor() -> None:
    a, b = _monitor(None), _monitor(MemoryStateStore())
    assert isinstance(a.counters, LocalDriftCounters) and isinstance(b.counters, LocalDriftCounters)
    a.observe(True, 0.5)
    assert (a.requests, b.requests) == (1, 0) and not a.counters.shared


@pytest.mark.redis
def test_the_redis_script_is_the_python_rule_step_by_step(redis_server: RedisServer) -> None:
    store = _redis(redis_server.url, "rule")
    mon = _monitor(None)
    local = LocalDriftCounters(mon.cusum, rate_window=50, window=40)
    shared = store.drift_counters("qa", mon.cusum, rate_window=50, window=40)
    assert isinstance(shared, RedisDriftCounters) and shared.shared
    moved = 0
    for escalated, score in _stream(3000, seed=5, shift_at=1500):
        want, got = local.step(escalated, score), shared.step(escalated, score)
        assert got == want  # requests, CUSUM alarm, recent window, and the full score windows (exact floats)
        moved += want.moved is not None
    assert moved >= 3  # the comparison covered alarms and restarts, not only quiet steps
    for loss in np.random.default_rng(1).random(100):
        assert shared.add_loss(float(loss)) == local.add_loss(float(loss))
    assert shared.totals() == local.totals()
    store.close()


@pytest.mark.redis
def test_two_replicas_feed_one_stream_and_alarm_as_one_process(redis_server: RedisServer) -> None:
    stream = _stream(2400, seed=9, shift_at=1200)
    # one process seeing all the traffic
    alone = _monitor(None)
    want = [a for e, s in stream for a in alone.observe(e, s)]
    assert want, "the shift must be found"
    # two replicas, each its own connection, the requests alternating between them
    stores = [_redis(redis_server.url, "two") for _ in range(2)]
    seen: list[DriftAlarm] = []
    reps = [_monitor(st, on_alarm=seen.append) for st in stores]
    for i, (e, s) in enumerate(stream):
        reps[i % 2].observe(e, s)
    assert [(a.kind, a.at_request, a.observed) for a in seen] == [(a.kind, a.at_request, a.observed) for a in want]
    assert reps[0].requests == reps[1].requests == len(stream)
    assert sum(r.alarm_counts.total() for r in reps) == len(want)  # each alarm raised once, by one replica
    totals = reps[1].counters.totals() if reps[1].counters else None
    assert totals is not None and sum(totals.alarms.values()) == len(want)
    assert reps[0].counters is not None and len(reps[0].counters.recent_alarms()) == len(want)
    # per process (what each replica saw before the seam): half the traffic, the first alarm later
    halves = [_monitor(None) for _ in range(2)]
    first = []
    for i, (e, s) in enumerate(stream):
        if halves[i % 2].observe(e, s):
            first.append(i + 1)
    assert not first or min(first) > want[0].at_request
    for st in stores:
        st.close()


@pytest.mark.redis
def test_concurrent_steps_count_every_request_and_hand_each_score_window_out_once(redis_server: RedisServer) -> None:
    stores = [_redis(redis_server.url, "race") for _ in range(4)]
    mon = _monitor(None)
    counters = [st.drift_counters("qa", mon.cusum, rate_window=50, window=40) for st in stores]
    per, windows = 250, []
    lock = threading.Lock()

    def feed(w: int) -> None:
        for i in range(per):
            step = counters[w].step(i % 3 == 0, w * per + i + 0.5)  # every score unique
            if step is not None and step.scores is not None:
                with lock:
                    windows.append(step.scores)

    threads = [threading.Thread(target=feed, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t = counters[0].totals()
    assert t.requests == 4 * per and t.recent_n == 50
    got = [s for w in windows for s in w]
    assert all(len(w) == 40 for w in windows) and len(windows) == (4 * per) // 40
    assert len(set(got)) == len(got)  # no score was handed to two callers
    for st in stores:
        st.close()


@pytest.mark.redis
def test_a_lost_redis_degrades_the_monitor_not_the_request(redis_server: RedisServer) -> None:
    store = _redis(redis_server.url, "lost", timeout_s=0.5)
    mon = _monitor(store)
    assert mon.observe(False, 0.9) == [] and mon.requests == 1
    redis_server.stop()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert mon.observe(True, 0.1) == []  # not counted, no exception
        assert mon.requests == 0  # the totals read degrades to zeros
    assert store.health.snapshot()["degraded"]["drift"] >= 2
    assert any("drift degraded" in str(w.message) for w in caught)
    redis_server.start()
    assert mon.observe(False, 0.9) == []  # back: the restarted server kept nothing
    assert mon.requests == 1
    store.close()


@pytest.mark.redis
async def test_a_cascade_on_redis_state_keeps_its_drift_stream_there(redis_server: RedisServer) -> None:
    cfg = {
        "tiers": [{"name": "cheap", "model": "openai/cheap", "k": 3, "threshold": 0.9},
                  {"name": "strong", "model": "openai/strong", "k": 1}],
        "scorer": {"name": "lexical"},
        "drift": DRIFT.model_dump(mode="json"),
        "state": {"name": "redis", "namespace": "cascade", "options": {"url": redis_server.url}},
    }  # fmt: skip

    def handler(req: Any) -> Any:
        return MockProvider.texts(req.model, ["same"] * req.n)

    async with Cascade(cfg, provider=MockProvider(handler)) as one, Cascade(cfg, provider=MockProvider(handler)) as two:
        assert one.drift is not None and isinstance(one.drift.counters, RedisDriftCounters)
        for q in ("a", "b", "c"):
            await one.generate(q)
        await two.generate("d")
        assert one.drift.requests == 4 and two.drift is not None and two.drift.requests == 4
    other = create_state_store(one.config)  # the same namespace from the same config
    assert isinstance(other, RedisStateStore)
    assert other.client.hget(other.key("drift", "default"), "requests") == b"4"
    other.close()
