"""The cascade's control flow, against a MockProvider and a deterministic scorer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from semcascade import (
    Cascade,
    CascadeFailedError,
    EmptyPromptError,
    MockProvider,
    PairJudgement,
    PromptTooLongError,
    RateLimitError,
    UnknownModelError,
)
from semcascade.providers import Completion, CompletionRequest
from tests.helpers import ExactScorer, two_tier_config


def config(**over: Any) -> dict[str, Any]:
    equivalence = {"rule": "bidirectional", "threshold": 0.5}
    return two_tier_config(
        cheap={"parameters": 1e8}, strong={"parameters": 1e9}, **{"equivalence": equivalence, **over}
    )


def answers(table: dict[str, list[str]]) -> MockProvider:
    def handler(req: CompletionRequest) -> Completion:
        texts = table[req.model]
        return MockProvider.texts(req.model, texts[: req.n], prompt_tokens=20)

    return MockProvider(handler)


def make(table: dict[str, list[str]], **over: Any) -> tuple[Cascade, MockProvider, ExactScorer]:
    provider, scorer = answers(table), ExactScorer()
    return Cascade(config(**over), provider=provider, scorer=scorer), provider, scorer


async def test_cheap_tier_answers_when_samples_agree() -> None:
    cascade, provider, _ = make({"openai/cheap": ["Paris", "paris", "Paris", "Lyon"], "openai/strong": ["Paris"]})
    r = await cascade.generate("Capital of France?")
    assert r.tier == "cheap" and r.tier_index == 0 and not r.escalated
    assert r.text.lower() == "paris"
    assert r.agreement == pytest.approx(3 / 6)  # 3 agreeing pairs out of 6
    t = r.trace[0]
    assert t.decision == "accept" and len(t.samples) == 4
    assert t.clusters[0] == [0, 1, 2] and t.representative in (0, 1, 2)
    assert len(t.agreement_matrix) == 4
    assert [c.model for c in provider.calls] == ["openai/cheap"]
    assert provider.calls[0].n == 4  # native n for openai/
    # cost: 20 prompt tokens once (native n) + 4 one-word answers
    assert t.prompt_tokens == 20 and t.completion_tokens == 4
    assert r.cost == pytest.approx(20 * 1e-6 + 4 * 2e-6)
    assert r.flops == pytest.approx(2 * 1e8 * 24)


async def test_disagreement_escalates_and_trace_says_why() -> None:
    cascade, _provider, _ = make({"openai/cheap": ["a", "b", "c", "d"], "openai/strong": ["Paris"]})
    r = await cascade.generate([{"role": "user", "content": "Capital of France?"}])
    assert r.tier == "strong" and r.escalated and r.text == "Paris"
    assert r.tiers_tried == ["cheap", "strong"]
    assert r.trace[0].decision == "escalate"
    assert "agreement 0.000 < threshold 0.5" in r.trace[0].reason
    assert r.trace[1].decision == "accept"
    assert r.cost == pytest.approx(r.trace[0].cost + r.trace[1].cost)
    assert r.prompt_tokens == 40


async def test_abstain_at_last_tier() -> None:
    cfg = config(final_action="abstain")
    cfg["tiers"][1]["k"] = 3
    provider = answers({"openai/cheap": ["a", "b", "c", "d"], "openai/strong": ["x", "y", "z"]})
    r = await Cascade(cfg, provider=provider, scorer=ExactScorer()).generate("q")
    assert r.abstained and r.trace[-1].decision == "abstain"
    assert r.text == "x"  # the best guess is kept, not thrown away
    assert r.to_openai().choices[0].finish_reason == "content_filter"


async def test_non_native_n_makes_k_calls_with_distinct_seeds() -> None:
    cfg = config()
    cfg["tiers"][0].update(native_n=False, seed=7)
    provider = answers({"openai/cheap": ["same"], "openai/strong": ["s"]})
    r = await Cascade(cfg, provider=provider, scorer=ExactScorer()).generate("q")
    cheap_calls = [c for c in provider.calls if c.model == "openai/cheap"]
    assert len(cheap_calls) == 4 and all(c.n == 1 for c in cheap_calls)
    assert sorted(c.seed for c in cheap_calls) == [7, 8, 9, 10]  # type: ignore[type-var]
    assert r.tier == "cheap" and r.agreement == 1.0
    assert r.trace[0].prompt_tokens == 80  # prompt billed once per call


async def test_heterogeneous_ensemble_splits_k() -> None:
    cfg = config()
    cfg["tiers"][0] = {"name": "mix", "models": ["openai/a", "openai/b", "openai/c"], "k": 5, "threshold": 0.5}
    provider = answers({"openai/a": ["x", "x"], "openai/b": ["x", "x"], "openai/c": ["y"], "openai/strong": ["s"]})
    r = await Cascade(cfg, provider=provider, scorer=ExactScorer()).generate("q")
    ns = {c.model: c.n for c in provider.calls}
    assert ns == {"openai/a": 2, "openai/b": 2, "openai/c": 1}
    assert [s.model for s in r.trace[0].samples] == ["openai/a", "openai/a", "openai/b", "openai/b", "openai/c"]
    assert r.tier == "mix" and r.text == "x"


async def test_transient_failure_of_cheap_tier_escalates_with_reason() -> None:
    def handler(req: CompletionRequest) -> Completion:
        if req.model == "openai/cheap":
            raise RateLimitError("rate-limited", model=req.model, tier=req.tier)
        return MockProvider.texts(req.model, ["fine"])

    r = await Cascade(config(), provider=MockProvider(handler), scorer=ExactScorer()).generate("q")
    assert r.tier == "strong" and r.text == "fine"
    assert r.trace[0].decision == "escalate" and "no samples arrived" in r.trace[0].reason
    assert r.trace[0].errors and "rate-limited" in r.trace[0].errors[0]


async def test_partial_samples_are_scored_and_flagged() -> None:
    def handler(req: CompletionRequest) -> Completion:
        texts = {"openai/cheap": ["x", "x"], "openai/strong": ["s"]}[req.model]
        return MockProvider.texts(req.model, texts)  # fewer than the 4 asked for

    r = await Cascade(config(), provider=MockProvider(handler), scorer=ExactScorer()).generate("q")
    assert r.tier == "cheap" and "(only 2/4 samples arrived)" in r.trace[0].reason


async def test_every_tier_failing_raises_with_trace() -> None:
    def handler(req: CompletionRequest) -> Completion:
        raise RateLimitError("busy", model=req.model, tier=req.tier)

    with pytest.raises(CascadeFailedError, match="no tier produced an answer") as info:
        await Cascade(config(), provider=MockProvider(handler), scorer=ExactScorer()).generate("q")
    assert [t.tier for t in info.value.trace] == ["cheap", "strong"]


async def test_config_errors_from_provider_propagate() -> None:
    def handler(req: CompletionRequest) -> Completion:
        raise UnknownModelError("no such model", model=req.model, tier=req.tier)

    with pytest.raises(UnknownModelError, match="tier 'cheap'"):
        await Cascade(config(), provider=MockProvider(handler), scorer=ExactScorer()).generate("q")


@pytest.mark.parametrize(
    "prompt", ["", "   \n", [], [{"role": "user", "content": "  "}], [{"role": "system", "content": "hi"}]]
)
async def test_empty_prompt_rejected_before_any_call(prompt: Any) -> None:
    cascade, provider, _ = make({"openai/cheap": ["a"], "openai/strong": ["b"]})
    with pytest.raises(EmptyPromptError, match="empty"):
        await cascade.generate(prompt)
    assert provider.calls == []


async def test_prompt_longer_than_context_window_rejected_before_any_call() -> None:
    cfg = config()
    cfg["tiers"][1]["context_window"] = 100
    cascade, _provider = Cascade(cfg, provider=answers({}), scorer=ExactScorer()), None
    with pytest.raises(PromptTooLongError, match="tier 'strong' has a context window of 100"):
        await cascade.generate("word " * 200)
    assert cascade.provider.calls == []  # type: ignore[attr-defined]


async def test_system_prompt_is_prepended() -> None:
    cascade, provider, _ = make({"openai/cheap": ["a"] * 4, "openai/strong": ["b"]}, system_prompt="Be brief.")
    await cascade.generate("q")
    assert provider.calls[0].messages[0] == {"role": "system", "content": "Be brief."}


def test_sync_twin_and_openai_shape() -> None:
    cascade, _, _ = make({"openai/cheap": ["Paris"] * 4, "openai/strong": ["b"]})
    r = cascade.generate_sync("q")
    r2 = cascade.generate_sync("q")  # a second event loop works too
    assert r.text == r2.text == "Paris"
    oa = r.to_openai()
    assert oa.choices[0].message.content == "Paris"
    assert oa.usage is not None and oa.usage.prompt_tokens == r.prompt_tokens
    assert oa.object == "chat.completion"


async def test_concurrency_limit_is_respected() -> None:
    in_flight = peak = 0

    async def handler(req: CompletionRequest) -> Completion:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return MockProvider.texts(req.model, ["x"])

    cfg = config()
    cfg["tiers"][0].update(native_n=False, k=8, max_concurrency=3)
    cascade = Cascade(cfg, provider=MockProvider(handler), scorer=ExactScorer())
    await asyncio.gather(*(cascade.generate("q") for _ in range(3)))
    assert peak == 3
    assert cascade.tiers[0].limiter.peak_in_flight == 3


def test_trace_json_roundtrip_has_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMCASCADE_PLANTED_KEY", "sk-planted-0123456789abcdef")
    cfg = config()
    for t in cfg["tiers"]:
        t["api_key_env"] = "SEMCASCADE_PLANTED_KEY"
    provider = answers({"openai/cheap": ["a", "b", "c", "d"], "openai/strong": ["b"]})
    r = Cascade(cfg, provider=provider, scorer=ExactScorer()).generate_sync("q")
    assert provider.calls[0].api_key == "sk-planted-0123456789abcdef"
    assert "sk-planted" not in r.model_dump_json() and "sk-planted" not in repr(provider.calls[0])


def test_consensus_mode_votes_across_every_tier_that_ran() -> None:
    from semcascade.aggregation import weighted_vote

    # the cheap tier splits 2-2 (escalates); the strong tier's answer sides with one half
    def answer(req: CompletionRequest) -> Completion:
        if req.model.endswith("cheap"):
            return MockProvider.texts(req.model, ["Paris", "Paris", "Lyon", "Nice"][: req.n], prompt_tokens=5)
        return MockProvider.texts(req.model, ["Lyon"], prompt_tokens=5)

    base = config()
    plain = Cascade(base, provider=MockProvider(answer), scorer=ExactScorer()).generate_sync("q")
    assert plain.tier == "strong" and plain.text == "Lyon" and plain.voted_from is None
    voting = Cascade({**base, "final_answer": "consensus"}, provider=MockProvider(answer), scorer=ExactScorer())
    res = voting.generate_sync("q")
    # Paris: 2 cheap votes; Lyon: 1 cheap + 1 strong vote -> tie, the stronger tier wins the tie
    assert res.text == "Lyon" and res.voted_from == "strong" and res.vote_support == pytest.approx(2 / 5)
    assert res.cost == pytest.approx(plain.cost)  # voting re-scores, it calls no model
    # down-weighting the strong tier lets the cheap majority win
    weighted = {**base, "final_answer": "consensus"}
    weighted["tiers"] = [base["tiers"][0], {**base["tiers"][1], "vote_weight": 0.5}]
    res = Cascade(weighted, provider=MockProvider(answer), scorer=ExactScorer()).generate_sync("q")
    assert res.text == "Paris" and res.voted_from == "cheap"

    same = PairJudgement(1.0, 1.0)
    diff = PairJudgement(0.0, 0.0)
    from semcascade.config import EquivalenceConfig

    assert weighted_vote(3, [diff, diff, same], EquivalenceConfig(), [1.0, 1.0, 1.0]) == (2, pytest.approx(2 / 3))
    with pytest.raises(ValueError):
        weighted_vote(2, [same], EquivalenceConfig(), [1.0])
