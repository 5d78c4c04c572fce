"""Speculative escalation: the next tier starts early only when the rule fires, is cancelled when the
current tier accepts, is used (not called again) when it escalates; its spend is reserved and recorded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
from fault_fixtures import cascade_config, fault_server_fixture, fault_server_session, tier  # noqa: F401

from semcascade import Cascade, ConfigError, MockProvider
from semcascade._budget import tier_upper_bound
from semcascade.config import load_config
from semcascade.providers import Completion, CompletionRequest
from semcascade.scoring.base import PairJudgement
from semcascade.serve.app import decision_headers
from semcascade.speculation import disagreement_pairs
from semcascade.testing import FaultServer

PRICES = {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6}


class ExactScorer:
    """Agreement 1 for equal answers, 0 otherwise."""

    name = "exact"
    kind = "similarity"

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        return [PairJudgement(float(a == b), float(a == b), 0.0) for a, b in pairs]


def _cfg(speculate: Any = "disagree", **cascade: Any) -> dict[str, Any]:
    return {
        "scorer": {"name": "lexical"},
        "tiers": [
            {"name": "cheap", "model": "openai/cheap", "k": 3, "native_n": False, "threshold": 0.3,
             "max_tokens": 16, "speculate": speculate, **PRICES},
            {"name": "strong", "model": "openai/strong", "k": 1, "temperature": 0.0, "max_tokens": 16,
             "input_cost_per_token": 1e-4, "output_cost_per_token": 1e-4},
        ],
        **cascade,
    }  # fmt: skip


class Upstream:
    """A mock upstream whose order of answers the test controls (no timing).

    The cheap tier's j-th request answers ``cheap[j]``; its last request waits for ``gate`` (when
    given) first. The strong tier answers 'strong answer', after ``release`` when ``block``.
    """

    def __init__(self, cheap: Sequence[str], *, gate: str | None = None, block: bool = True) -> None:
        self.cheap = list(cheap)
        self.gate = gate
        self.block = block
        self.strong_started = asyncio.Event()
        self.strong_returned = asyncio.Event()
        self.release = asyncio.Event()
        self.strong_calls = 0
        self.strong_cancelled = 0
        self.provider = MockProvider(self.handle)

    async def handle(self, req: CompletionRequest) -> Completion:
        if req.model.endswith("strong"):
            self.strong_calls += 1
            self.strong_started.set()
            try:
                if self.block:
                    await self.release.wait()
            except asyncio.CancelledError:
                self.strong_cancelled += 1
                raise
            self.strong_returned.set()
            return MockProvider.texts(req.model, ["strong answer"])
        j = req.sample_offset
        if j == len(self.cheap) - 1 and self.gate is not None:
            await asyncio.wait_for(getattr(self, self.gate).wait(), timeout=30)
            for _ in range(50):  # let the speculative draw that just came back finish
                await asyncio.sleep(0)
        return MockProvider.texts(req.model, [self.cheap[j]])


def test_config() -> None:
    assert load_config(_cfg("disagree")).tiers[0].speculate.when == "disagree"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="needs after_s"):
        load_config(_cfg({"when": "after"}))
    with pytest.raises(ConfigError, match="last tier"):
        load_config({**_cfg(None), "tiers": [_cfg()["tiers"][1] | {"speculate": {"when": "after", "after_s": 1.0}}]})
    with pytest.raises(ConfigError, match="k >= 2"):
        load_config({**_cfg(), "tiers": [_cfg()["tiers"][0] | {"k": 1}, _cfg()["tiers"][1]]})


def test_disagreement_pairs_judge_each_arrival_against_those_before_it() -> None:
    assert disagreement_pairs(0, 1) == [] and disagreement_pairs(1, 1) == [(0, 1)]
    assert disagreement_pairs(0, 3) == [(0, 1), (0, 2), (1, 2)]
    assert disagreement_pairs(2, 2) == [(0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]


async def test_agreeing_samples_start_nothing() -> None:
    up = Upstream(["paris", "paris", "paris"])
    async with Cascade(_cfg(), provider=up.provider, scorer=ExactScorer()) as cascade:
        result = await cascade.generate("q?")
    assert result.tier == "cheap" and up.strong_calls == 0
    assert result.speculation == [] and result.speculated is None


async def test_disagreement_starts_the_next_tier_and_accept_cancels_it() -> None:
    # the first two samples disagree: strong starts; the third agrees with the first: cheap accepts
    up = Upstream(["paris", "london", "paris"], gate="strong_started")
    async with Cascade(_cfg(), provider=up.provider, scorer=ExactScorer()) as cascade:
        result = await cascade.generate("q?")
        bound = tier_upper_bound(cascade.tiers[1], [{"role": "user", "content": "q?"}])
        ledger = cascade.run_budget
    assert result.tier == "cheap" and up.strong_calls == 1 and up.strong_cancelled == 1
    assert decision_headers(result, "rid")["x-semcascade-speculated"] == "cancelled"
    (spec,) = result.speculation
    assert (spec.source, spec.tier, spec.trigger, spec.outcome) == ("cheap", "strong", "disagree", "cancelled")
    assert result.speculated == "cancelled" and "in flight" in spec.reason
    # nothing came back, so nothing known was billed; the budget was charged the upper bound (it may bill)
    assert spec.cost == 0.0 and bound.cost > 0 and spec.charged_cost == pytest.approx(bound.cost)
    assert ledger.spent_cost == pytest.approx(result.trace[0].cost + bound.cost)
    assert result.cost == pytest.approx(result.trace[0].cost)


async def test_a_speculative_call_that_came_back_is_recorded_as_wasted_and_paid() -> None:
    up = Upstream(["paris", "london", "paris"], gate="strong_returned", block=False)
    async with Cascade(_cfg(), provider=up.provider, scorer=ExactScorer()) as cascade:
        result = await cascade.generate("q?")
        spent = cascade.run_budget.spent_cost
    (spec,) = result.speculation
    assert result.tier == "cheap" and spec.outcome == "wasted" and up.strong_cancelled == 0
    strong_cost = 10 * 1e-4 + 2 * 1e-4  # MockProvider: 10 prompt tokens, 'strong answer' = 2 tokens
    assert spec.cost == pytest.approx(strong_cost) and spec.charged_cost == pytest.approx(strong_cost)
    assert result.cost == pytest.approx(result.trace[0].cost + strong_cost)  # a paid response is not lost
    assert spent == pytest.approx(result.cost)


async def test_escalation_uses_the_speculative_samples_without_a_second_call() -> None:
    up = Upstream(["paris", "london", "rome"], gate="strong_started", block=False)
    async with Cascade(_cfg(), provider=up.provider, scorer=ExactScorer()) as cascade:
        result = await cascade.generate("q?")
        spent = cascade.run_budget.spent_cost
    assert result.tier == "strong" and result.text == "strong answer" and up.strong_calls == 1
    (spec,) = result.speculation
    assert spec.outcome == "used" and result.trace[1].cost > 0 and spec.cost == pytest.approx(result.trace[1].cost)
    assert result.cost == pytest.approx(result.trace[0].cost + result.trace[1].cost) == pytest.approx(spent)


async def test_without_speculate_the_next_tier_waits_for_the_decision() -> None:
    up = Upstream(["paris", "london", "rome"], block=False)
    async with Cascade(_cfg(None), provider=up.provider, scorer=ExactScorer()) as cascade:
        result = await cascade.generate("q?")
    assert result.tier == "strong" and up.strong_calls == 1 and result.speculation == []


async def test_speculation_that_does_not_fit_the_budget_is_refused() -> None:
    up = Upstream(["paris", "london", "paris"])  # no gate: nothing waits for the strong tier
    probe = Cascade(_cfg(), provider=up.provider, scorer=ExactScorer())
    msgs = [{"role": "user", "content": "q?"}]
    cheap, strong = (tier_upper_bound(t, msgs).cost for t in probe.tiers)
    probe.close()
    cap = cheap + strong / 2  # the cheap tier fits, the speculative strong tier on top of it does not
    cfg = _cfg(budget={"max_cost_per_run": cap})
    async with Cascade(cfg, provider=up.provider, scorer=ExactScorer()) as cascade:
        result = await cascade.generate("q?")
        assert cascade.run_budget.spent_cost <= cap
    (spec,) = result.speculation
    assert spec.outcome == "refused" and "max_cost_per_run" in spec.reason
    assert up.strong_calls == 0 and result.tier == "cheap"


async def test_after_s_starts_the_next_tier_whatever_the_samples_say() -> None:
    up = Upstream(["paris", "paris", "paris"], gate="strong_started")
    cfg = _cfg({"when": "after", "after_s": 0.01})
    async with Cascade(cfg, provider=up.provider, scorer=ExactScorer()) as cascade:
        result = await cascade.generate("q?")
    (spec,) = result.speculation
    assert result.tier == "cheap" and spec.trigger == "after" and spec.outcome == "cancelled"
    assert up.strong_cancelled == 1


async def test_the_deadline_ends_the_speculative_call_too() -> None:
    # the cheap tier's third request never answers; the speculative strong call never answers either
    up = Upstream(["paris", "london", "never"], gate="release")
    async with Cascade(_cfg(), provider=up.provider, scorer=ExactScorer()) as cascade:
        result = await cascade.generate("q?", deadline_s=0.5)
        assert cascade.run_budget._reserved_cost == pytest.approx(0.0, abs=1e-12)  # every reservation settled
    assert result.deadline_exceeded and result.tier == "cheap"
    (spec,) = result.speculation
    assert spec.outcome == "cancelled" and up.strong_calls == 1 and up.strong_cancelled == 1


async def test_an_exception_in_the_call_cancels_the_speculation() -> None:
    up = Upstream(["paris", "london", "never"], gate="release")
    async with Cascade(_cfg(), provider=up.provider, scorer=ExactScorer()) as cascade:
        task = asyncio.create_task(cascade.generate("q?"))
        await asyncio.wait_for(up.strong_started.wait(), timeout=30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(50):
            await asyncio.sleep(0)
    assert up.strong_cancelled == 1


async def test_cancel_reaches_the_real_provider_over_http(fault_server: FaultServer) -> None:
    # the cheap tier's answers take a second; after 10 ms the strong tier starts and hangs; cheap accepts
    fault_server.latency = lambda body, model, tokens: 1.0 if "cheap" in model else 0.0
    cheap = tier(fault_server, "cheap", speculate={"when": "after", "after_s": 0.01})
    strong = tier(fault_server, "strong", fault="hang", k=1)
    async with Cascade(cascade_config(cheap, strong)) as cascade:
        result = await cascade.generate("q?")
        assert result.tier == "cheap" and result.speculated == "cancelled"
        until = time.monotonic() + 10  # the server sees the disconnect while the cascade's clients are still open
        while fault_server.stats.cancelled < 1 and time.monotonic() < until:
            await asyncio.sleep(0.02)
        assert fault_server.stats.cancelled == 1 and fault_server.stats.by_fault["hang"] == 1
