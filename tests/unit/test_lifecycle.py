"""close() and aclose() do the same cleanup; one sync bridge serves every blocking entry point (issue 11).

The cleanup: wait for background strategy learning, close the HTTP clients,
close the memory store the cascade built, stop a local server it started.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

import semcascade
import semcascade.cascade as cascade_mod
from semcascade import Cascade, MockProvider, PairJudgement
from semcascade._sync import run_sync
from semcascade.config import LocalServerConfig
from semcascade.errors import MemoryStoreError
from semcascade.memory.prompts import STRATEGY_SYSTEM_PROMPT
from semcascade.providers import Completion, CompletionRequest
from semcascade.routing import ConstantRouter, RoutedCascade

QUESTION = "Who wrote the novel Pride and Prejudice?"


class ExactScorer:
    name = "exact"
    kind = "similarity"

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        return [PairJudgement(float(a == b), float(a == b)) for a, b in pairs]


class FakeServer:
    """Stands in for the managed llama-server (semcascade.local.server.LocalServer)."""

    instances: ClassVar[list[FakeServer]] = []

    def __init__(self, config: LocalServerConfig, models: list[str]) -> None:
        self.started = self.stopped = 0
        FakeServer.instances.append(self)

    def start(self) -> None:
        self.started += 1

    @property
    def base_url(self) -> str:
        return "http://127.0.0.1:9/v1"

    def load_models(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped += 1


def answer(req: CompletionRequest) -> Completion:
    system = next((m["content"] for m in req.messages if m["role"] == "system"), "")
    if system == STRATEGY_SYSTEM_PROMPT:
        return MockProvider.texts(req.model, ["Recall the literary era first, then name the author in full."])
    if req.tier == "cheap":
        return MockProvider.texts(req.model, ["a", "b", "c"][: req.n])
    return MockProvider.texts(req.model, ["Jane Austen"])


PRICE = {"input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7}


def config(tmp_path: Path, *, background: bool = True) -> dict[str, Any]:
    return {
        "tiers": [
            {"name": "cheap", "model": "local/qwen2.5-coder-0.5b", "k": 3, "context_window": 2048, **PRICE},
            {"name": "strong", "model": "local/qwen2.5-coder-1.5b", "k": 1, "context_window": 2048, **PRICE},
        ],
        "memory": {
            "enabled": True,
            "store": {"name": "sqlite", "options": {"path": str(tmp_path / "strategies.sqlite")}},
            "learn_in_background": background,
        },
    }


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the cascade's client-closing calls; replaces the local server by a fake one."""
    import semcascade.local.server as server_mod

    closed: list[int] = []

    async def fake_close(*_: object) -> None:
        closed.append(id(asyncio.get_running_loop()))

    monkeypatch.setattr(cascade_mod, "close_loop_clients", fake_close)
    monkeypatch.setattr(server_mod, "LocalServer", FakeServer)
    FakeServer.instances.clear()
    return closed


def make(tmp_path: Path, **kw: Any) -> Cascade:
    return Cascade(config(tmp_path, **kw), provider=MockProvider(answer), scorer=ExactScorer())


def assert_closed(cascade: Cascade) -> None:
    assert cascade.memory is not None
    with pytest.raises(MemoryStoreError, match="closed"):
        cascade.memory.store.count()
    (server,) = FakeServer.instances
    assert server.started >= 1 and server.stopped == 1


async def test_aclose_waits_for_learning_closes_clients_store_and_the_owned_server(
    tmp_path: Path, spies: list[int]
) -> None:
    cascade = make(tmp_path)
    r = await cascade.generate(QUESTION)
    assert r.tier == "strong" and cascade.memory is not None and cascade.memory.pending == 1
    await cascade.aclose()
    assert cascade.memory.pending == 0 and cascade.memory.spend.learned == 1  # waited for, not lost
    assert spies == [id(asyncio.get_running_loop())]  # this loop's clients
    assert_closed(cascade)


