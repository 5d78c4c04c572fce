"""Adaptive k: the stopping rule, the one decision path live (mock provider) and in replay (recorded samples)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from semcascade import Cascade, ConfigError, MockProvider
from semcascade import step as step_mod
from semcascade.config import EquivalenceConfig, load_config
from semcascade.evaluation.adaptive import prefix_scores, rule_draws, simulate
from semcascade.evaluation.replay import ExampleRecord, TierRecord, cascade_outcomes
from semcascade.providers import Completion, CompletionRequest
from semcascade.scoring.base import PairJudgement
from semcascade.stopping import AgreeEarly, create_stopping_rule


def test_agree_early_stops_on_agreement_and_on_clear_disagreement() -> None:
    rule = AgreeEarly(initial=2, accept_at=0.9, escalate_below=0.3, step=1)
    assert rule.initial(5) == 2 and rule.initial(1) == 1
    assert rule.more(5, 2, 0.95) == 0  # they agree: decide (accept)
    assert rule.more(5, 2, 0.1) == 0  # they clearly disagree: decide (escalate)
    assert rule.more(5, 2, 0.6) == 1  # in between: one more
    assert rule.more(5, 2, None) == 1  # no score yet
    assert rule.more(5, 5, 0.6) == 0  # k reached
    assert AgreeEarly(step=3).more(5, 3, 0.6) == 2  # never past k


def test_draw_more_caps_any_rule_at_k() -> None:
    class Greedy:
        def initial(self, k: int) -> int:
            return 99

        def more(self, k: int, drawn: int, score: float | None) -> int:
            return 99

    assert step_mod.first_draw(Greedy(), 5) == 5
    assert step_mod.draw_more(Greedy(), 5, 3, 0.5) == 2
    assert step_mod.draw_more(Greedy(), 5, 5, 0.5) == 0


@pytest.mark.parametrize(
    ("options", "match"),
    [({"initial": 0}, "initial"), ({"step": 0}, "step"), ({"accept_at": 0.2, "escalate_below": 0.5}, "escalate_below"),
     ({"vibes": 1}, "bad options")],
)  # fmt: skip
def test_bad_rule_options_are_config_errors(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_stopping_rule("agree_early", **options)


def _cfg(answers: str = "agree_early", k: int = 5, **opts: Any) -> dict[str, Any]:
    return {
        "scorer": {"name": "lexical"},
        "equivalence": {"rule": "bidirectional", "threshold": 0.5},
        "tiers": [
            {"name": "cheap", "model": "openai/cheap", "k": k, "threshold": 0.8,
             "adaptive_k": {"name": answers, "options": {"accept_at": 0.9, "escalate_below": 0.3, **opts}}},
            {"name": "strong", "model": "openai/strong", "k": 1, "temperature": 0.0},
        ],
    }  # fmt: skip


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match="adaptive_k needs k >= 2"):
        load_config(_cfg(k=1))
    assert load_config({**_cfg(), "tiers": [{**_cfg()["tiers"][0], "adaptive_k": "agree_early"}, _cfg()["tiers"][1]]})
    with pytest.raises(ConfigError, match="unknown stopping rule 'vibes'"):
        Cascade(_cfg("vibes"), provider=MockProvider())


def _provider(cheap: Sequence[str]) -> MockProvider:
    """The cheap tier answers ``cheap[i]`` for its i-th sample, the strong tier 'strong answer'."""
    drawn: list[str] = []

    def handler(req: CompletionRequest) -> Completion:
        if req.model.endswith("strong"):
            return MockProvider.texts(req.model, ["strong answer"] * req.n)
        out = [cheap[(len(drawn) + i) % len(cheap)] for i in range(req.n)]
        drawn.extend(out)
        return MockProvider.texts(req.model, out)

    return MockProvider(handler)


async def _run(cheap: Sequence[str]) -> tuple[Any, MockProvider]:
    provider = _provider(cheap)
    async with Cascade(_cfg(), provider=provider) as cascade:
        return await cascade.generate("q?"), provider


async def test_live_two_agreeing_samples_accept_without_drawing_more() -> None:
    result, provider = await _run(["paris", "paris"])
    assert result.tier == "cheap" and len(result.trace[0].samples) == 2
    assert "adaptive k: decided on 2 of at most 5" in result.trace[0].reason
    assert sum(c.n for c in provider.calls) == 2


async def test_live_two_clearly_disagreeing_samples_escalate_at_once() -> None:
    result, _ = await _run(["paris", "london"])
    assert result.tier == "strong" and len(result.trace[0].samples) == 2 and result.trace[0].decision == "escalate"


async def test_live_in_between_draws_more_up_to_k() -> None:
    # token overlap of the two answers is partial (0.67): keep drawing one at a time until k
    result, provider = await _run(["paris france", "paris"])
    cheap_calls = [c for c in provider.calls if c.model.endswith("cheap")]
    assert len(result.trace[0].samples) == 5 and [c.n for c in cheap_calls] == [2, 1, 1, 1]
    assert result.trace[0].prompt_tokens == 10 * len(cheap_calls)  # each round pays its prompt


class _Exact:
    """Agreement 1 for equal answers, 0 otherwise (a stand-in scorer for replay tests)."""

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        return [PairJudgement(float(a == b), float(a == b), 0.0) for a, b in pairs]


def _tier(samples: list[str], quality: list[float], k: int | None = None) -> TierRecord:
    return TierRecord(
        samples=samples, mean_logprobs=[None] * len(samples), cost=1.0 * len(samples), latency_s=1.0,
        prompt_tokens=0, completion_tokens=len(samples), sample_quality=quality, sample_tokens=[1] * len(samples),
        k=k or len(samples),
    )  # fmt: skip


async def test_replay_takes_recorded_samples_in_order_and_decides_through_the_step() -> None:
    eq = EquivalenceConfig(rule="bidirectional", threshold=0.5)
    recs = [
        ExampleRecord("agree", [_tier(["x", "x", "y", "y", "y"], [1, 1, 0, 0, 0]), _tier(["s"], [1.0], 1)]),
        ExampleRecord("split", [_tier(["x", "y", "y", "y", "y"], [0, 1, 1, 1, 1]), _tier(["s"], [0.0], 1)]),
    ]
    pre = [await prefix_scores(_Exact(), "", r.tiers[0].samples, eq, "mean_pairwise") for r in recs]  # type: ignore[arg-type]
    assert pre[0].scores[1] == 1.0 and pre[1].scores[1] == 0.0
    rule = create_stopping_rule("agree_early", accept_at=0.9, escalate_below=0.3)
    assert rule_draws(rule, 5, pre[0].scores) == (2, 1) and rule_draws(rule, 5, pre[1].scores) == (2, 1)
    cut, drawn, rounds = simulate(recs, "embedding", pre, rule=rule)
    assert rounds == [1, 1]
    assert drawn == [2, 2] and [len(r.tiers[0].samples) for r in cut] == [2, 2]
    outs = cascade_outcomes(cut, "embedding", [0.8])
    assert [o.tier for o in outs] == [0, 1]  # the first accepts on 2 agreeing samples, the second escalates
    assert outs[0].quality == 1.0
    # all five recorded samples: the first example's agreement is low, it would have escalated
    full = cascade_outcomes(simulate(recs, "embedding", pre, fixed_k=5)[0], "embedding", [0.8])
    assert [o.tier for o in full] == [1, 1]
