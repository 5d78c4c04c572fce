"""Per-call deadlines, per-call/per-run budgets and partial tiers, against MockProvider."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import litellm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semcascade import (
    BudgetExceededError,
    Cascade,
    CascadeFailedError,
    ConfigError,
    DeadlineExceededError,
    MockProvider,
    PairJudgement,
    RateLimitError,
)
from semcascade._budget import BudgetLedger, Estimate, prompt_token_bound, tier_upper_bound
from semcascade.providers import Completion, CompletionRequest
from tests.helpers import ExactScorer

NO_RETRY = {"max_attempts": 1}


class SlowScorer(ExactScorer):
    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


def config(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "tiers": [
            {
                "name": "cheap",
                "model": "cheap",
                "k": 3,
                "max_tokens": 10,
                "threshold": 0.9,
                "native_n": True,
                "input_cost_per_token": 1e-6,
                "output_cost_per_token": 2e-6,
                "retry": NO_RETRY,
            },
            {
                "name": "strong",
                "model": "strong",
                "k": 1,
                "max_tokens": 10,
                "native_n": True,
                "input_cost_per_token": 1e-4,
                "output_cost_per_token": 2e-4,
                "retry": NO_RETRY,
            },
        ]
    }
    cfg.update(over)
    return cfg


#: the cheap tier disagrees (escalates), the strong tier answers
DISAGREE = {"cheap": ["a", "b", "c"], "strong": ["s"]}


def provider(table: dict[str, list[str]], *, slow: set[str] = frozenset(), delay: float = 3600) -> MockProvider:  # type: ignore[assignment]
    async def handler(req: CompletionRequest) -> Completion:
        if req.model in slow:
            await asyncio.sleep(delay)
        return MockProvider.texts(req.model, table[req.model][: req.n], prompt_tokens=5)

    return MockProvider(handler)


# --------------------------------------------------------------------------- deadlines


async def test_deadline_returns_the_best_answer_so_far_flagged() -> None:
    p = provider(DISAGREE, slow={"strong"})
    r = await Cascade(config(), provider=p, scorer=ExactScorer()).generate("q", deadline_s=0.3)
    assert r.deadline_exceeded and not r.budget_exhausted
    assert r.tier == "cheap" and r.text == "a" and r.agreement is not None and r.agreement < 0.9
    assert r.stop_reason == "the call's deadline passed"
    strong = r.trace[1]
    assert strong.decision == "failed" and "deadline" in strong.errors[0] and "stopped:" in strong.reason
    assert "STOPPED EARLY" in r.summary()


async def test_deadline_without_any_answer_raises_typed_error_with_trace() -> None:
    p = provider(DISAGREE, slow={"cheap"})
    with pytest.raises(DeadlineExceededError, match="no answer before the deadline") as info:
        await Cascade(config(), provider=p, scorer=ExactScorer()).generate("q", deadline_s=0.2)
    assert isinstance(info.value, CascadeFailedError)
    assert [t.tier for t in info.value.trace] == ["cheap"]  # the strong tier was never started
    assert [c.model for c in p.calls] == ["cheap"]


async def test_deadline_from_config_and_per_call_override() -> None:
    p = provider(DISAGREE, slow={"strong"})
    cascade = Cascade(config(deadline_s=0.2), provider=p, scorer=ExactScorer())
    assert (await cascade.generate("q")).deadline_exceeded
    p2 = provider(DISAGREE, slow={"strong"}, delay=0.05)
    r = await Cascade(config(deadline_s=0.01), provider=p2, scorer=ExactScorer()).generate("q", deadline_s=60)
    assert r.tier == "strong" and not r.deadline_exceeded


@pytest.mark.parametrize("bad", [0, -1.0])
async def test_non_positive_deadline_is_rejected(bad: float) -> None:
    cascade = Cascade(config(), provider=provider(DISAGREE), scorer=ExactScorer())
    with pytest.raises(ConfigError, match="deadline_s must be a positive number"):
        await cascade.generate("q", deadline_s=bad)
    with pytest.raises(ConfigError, match="deadline_s"):
        Cascade(config(deadline_s=bad))


async def test_waiting_for_a_slot_counts_against_the_deadline() -> None:
    cfg = config()
    cfg["tiers"] = [dict(cfg["tiers"][1], k=2, native_n=False, max_concurrency=1)]
    p = provider({"strong": ["s"]}, slow={"strong"}, delay=0.3)
    r = await Cascade(cfg, provider=p, scorer=ExactScorer()).generate("q", deadline_s=0.5)
    # the first request answered; the second waited for the slot, started late and hit the deadline
    assert r.text == "s" and len(r.trace[0].samples) == 1
    assert len(r.trace[0].errors) == 1 and "deadline" in r.trace[0].errors[0]


async def test_scoring_past_the_deadline_keeps_the_samples() -> None:
    p = provider({"cheap": ["a", "a", "a"], "strong": ["s"]})
    with pytest.raises(DeadlineExceededError) as info:
        await Cascade(config(), provider=p, scorer=SlowScorer()).generate("q", deadline_s=0.2)
    cheap = info.value.trace[0]
    assert "while scoring its 3 samples" in cheap.reason and [s.text for s in cheap.samples] == ["a", "a", "a"]
    assert cheap.cost > 0  # the paid samples are accounted


# --------------------------------------------------------------------------- budgets


def test_upper_bound_covers_prompt_and_completions() -> None:
    cascade = Cascade(config(), provider=provider(DISAGREE), scorer=ExactScorer())
    messages = [{"role": "user", "content": "héllo"}]
    cheap, _ = cascade.tiers
    prompt = prompt_token_bound(messages)
    assert prompt == 8 + 8 + len("héllo".encode()) + len("user")
    b = tier_upper_bound(cheap, messages)
    assert b.tokens == prompt + 3 * 10  # native n: the prompt once, 3 completions
    assert b.cost == pytest.approx(prompt * 1e-6 + 30 * 2e-6)
    per_sample = dataclasses.replace(cheap, models=[dataclasses.replace(m, native_n=False) for m in cheap.models])
    single = tier_upper_bound(per_sample, messages)
    assert single.tokens == 3 * prompt + 30  # one request per sample


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.text(max_size=50))
def test_prompt_bound_is_never_below_a_real_tokenizer(user: str, system: str) -> None:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    assert prompt_token_bound(messages) >= litellm.token_counter(model="gpt-3.5-turbo", messages=messages)


async def test_call_budget_stops_before_a_tier_that_could_exceed_it() -> None:
    p = provider(DISAGREE)
    cascade = Cascade(config(budget={"max_cost_per_call": 0.001}), provider=p, scorer=ExactScorer())
    r = await cascade.generate("q")
    assert r.budget_exhausted and not r.deadline_exceeded and r.tier == "cheap" and r.text == "a"
    assert "tier 'strong' was not called" in (r.stop_reason or "") and "max_cost_per_call" in (r.stop_reason or "")
    assert "stopped: tier 'strong'" in r.trace[0].reason
    assert [c.model for c in p.calls] == ["cheap"] and r.cost <= 0.001


async def test_token_budget_per_call() -> None:
    p = provider(DISAGREE)
    cfg = config(budget={"max_tokens_per_call": 70})
    cfg["tiers"][1]["max_tokens"] = 100
    cascade = Cascade(cfg, provider=p, scorer=ExactScorer())
    # cheap: bound 8+8+1+4+30 = 51 tokens, spends 8; strong's bound 21+100 > the 62 left
    r = await cascade.generate("q")
    assert r.budget_exhausted and "max_tokens_per_call" in (r.stop_reason or "")
    assert r.prompt_tokens + r.completion_tokens <= 70


async def test_no_affordable_tier_raises_budget_exceeded_without_calling() -> None:
    p = provider(DISAGREE)
    cascade = Cascade(config(budget={"max_tokens_per_call": 10}), provider=p, scorer=ExactScorer())
    with pytest.raises(BudgetExceededError, match="tier 'cheap' was not called") as info:
        await cascade.generate("q")
    assert isinstance(info.value, CascadeFailedError) and info.value.trace == [] and p.calls == []


async def test_run_budget_is_never_exceeded_under_concurrency() -> None:
    p = provider({"cheap": ["a", "a", "a"], "strong": ["s"]}, slow={"cheap"}, delay=0.01)
    cap = 0.0005
    cascade = Cascade(config(budget={"max_cost_per_run": cap}), provider=p, scorer=ExactScorer())
    outcomes = await asyncio.gather(*(cascade.generate("q") for _ in range(40)), return_exceptions=True)
    answered = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert answered and refused and all(isinstance(o, BudgetExceededError) for o in refused)
    spent = cascade.run_budget.spent_cost
    assert spent <= cap and spent == pytest.approx(sum(r.cost for r in answered))
    assert cascade.run_budget.remaining().cost == pytest.approx(cap - spent)  # nothing left reserved


def test_run_budget_is_shared_by_threads() -> None:
    p = provider({"cheap": ["a", "a", "a"], "strong": ["s"]})
    cap = 200  # a call reserves its 51-token bound and spends 8: about 19 calls fit
    cascade = Cascade(config(budget={"max_tokens_per_run": cap}), provider=p, scorer=ExactScorer())
    results: list[Any] = []

    def worker() -> None:
        for _ in range(10):
            try:
                results.append(cascade.generate_sync("q"))
            except BudgetExceededError as exc:
                results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answered = [r for r in results if not isinstance(r, BaseException)]
    used = sum(r.prompt_tokens + r.completion_tokens for r in answered)
    assert cascade.run_budget.spent_tokens == used <= cap
    assert len(answered) < 40  # the cap did bite


def test_ledger_reservation_and_settlement() -> None:
    ledger = BudgetLedger(1.0, 100, scope="run")
    assert ledger.try_reserve(Estimate(0.6, 60)) is None
    why = ledger.try_reserve(Estimate(0.6, 10))
    assert why is not None and "max_cost_per_run (1)" in why
    ledger.settle(Estimate(0.6, 60), Estimate(0.1, 7))
    assert ledger.try_reserve(Estimate(0.6, 60)) is None
    assert ledger.spent_cost == 0.1 and ledger.spent_tokens == 7


def test_bad_budget_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"budget\.max_cost_per_call"):
        Cascade(config(budget={"max_cost_per_call": -1}))
    with pytest.raises(ConfigError, match=r"budget\.max_dollars: unknown field"):
        Cascade(config(budget={"max_dollars": 1}))


# --------------------------------------------------------------------------- partial tiers


async def test_one_sample_of_several_escalates_even_at_threshold_zero() -> None:
    cfg = config()
    cfg["tiers"][0]["threshold"] = 0.0
    p = provider({"cheap": ["a"], "strong": ["s"]})  # cheap asked for 3, got 1
    r = await Cascade(cfg, provider=p, scorer=ExactScorer()).generate("q")
    assert r.tier == "strong" and r.trace[0].decision == "escalate" and "only 1 sample" in r.trace[0].reason


async def test_every_tier_failing_carries_partial_answers() -> None:
    async def handler(req: CompletionRequest) -> Completion:
        if req.model == "strong":
            raise RateLimitError("busy", model=req.model, tier=req.tier)
        return MockProvider.texts(req.model, ["a", "b", "c"])

    with pytest.raises(CascadeFailedError) as info:
        await Cascade(config(), provider=MockProvider(handler), scorer=ExactScorer()).generate("q")
    assert type(info.value) is CascadeFailedError
    assert info.value.partial_answers == ["a"]
    assert [t.decision for t in info.value.trace] == ["escalate", "failed"]
    assert info.value.trace[0].samples and "busy" in info.value.trace[1].errors[0]