def test_close_does_the_same_cleanup(tmp_path: Path, spies: list[int]) -> None:
    cascade = make(tmp_path)
    r = cascade.generate_sync(QUESTION)  # its own loop: learning finished, clients closed before it ended
    assert r.tier == "strong" and cascade.memory is not None and cascade.memory.spend.learned == 1
    assert len(spies) == 1
    cascade.close()
    assert len(spies) == 2  # close() ran the same cleanup (in a loop of its own)
    assert_closed(cascade)
    cascade.close()  # closing twice is harmless


def test_the_context_managers_close(tmp_path: Path, spies: list[int]) -> None:
    with make(tmp_path, background=False) as cascade:
        cascade.generate_sync(QUESTION)
    assert_closed(cascade)

    async def main() -> Cascade:
        async with make(tmp_path / "b") as c:
            await c.generate(QUESTION)
        return c

    FakeServer.instances.clear()
    assert_closed(asyncio.run(main()))


async def test_close_inside_a_running_loop_refuses_to_drop_pending_learning(tmp_path: Path, spies: list[int]) -> None:
    cascade = make(tmp_path)
    await cascade.generate(QUESTION)
    with pytest.raises(RuntimeError, match=r"await cascade\.aclose\(\)"):
        cascade.close()  # e.g. `with Cascade(...)` in a notebook cell while a strategy is being learned
    await cascade.aclose()
    assert_closed(cascade)


async def test_close_inside_a_running_loop_without_pending_work(tmp_path: Path, spies: list[int]) -> None:
    cascade = make(tmp_path, background=False)
    await cascade.generate(QUESTION)
    cascade.close()  # a notebook's `cascade.close()`: releases at once, this loop's clients close soon after
    assert_closed(cascade)
    await asyncio.sleep(0)
    assert spies == [id(asyncio.get_running_loop())]


def test_a_memory_passed_in_is_the_callers_to_close(tmp_path: Path, spies: list[int]) -> None:
    from semcascade.memory import InMemoryStrategyStore, MemoryConfig, StrategyMemory

    class Store(InMemoryStrategyStore):
        closed = 0

        def close(self) -> None:
            Store.closed += 1

    memory = StrategyMemory(MemoryConfig(enabled=True), store=Store())
    with Cascade(config(tmp_path), provider=MockProvider(answer), scorer=ExactScorer(), memory=memory):
        pass
    assert Store.closed == 0


async def test_every_blocking_entry_point_refuses_a_running_loop(tmp_path: Path, spies: list[int]) -> None:
    from semcascade.evaluation.harness import run_eval_sync

    cascade = make(tmp_path, background=False)
    routed = RoutedCascade(cascade, ConstantRouter([0.9, 0.9]))
    calls = [
        (lambda: cascade.generate_sync("q?"), "await generate()"),
        (lambda: routed.generate_sync("q?"), "await generate()"),
        (
            lambda: semcascade.generate_sync("q?", config={"tiers": [{"name": "t", "model": "openai/gpt-4o"}]}),
            "await generate()",
        ),
        (lambda: run_eval_sync(config(tmp_path)), "await run_eval()"),
    ]
    for call, instead in calls:
        with pytest.raises(RuntimeError, match=re.escape(f"inside a running event loop; use '{instead}' there")):
            call()
    await cascade.aclose()


def test_the_routed_cascade_runs_the_cascade_end_of_loop_cleanup_and_closes_its_cascades(
    tmp_path: Path, spies: list[int]
) -> None:
    cascade = make(tmp_path)
    # skip mode from tier 0 runs the wrapped cascade itself (with its memory)
    with RoutedCascade(cascade, ConstantRouter([0.9, 0.9]), mode="skip") as routed:
        r = routed.generate_sync(QUESTION)
        assert r.tier == "strong" and cascade.memory is not None and cascade.memory.spend.learned == 1
        assert len(spies) == 1
    assert_closed(cascade)


def test_run_sync_runs_the_loop_end_cleanup_also_on_failure() -> None:
    ran: list[str] = []

    async def boom() -> None:
        raise ValueError("the call failed")

    async def cleanup() -> None:
        ran.append("cleanup")
        raise OSError("and so did the cleanup")

    with pytest.raises(ValueError, match="the call failed"):
        run_sync(boom, loop_end=cleanup)
    assert ran == ["cleanup"]

    async def ok() -> int:
        return 7

    assert run_sync(ok, loop_end=lambda: asyncio.sleep(0)) == 7


