"""Choose a task's cascade by measurement: the cheapest way to serve it that, on the calibration split,
is not worse than the strong tier alone by more than a tolerance, with confidence.

A task has one or more recorded runs (``semcascade eval`` folders, e.g. the shipped config's and a k=5
agreement config's), each split into calibration and test examples. The ways to serve it are the cheap
tier alone, the strong tier alone, and every run's cascade on every recorded deferral signal at every
threshold that routes the calibration examples differently. One qualifies when the lower confidence
bound of its paired quality difference to the strong tier alone (mean of per-example differences minus
``z`` standard errors) is at least ``-tolerance``; the choice is the cheapest that qualifies. The strong
tier alone always qualifies (its difference is 0), so there is always a choice. Picking the single
point whose calibration quality merely equals the strong tier's overfits small calibration sets (the
winner's curse: on TriviaQA's 107 calibration questions such a point lost 10 points on test); the bound
prices that in. Prices enter only through the records' costs (see :mod:`semcascade.evaluation.prices`),
so the same records can be chosen on at any price table.

    runs = [TaskRun("shipped", cal, test), TaskRun("agreement-k5", cal2, test2)]
    choice = choose_task_cascade(runs)
    print(choice.chosen.label, evaluate(choice.chosen, runs).cost_ratio)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from semcascade.calibration.solver import StageTable, candidate_thresholds
from semcascade.errors import CalibrationError
from semcascade.evaluation.metrics import auroc
from semcascade.evaluation.replay import ExampleRecord, Outcome, _answer, cascade_outcomes, summarize, tier_alone

__all__ = [
    "BASELINE_SIGNALS",
    "Candidate",
    "CandidateResult",
    "TaskChoice",
    "Rule",
    "TaskRun",
    "candidates",
    "choose_task_cascade",
    "evaluate",
]

#: signals that are baselines, never a shipped choice
BASELINE_SIGNALS = frozenset({"random"})

Kind = Literal["cheap", "strong", "cascade"]


@dataclass(frozen=True)
class TaskRun:
    """One recorded run of a task, split into calibration and test examples."""

    label: str
    calibration: Sequence[ExampleRecord]
    test: Sequence[ExampleRecord]

    def records(self, split: Literal["calibration", "test"]) -> Sequence[ExampleRecord]:
        return self.calibration if split == "calibration" else self.test


@dataclass(frozen=True)
class Candidate:
    """A way to serve the task: a tier alone, or a run's cascade on a signal at thresholds."""

    run: str
    kind: Kind
    signal: str | None = None
    thresholds: tuple[float, ...] = ()

    @property
    def label(self) -> str:
        if self.kind == "cheap":
            return "cheap tier alone"
        if self.kind == "strong":
            return "strong tier alone"
        th = ", ".join(f"{t:.3g}" for t in self.thresholds)
        return f"{self.run}: {self.signal} @ {th}"


@dataclass(frozen=True)
class CandidateResult:
    """A candidate's figures on one split, ratios against the strong tier alone on the same examples."""

    candidate: Candidate
    quality: float
    strong_quality: float
    cost_ratio: float
    latency_ratio: float
    latency_p95_ratio: float
    escalation: float
    #: AUROC of the signal's first-tier score for the first tier's answer being right (cascades only)
    auroc: float | None
    n: int


@dataclass(frozen=True)
class TaskChoice:
    """Every candidate's calibration figures and the chosen one."""

    results: tuple[CandidateResult, ...]
    chosen: Candidate
    rule: str


def _outcomes(c: Candidate, records: Sequence[ExampleRecord]) -> list[Outcome]:
    k = len(records[0].tiers)
    if c.kind == "cheap":
        return tier_alone(records, 0, mode="greedy")
    if c.kind == "strong":
        return tier_alone(records, k - 1, mode="greedy")
    assert c.signal is not None
    return cascade_outcomes(records, c.signal, list(c.thresholds))


def _auroc(records: Sequence[ExampleRecord], signal: str) -> float | None:
    scores, right = [], []
    for r in records:
        t = r.tiers[0]
        s = t.scores.get(signal)
        if s is None or t.failed:
            continue
        scores.append(float(s))
        right.append(_answer(t, signal)[0] >= 0.5)
    return auroc(scores, right) if scores else None


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def evaluate(c: Candidate, runs: Sequence[TaskRun], split: Literal["calibration", "test"] = "test") -> CandidateResult:
    """``c``'s figures on ``split`` of its run (tiers alone: of the first run)."""
    run = next((r for r in runs if r.label == c.run), None)
    if run is None:
        raise CalibrationError(f"candidate {c.label!r} names run {c.run!r}, not one of {[r.label for r in runs]}")
    records = run.records(split)
    if not records:
        raise CalibrationError(f"run {run.label!r} has no {split} examples")
    k = len(records[0].tiers)
    sm = summarize(_outcomes(c, records), k)
    strong = summarize(tier_alone(records, k - 1, mode="greedy"), k)
    esc = 0.0 if c.kind == "cheap" else 1.0 if c.kind == "strong" else (sm.deferral[0] if sm.deferral else 0.0)
    return CandidateResult(
        candidate=c,
        quality=sm.quality,
        strong_quality=strong.quality,
        cost_ratio=_ratio(sm.cost, strong.cost),
        latency_ratio=_ratio(sm.latency_mean, strong.latency_mean),
        latency_p95_ratio=_ratio(sm.latency_p95, strong.latency_p95),
        escalation=esc,
        auroc=_auroc(records, c.signal) if c.signal else None,
        n=sm.n,
    )


