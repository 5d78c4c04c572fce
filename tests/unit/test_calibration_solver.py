"""Threshold solvers against hand-computed answers and brute force over a grid (replayed with replay.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from semcascade.calibration import StageTable, calibrate_thresholds, candidate_thresholds, shadow_price_thresholds
from semcascade.calibration.solver import _best_response
from semcascade.errors import CalibrationError
from semcascade.evaluation.replay import ExampleRecord, TierRecord, cascade_outcomes, summarize


def tier(score: float | None, quality: float, cost: float, scoring_cost: float = 0.0) -> TierRecord:
    k = 1 if score is None else 3
    t = TierRecord(
        samples=["a"] * k, mean_logprobs=[None] * k, cost=cost, latency_s=1.0, prompt_tokens=1, completion_tokens=1
    )
    t.scores["s"] = score
    t.consensus["s"] = 0
    t.scoring_cost["s"] = scoring_cost
    t.sample_quality = [quality] * k
    return t


def hand_records() -> list[ExampleRecord]:
    # (cheap score, cheap right?, strong right?); cheap costs 1, strong 10 -> strong alone costs 40
    spec = [(0.9, 1.0, 1.0), (0.8, 1.0, 0.0), (0.3, 0.0, 1.0), (0.2, 0.0, 0.0)]
    return [ExampleRecord(str(i), [tier(s, qc, 1.0), tier(None, qs, 10.0)]) for i, (s, qc, qs) in enumerate(spec)]


def random_records(seed: int, n: int, k: int) -> list[ExampleRecord]:
    """Scores on a 0.1 lattice offset by 0.05, so a 0.01 grid holds a threshold in every gap."""
    rng = np.random.default_rng(seed)
    recs = []
    for e in range(n):
        tiers = []
        for i in range(k):
            score = None if i == k - 1 else float(rng.integers(0, 10)) / 10 + 0.05
            right = float(rng.random() < 0.3 + 0.2 * i + (0.3 * (score or 0) if i < k - 1 else 0))
            tiers.append(tier(score, right, float(rng.uniform(0.5, 1.5)) * 4**i, scoring_cost=0.1 * (i < k - 1)))
        recs.append(ExampleRecord(f"e{e}", tiers))
    return recs


def replayed(recs: list[ExampleRecord], th: list[float]) -> tuple[float, float]:
    s = summarize(cascade_outcomes(recs, "s", th), len(recs[0].tiers))
    return s.quality, s.cost


def strong_cost(recs: list[ExampleRecord]) -> float:
    return sum(r.tiers[-1].cost + r.tiers[-1].scoring_cost.get("s", 0.0) for r in recs)


def test_candidate_thresholds_split_every_gap() -> None:
    got = candidate_thresholds(np.array([0.2, 0.8, np.nan, 0.2, 0.4]))
    assert got.tolist() == pytest.approx([0.0, 0.3, 0.6, 0.9])
    assert candidate_thresholds(np.array([0.5, 1.0])).tolist() == pytest.approx([0.0, 0.75])  # 1.0 cannot be exceeded


def test_two_tier_known_answers() -> None:
    recs = hand_records()
    # under half the strong tier's cost the best is answering everything cheaply
    c = calibrate_thresholds(recs, "s", budget=0.5)
    assert c.thresholds == (0.0,) and c.quality == 0.5 and c.cost == 4.0 and c.cost_ratio == pytest.approx(0.1)
    # at 0.6x it escalates the two low-agreement examples: the only routing that reaches 0.75
    c = calibrate_thresholds(recs, "s", budget=0.6)
    assert c.thresholds == (0.55,) and c.quality == 0.75 and c.cost == 24.0 and c.deferral == (0.5,)
    assert c.method == "exact" and c.final_quality == 0.5 and c.final_cost == 40.0
    c = calibrate_thresholds(recs, "s", quality=0.75)
    assert c.thresholds == (0.55,) and c.cost == 24.0
    # 100% of the strong tier's quality (0.5) is reached for free by the cheap tier
    c = calibrate_thresholds(recs, "s", quality=1.0, quality_relative=True)
    assert c.thresholds == (0.0,) and c.cost == 4.0


def test_infeasible_targets_name_the_closest_value() -> None:
    recs = hand_records()
    with pytest.raises(CalibrationError, match=r"cheapest cascade costs 0\.100 x; raise the budget to at least 0\.1"):
        calibrate_thresholds(recs, "s", budget=0.05)
    with pytest.raises(CalibrationError, match=r"best cascade reaches 0\.7500 .*lower the quality target"):
        calibrate_thresholds(recs, "s", quality=0.8)
    with pytest.raises(CalibrationError, match=r"no scores for signal 'x'.*choose one of s"):
        calibrate_thresholds(recs, "x", budget=1.0)
    with pytest.raises(CalibrationError, match="exactly one target"):
        calibrate_thresholds(recs, "s", budget=1.0, quality=0.5)
    with pytest.raises(CalibrationError, match="use shadow-price"):
        calibrate_thresholds(random_records(0, 5, 3), "s", budget=1.0, method="exact")


def test_stage_table_matches_replay() -> None:
    recs = random_records(3, 30, 3)
    table = StageTable.from_records(recs, "s")
    for th in ([0.0, 0.0], [0.5, 0.3], [0.95, 0.5], [1.0, 1.0], [0.32, 0.77]):
        q, c = table.evaluate(th)
        rq, rc = replayed(recs, th)
        assert q == pytest.approx(rq) and c == pytest.approx(rc)


@pytest.mark.parametrize("seed", range(6))
def test_two_tier_exact_equals_brute_force(seed: int) -> None:
    recs = random_records(seed, 14, 2)
    grid = [[float(t)] for t in np.round(np.linspace(0, 1, 101), 2)]
    points = [(replayed(recs, th), th) for th in grid]
    base = strong_cost(recs)
    for budget in (0.3, 0.45, 0.6, 0.8, 1.0, 1.3):
        feasible = [(q, c) for (q, c), _ in points if c / base <= budget + 1e-12]
        if not feasible:
            with pytest.raises(CalibrationError):
                calibrate_thresholds(recs, "s", budget=budget)
            continue
        q_best = max(q for q, _ in feasible)
        c_best = min(c for q, c in feasible if q == q_best)
        got = calibrate_thresholds(recs, "s", budget=budget)
        assert (got.quality, got.cost) == pytest.approx((q_best, c_best))
    for target in (0.3, 0.5, 0.6, 0.7):
        feasible = [(q, c) for (q, c), _ in points if q >= target - 1e-12]
        if not feasible:
            continue
        c_best = min(c for _, c in feasible)
        got = calibrate_thresholds(recs, "s", quality=target)
        assert got.cost == pytest.approx(c_best) and got.quality >= target - 1e-12


def _upper_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Upper-left concave hull of (cost, quality) points: the frontier a shadow price can reach."""
    pts = sorted(set(points), key=lambda p: (p[0], -p[1]))
    hull: list[tuple[float, float]] = []
    for p in pts:
        if hull and p[1] <= hull[-1][1]:
            continue
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (y2 - y1) * (p[0] - x1) <= (p[1] - y1) * (x2 - x1):
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


