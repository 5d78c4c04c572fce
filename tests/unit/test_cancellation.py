"""Cancelling generate() cancels its in-flight provider calls: no leaked tasks, no unawaited coroutines.

Every warning is an error in this module (the same as ``-W error``), so an
unawaited coroutine's RuntimeWarning, surfaced by the explicit gc.collect(),
fails the test.
"""

from __future__ import annotations

import asyncio
import gc
import os
import warnings
from collections.abc import Sequence
from typing import Any

import pytest
from fault_fixtures import FAST_RETRY, cascade_config, fault_server_fixture, fault_server_session, tier  # noqa: F401

from semcascade import Cascade, MockProvider, PairJudgement
from semcascade.providers import Completion, CompletionRequest
from semcascade.testing import FaultServer

pytestmark = pytest.mark.filterwarnings("error")


class ExactScorer:
    name = "exact"
    kind = "similarity"

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        return [PairJudgement(float(a == b), float(a == b)) for a, b in pairs]


class SlowProvider:
    """Hangs every call until cancelled (answers "x" at once after ``hang = False``); records starts and
    cancellations."""

    def __init__(self) -> None:
        self.started = 0
        self.cancelled = 0
        self.all_started = asyncio.Event()
        self.expect = 0
        self.hang = True

    async def complete(self, request: CompletionRequest) -> Completion:
        if not self.hang:
            return MockProvider.texts(request.model, ["x"] * request.n)
        self.started += 1
        if self.started >= self.expect:
            self.all_started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")


FREE = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0}


def config(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "tiers": [
            # free, said so: a money cap over unpriced tiers is refused at load (it could never bind)
            {"name": "cheap", "model": "cheap", "k": 4, "native_n": False, "max_concurrency": 2, **FREE},
            {"name": "strong", "model": "strong", "k": 1, **FREE},
        ],
        "budget": {"max_cost_per_run": 1.0},
    }
    cfg.update(over)
    return cfg


def _is_litellm_logging(task: asyncio.Task[Any]) -> bool:
    # litellm runs a process-wide logging worker (and a task per logged call) by design
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and "/litellm/" in code.co_filename


def other_tasks() -> set[asyncio.Task[Any]]:
    """Pending tasks besides this test's own (and litellm's background logging)."""
    return {
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task() and not t.done() and not _is_litellm_logging(t)
    }


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_cancel_cancels_in_flight_calls_and_leaks_nothing() -> None:
    before = other_tasks()
    provider = SlowProvider()
    provider.expect = 2  # max_concurrency=2: two calls in flight, two waiting for a slot
    cascade = Cascade(config(), provider=provider, scorer=ExactScorer())
    task = asyncio.create_task(cascade.generate("q"))
    await asyncio.wait_for(provider.all_started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    assert provider.started == 2 and provider.cancelled == 2
    assert other_tasks() == before
    limiter = cascade.tiers[0].limiter
    assert limiter.in_flight == 0 and limiter.peak_in_flight == 2
    # a cancelled tier keeps its reservation as spent (what was billed is unknown), never more
    assert cascade.run_budget.spent_cost == 0.0 and cascade.run_budget.remaining().cost == 1.0
    gc.collect()


async def test_cancel_during_retry_backoff() -> None:
    calls = 0
    backing_off = asyncio.Event()

    async def handler(req: CompletionRequest) -> Completion:
        nonlocal calls
        calls += 1
        backing_off.set()
        from semcascade import RateLimitError

        raise RateLimitError("busy", model=req.model, tier=req.tier, retry_after=3600)

    cfg = config()
    cfg["tiers"][0]["retry"] = {"max_attempts": 3, "retry_after_max_s": 3600}
    before = other_tasks()
    task = asyncio.create_task(Cascade(cfg, provider=MockProvider(handler), scorer=ExactScorer()).generate("q"))
    await asyncio.wait_for(backing_off.wait(), 10)
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    assert calls == 2 and other_tasks() == before  # two first attempts (the slots), then sleeping
    gc.collect()


async def test_cancelled_generate_does_not_poison_the_cascade() -> None:
    provider = SlowProvider()
    provider.expect = 2
    cascade = Cascade(config(), provider=provider, scorer=ExactScorer())
    task = asyncio.create_task(cascade.generate("q"))
    await asyncio.wait_for(provider.all_started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    provider.hang = False
    r = await cascade.generate("q")
    assert r.text == "x"  # slots were released: the semaphore is not stuck at zero


def open_socket_count() -> int:
    return sum(1 for fd in os.listdir("/proc/self/fd") if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"))


async def test_cancel_against_the_real_provider_over_http(fault_server: FaultServer) -> None:
    cfg = cascade_config(tier(fault_server, "cheap", fault="hang", timeout=60.0), tier(fault_server, "strong", k=1))
    # Warm up: litellm imports parts of itself on first use, and one of them makes pydantic warn
    # (a third-party UserWarning that "error" would turn into a failed request).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        async with Cascade(cascade_config(tier(fault_server, "warm", k=1))) as warm:
            await warm.generate("warm-up")
    cascade = Cascade(cfg)
    await asyncio.to_thread(cascade.prepare)  # load the scorer now, not inside the wait below
    fault_server.reset_stats()
    before = other_tasks()
    task = asyncio.create_task(cascade.generate("What is the capital of France?"))
    for _ in range(3000):
        if fault_server.stats.in_flight == 3:
            break
        await asyncio.sleep(0.01)
    assert fault_server.stats.in_flight == 3  # the three hanging requests reached the server
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):  # the server sees the connections close and cancels its handlers
        if fault_server.stats.in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert fault_server.stats.in_flight == 0
    await settle()
    assert other_tasks() == before
    gc.collect()
