"""Choosing a task's cascade on the calibration split: the bound rule, the candidates, the fallback."""

from __future__ import annotations

import numpy as np
import pytest

from semcascade.calibration.tasks import Candidate, Rule, TaskRun, candidates, choose_task_cascade, evaluate
from semcascade.errors import CalibrationError
from semcascade.evaluation.replay import ExampleRecord, TierRecord


def _tier(score: float | None, quality: float, cost: float) -> TierRecord:
    t = TierRecord(samples=["a"], mean_logprobs=[None], cost=cost, latency_s=cost, prompt_tokens=1, completion_tokens=1)
    t.k = 1
    t.greedy_cost, t.greedy_latency_s, t.greedy_quality = cost, cost, quality
    if score is not None:
        t.scores["s"] = score
        t.consensus["s"] = 0
    t.sample_quality = [quality]
    return t


def _records(n: int, seed: int, *, signal_informative: bool, cheap_better: bool = False) -> list[ExampleRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        strong = float(rng.random() < 0.7)
        cheap = float(rng.random() < (0.8 if cheap_better else 0.5))
        score = (0.75 + 0.2 * rng.random()) if (cheap and signal_informative) else float(rng.random() * 0.7)
        if not signal_informative:
            score = float(rng.random())
        out.append(ExampleRecord(f"e{i}", [_tier(score, cheap, 1.0), _tier(None, strong, 3.0)]))
    return out


def _run(recs: list[ExampleRecord]) -> TaskRun:
    half = len(recs) // 2
    return TaskRun("run", recs[:half], recs[half:])


def test_an_informative_signal_wins_and_holds_on_test() -> None:
    runs = [_run(_records(800, 0, signal_informative=True))]
    choice = choose_task_cascade(runs)
    assert choice.chosen.kind == "cascade" and choice.chosen.signal == "s"
    test = evaluate(choice.chosen, runs)
    strong = evaluate(Candidate("run", "strong"), runs)
    assert test.cost_ratio < 0.9
    assert test.quality >= strong.quality - 0.05


def test_an_uninformative_signal_falls_back_to_the_strong_tier() -> None:
    runs = [_run(_records(400, 1, signal_informative=False))]
    choice = choose_task_cascade(runs)
    assert choice.chosen == Candidate("run", "strong")
    assert choice.rule == Rule().describe()


def test_a_cheap_tier_that_is_better_is_served_alone() -> None:
    runs = [_run(_records(400, 2, signal_informative=False, cheap_better=True))]
    assert choose_task_cascade(runs).chosen == Candidate("run", "cheap")


def test_the_bound_is_what_qualifies() -> None:
    # a point equal to the strong tier's quality on a small calibration set qualifies only with slack
    runs = [_run(_records(60, 3, signal_informative=True))]
    strict = Rule(tolerance=0.0, z=3.0)
    loose = Rule(tolerance=0.5, z=0.0)
    assert choose_task_cascade(runs, strict).chosen == Candidate("run", "strong")
    assert choose_task_cascade(runs, loose).chosen == Candidate("run", "cheap")


def test_candidates_list_the_tiers_alone_first_and_need_runs() -> None:
    runs = [_run(_records(200, 4, signal_informative=True))]
    got = candidates(runs)
    assert [c.kind for c in got[:2]] == ["cheap", "strong"]
    assert all(c.kind == "cascade" and len(c.thresholds) == 1 for c in got[2:])
    with pytest.raises(CalibrationError, match="at least one recorded run"):
        candidates([])
    with pytest.raises(CalibrationError, match="names run"):
        evaluate(Candidate("other", "strong"), runs)