@pytest.mark.parametrize("seed", range(5))
def test_three_tier_shadow_price_reaches_every_hull_vertex(seed: int) -> None:
    recs = random_records(seed, 12, 3)
    grid = np.round(np.linspace(0, 1, 21), 2).tolist()  # 0.05 steps: one threshold in every lattice gap
    brute = [replayed(recs, [a, b]) for a, b in itertools.product(grid, grid)]
    base = strong_cost(recs)
    for cost, quality in _upper_hull([(c, q) for q, c in brute]):
        got = calibrate_thresholds(recs, "s", budget=cost / base)
        assert got.method == "shadow-price"
        assert got.quality == pytest.approx(quality), (cost, got)
        assert got.cost <= cost + 1e-9
        # and never better than brute force under the same budget (it only chooses among real routings)
        best = max(q for q, c in brute if c <= cost + 1e-9)
        assert got.quality <= best + 1e-12


def test_shadow_price_fixed_point_equalises_marginal_rates() -> None:
    """At the solver's thresholds no single boundary can gain quality - λ·cost by moving: each boundary
    trades quality for cost at the same rate λ."""
    recs = random_records(11, 40, 4)
    table = StageTable.from_records(recs, "s")
    base = table.final_alone_cost()
    for lam in (0.05, 0.2, 1.0):
        th = shadow_price_thresholds(table, lam, base)
        q, c = table.evaluate(th)
        obj = q - lam * c / base
        for i in range(table.k - 1):
            for t in candidate_thresholds(table.score[i]):
                moved = list(th)
                moved[i] = float(t)
                q2, c2 = table.evaluate(moved)
                assert q2 - lam * c2 / base <= obj + 1e-12
            assert _best_response(table, th, i, lam, base) == th[i]


def test_a_dearer_budget_never_lowers_quality() -> None:
    recs = random_records(5, 40, 3)
    qualities = [calibrate_thresholds(recs, "s", budget=b).quality for b in (0.5, 0.7, 0.9, 1.1, 1.4, 2.0)]
    assert qualities == sorted(qualities)


def test_unscored_tier_always_escalates() -> None:
    recs = [ExampleRecord(str(i), [tier(0.5, 1.0, 1.0), tier(None, 0.0, 2.0), tier(None, 1.0, 4.0)]) for i in range(3)]
    got = calibrate_thresholds(recs, "s", budget=2.0)
    assert got.unscored == (1,) and got.quality == 1.0 and got.cost == 3.0
