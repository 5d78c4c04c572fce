"""Replaying cascades over recorded tier outputs, on hand-built records."""

from __future__ import annotations

import pytest

from semcascade.evaluation.replay import (
    ExampleRecord,
    TierRecord,
    cascade_outcomes,
    oracle_outcomes,
    pareto_front,
    random_curve,
    summarize,
    sweep,
    tier_alone,
)


def tier(score: float | None, quality: float, cost: float, lat: float, greedy_q: float | None = None) -> TierRecord:
    k = 1 if score is None else 3
    t = TierRecord(
        samples=["a"] * k, mean_logprobs=[None] * k, cost=cost, latency_s=lat, prompt_tokens=1, completion_tokens=1
    )
    t.scores["s"] = score
    t.consensus["s"] = 0
    t.scoring_s["s"] = 0.1 if k > 1 else 0.0
    t.sample_quality = [quality] * k
    t.greedy_quality = quality if greedy_q is None else greedy_q
    t.greedy_cost, t.greedy_latency_s = cost / k, lat
    return t


def recs() -> list[ExampleRecord]:
    # (cheap score, cheap right?, strong right?)
    spec = [(0.9, 1.0, 1.0), (0.8, 1.0, 0.0), (0.3, 0.0, 1.0), (0.2, 0.0, 0.0)]
    return [
        ExampleRecord(str(i), [tier(s, qc, 1.0, 1.0), tier(None, qs, 10.0, 2.0)]) for i, (s, qc, qs) in enumerate(spec)
    ]


def test_cascade_threshold_routes_and_sums_costs() -> None:
    out = cascade_outcomes(recs(), "s", [0.5])
    assert [o.tier for o in out] == [0, 0, 1, 1]
    assert [o.quality for o in out] == [1.0, 1.0, 1.0, 0.0]
    assert [o.cost for o in out] == [1.0, 1.0, 11.0, 11.0]
    assert out[2].latency_s == pytest.approx(1.0 + 0.1 + 2.0)  # cheap + scoring + strong


def test_summary_quality_cost_deferral() -> None:
    s = summarize(cascade_outcomes(recs(), "s", [0.5]), 2)
    assert s.quality == 0.75 and s.cost == 24.0 and s.deferral == [0.5] and s.n == 4


def test_never_and_always_escalate_match_tiers_alone() -> None:
    r = recs()
    never = summarize(cascade_outcomes(r, "s", [0.0]), 2)
    cheap = summarize(tier_alone(r, 0, mode="consensus", signal="s"), 2)
    assert never.quality == cheap.quality == 0.5 and never.cost == cheap.cost == 4.0
    always = summarize(cascade_outcomes(r, "s", [1.01]), 2)
    assert always.quality == summarize(tier_alone(r, 1, mode="greedy"), 2).quality == 0.5
    assert always.cost == 44.0


def test_oracle_escalates_only_when_strong_is_better() -> None:
    out = oracle_outcomes(recs(), "s")
    assert [o.tier for o in out] == [0, 0, 1, 0]
    assert summarize(out, 2).quality == 0.75
    assert [o.cost for o in out] == [1.0, 1.0, 11.0, 1.0]


def test_sweep_spans_never_to_always() -> None:
    curve = sweep(recs(), "s")
    assert curve[0].deferral == 0.0 and curve[-1].deferral == 1.0
    assert min(p.quality for p in curve) == 0.5 and max(p.quality for p in curve) == 0.75
    costs = [p.cost for p in curve]
    assert costs == sorted(costs)  # a higher threshold never costs less


def test_random_curve_is_linear_between_endpoints() -> None:
    c = random_curve(recs(), "s", points=3)
    assert [p.deferral for p in c] == [0.0, 0.5, 1.0]
    assert c[0].quality == 0.5 and c[2].quality == 0.5 and c[1].cost == pytest.approx((4.0 + 44.0) / 2)


def test_pareto_front() -> None:
    pts = [(1.0, 0.5), (2.0, 0.4), (2.0, 0.7), (3.0, 0.7), (0.5, 0.1)]
    assert pareto_front(pts) == [4, 0, 2]