def _signals(records: Sequence[ExampleRecord]) -> list[str]:
    return sorted(
        {s for r in records for t in r.tiers[:-1] for s, v in t.scores.items() if v is not None} - BASELINE_SIGNALS
    )


@dataclass(frozen=True)
class Rule:
    """Qualify when mean(quality - strong) - z x its standard error >= -tolerance (calibration split)."""

    tolerance: float = 0.02
    z: float = 1.645

    def describe(self) -> str:
        return (
            f"cheapest on the calibration split whose paired quality difference to the strong tier alone has "
            f"a lower bound (mean - {self.z:g} standard errors) of at least -{self.tolerance:g}"
        )


def _lower_bound(diff: np.ndarray, z: float) -> np.ndarray:
    """Row-wise mean - z x standard error of ``diff`` (rows: options, columns: examples)."""
    n = diff.shape[-1]
    sd = diff.std(axis=-1, ddof=1) if n > 1 else np.zeros(diff.shape[:-1])
    return np.asarray(diff.mean(axis=-1) - z * sd / np.sqrt(n))


def _strong_greedy(records: Sequence[ExampleRecord]) -> np.ndarray:
    return np.array([r.tiers[-1].greedy_quality or 0.0 for r in records], dtype=float)


def candidates(runs: Sequence[TaskRun], rule: Rule | None = None) -> list[Candidate]:
    """The tiers alone (first run) and, per two-tier run and signal, the cheapest calibration threshold
    that qualifies under ``rule`` (a signal with no qualifying threshold is no candidate)."""
    rule = rule or Rule()
    if not runs:
        raise CalibrationError("a task needs at least one recorded run")
    first = runs[0].label
    out = [Candidate(first, "cheap"), Candidate(first, "strong")]
    for run in runs:
        cal = run.calibration
        if not cal or len(cal[0].tiers) != 2:
            continue
        strong = _strong_greedy(cal)
        for sig in _signals(cal):
            table = StageTable.from_records(cal, sig)
            th = candidate_thresholds(table.score[0])
            answer = table.accepts(0, th)  # (options, examples)
            quality = np.where(answer, table.quality[0], table.quality[1])
            cost = table.step_cost[0].sum() + (~answer) @ table.step_cost[1]
            ok = _lower_bound(quality - strong, rule.z) >= -rule.tolerance - 1e-12
            if not ok.any():
                continue
            idx = np.flatnonzero(ok)
            best = idx[np.lexsort((-quality[idx].mean(axis=1), cost[idx]))[0]]
            out.append(Candidate(run.label, "cascade", sig, (float(th[best]),)))
    return out


def choose_task_cascade(runs: Sequence[TaskRun], rule: Rule | None = None) -> TaskChoice:
    """The cheapest candidate that qualifies under ``rule`` on the calibration split."""
    rule = rule or Rule()
    cands = candidates(runs, rule)
    results = tuple(evaluate(c, runs, "calibration") for c in cands)
    bounds = [_lower_bound(np.asarray(_diffs(c, runs), dtype=float)[None, :], rule.z)[0] for c in cands]
    ok = [r for r, b in zip(results, bounds, strict=True) if b >= -rule.tolerance - 1e-12]
    best = min(ok, key=lambda r: (r.cost_ratio, -r.quality))
    return TaskChoice(results, best.candidate, rule.describe())


def _diffs(c: Candidate, runs: Sequence[TaskRun]) -> list[float]:
    run = next(r for r in runs if r.label == c.run)
    records = run.calibration
    out = _outcomes(c, records)
    strong = _strong_greedy(records)
    return [o.quality - s for o, s in zip(out, strong, strict=True)]


def pooled(results: Sequence[tuple[CandidateResult, float]]) -> float:
    """Cost ratio of a mixed stream: per-task cost ratios weighted by each task's strong-alone cost."""
    w = np.array([s for _, s in results], dtype=float)
    r = np.array([x.cost_ratio for x, _ in results], dtype=float)
    return float((w * r).sum() / w.sum()) if w.sum() > 0 else math.nan