def test_run_sync_drops_contexts_their_raisers_suppressed() -> None:
    secret = "sk-never-shown"

    async def provider_call() -> None:
        try:
            raise RuntimeError(f"upstream said: bad key {secret}")
        except RuntimeError:
            raise ValueError("authentication failed") from None

    with pytest.raises(ValueError) as info:
        run_sync(provider_call)
    assert info.value.__context__ is None and info.value.__cause__ is None


# --------------------------------------------------------------------------- module-level helpers


class PricedMock(MockProvider):
    """Stands in for the litellm provider the module-level helpers' cascades build (10 prompt tokens, 1 out)."""

    def __init__(self, **_: object) -> None:
        super().__init__(lambda r: MockProvider.texts(r.model, ["Paris"] * r.n, prompt_tokens=10))


@pytest.fixture
def helpers(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The module-level helpers with a mock provider and an empty cache (closed again afterwards)."""
    from semcascade.providers.base import PROVIDERS

    # the native provider that `provider: auto` picks for openai/ models, replaced for this test only
    monkeypatch.setitem(PROVIDERS._factories, "openai", PricedMock)
    semcascade.close_cached_cascades()
    yield semcascade
    semcascade.close_cached_cascades()


def helper_config(name: str = "only", **budget: float) -> dict[str, Any]:
    tier = {"name": name, "model": "openai/gpt-4o-mini", "k": 1, "max_tokens": 10}
    price = {"input_cost_per_token": 1e-3, "output_cost_per_token": 1e-3}
    return {"tiers": [{**tier, **price}], "scorer": {"name": "lexical"}, "budget": budget}


def test_equal_configs_share_one_cascade_its_run_budget_and_scorer(helpers: Any) -> None:
    # the call's worst case is (22 prompt-bound + 10) tokens x 1e-3 = 0.032; it bills (10 + 1) x 1e-3 = 0.011
    first = helpers.generate_sync("q?", config=helper_config(max_cost_per_run=0.04))
    assert first.text == "Paris" and first.cost == pytest.approx(0.011)
    # the same config, written again: the same cascade, which remembers the first call's spend
    with pytest.raises(semcascade.BudgetExceededError, match="max_cost_per_run"):
        helpers.generate_sync("q?", config=helper_config(max_cost_per_run=0.04))
    a = helpers._cascade_for(helper_config(max_cost_per_run=0.04))
    assert a is helpers._cascade_for(helper_config(max_cost_per_run=0.04))
    assert a.run_budget.spent_cost == pytest.approx(0.011) and a.scorer is helpers._cascade_for(a.config).scorer
    assert helpers._cascade_for(helper_config(max_cost_per_run=0.05)) is not a  # another config, another cascade


async def test_the_async_helper_shares_the_cascade_too(helpers: Any) -> None:
    cfg = helper_config(max_cost_per_run=1.0)
    await helpers.generate("q?", config=cfg)
    await helpers.generate("q?", config=cfg)
    assert helpers._cascade_for(cfg).run_budget.spent_cost == pytest.approx(0.022)


def test_the_least_recently_used_cascade_is_evicted_and_closed(helpers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []
    real_close = Cascade.close

    def spy_close(self: Cascade) -> None:
        closed.append(self.config.tiers[0].name)
        real_close(self)

    monkeypatch.setattr(Cascade, "close", spy_close)
    configs = [helper_config(f"t{i}") for i in range(helpers.CASCADE_CACHE_SIZE)]
    for cfg in configs:
        helpers.generate_sync("q?", config=cfg)
    helpers.generate_sync("q?", config=configs[0])  # t0 used again: t1 is now the least recently used
    assert closed == []
    helpers.generate_sync("q?", config=helper_config("one-more"))
    assert closed == ["t1"]
    helpers.close_cached_cascades()  # what runs at interpreter exit
    assert sorted(closed) == sorted(["t1", "one-more", *(f"t{i}" for i in range(helpers.CASCADE_CACHE_SIZE) if i != 1)])
