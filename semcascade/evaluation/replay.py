"""Replay cascade policies over recorded tier outputs (no model calls).

Every tier's samples and greedy answer are collected once per example; any
cascade (signal, thresholds), baseline or oracle is then a pure function of
those records. Costs and latencies are the recorded ones, summed along the
path a request would have taken.

The decision at each tier is :func:`semcascade.step.decide`, the function the
live cascade calls: a replayed figure is what the shipped code would decide.
A tier whose calls all failed is recorded with its ``error``; it escalates as
it does live, and an example whose answering tier failed counts as a failure,
never as a wrong answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np

from semcascade import step
from semcascade.config import TierConfig
from semcascade.policy import DeferralPolicy, ThresholdPolicy

__all__ = [
    "CurvePoint",
    "ExampleRecord",
    "Outcome",
    "TierRecord",
    "cascade_outcomes",
    "oracle_outcomes",
    "pareto_front",
    "random_curve",
    "summarize",
    "sweep",
    "tier_alone",
]


@dataclass
class TierRecord:
    """What one tier produced for one example."""

    samples: list[str]
    mean_logprobs: list[float | None]
    cost: float
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    greedy: str | None = None
    greedy_cost: float = 0.0
    greedy_latency_s: float = 0.0
    #: per signal: agreement score in [0, 1] (None for k=1)
    scores: dict[str, float | None] = field(default_factory=dict)
    #: per signal: index of the consensus (medoid) sample
    consensus: dict[str, int] = field(default_factory=dict)
    #: per signal: seconds spent scoring agreement
    scoring_s: dict[str, float] = field(default_factory=dict)
    #: per signal: money spent scoring agreement (an LLM judge's calls; 0 for local embeddings)
    scoring_cost: dict[str, float] = field(default_factory=dict)
    #: quality of each sample and of the greedy answer (filled by the harness)
    sample_quality: list[float] = field(default_factory=list)
    greedy_quality: float | None = None
    #: the models' whole outputs (``samples`` holds the compared answer spans)
    raw_samples: list[str] = field(default_factory=list)
    #: per sample: lowest and first token log-probability, completion tokens
    min_logprobs: list[float | None] = field(default_factory=list)
    first_logprobs: list[float | None] = field(default_factory=list)
    sample_tokens: list[int] = field(default_factory=list)
    #: index of the temperature-0 sample in ``samples`` (``include_greedy``)
    greedy_index: int | None = None
    #: per signal: size of the largest meaning cluster
    largest_cluster: dict[str, int] = field(default_factory=dict)
    #: samples requested (the tier's k); ``None`` in records older than this field: as many as arrived
    k: int | None = None
    #: why no sample arrived (every call failed); ``None`` when the tier answered
    error: str | None = None
    #: why the greedy call failed, when it did
    greedy_error: str | None = None
    #: ``final_answer: consensus``: [tier, sample] of the answer voted over the samples of this tier and
    #: every earlier one, when the cascade stops here (tiers after the first; filled by the harness)
    vote: list[int] | None = None
    #: the greedy call's own prompt and completion tokens (``None`` in older records), for re-pricing
    greedy_prompt_tokens: int | None = None
    greedy_completion_tokens: int | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def requested(self) -> int:
        return self.k if self.k is not None else len(self.samples)


@dataclass
class ExampleRecord:
    id: str
    tiers: list[TierRecord]


@dataclass(frozen=True)
class Outcome:
    """One system's result on one example."""

    quality: float
    cost: float
    latency_s: float
    #: index of the tier whose answer was returned (the last tier tried, when it failed)
    tier: int
    answer_index: int | None = None
    #: the last tier abstained (``final_action: abstain``): its answer is flagged for review
    abstained: bool = False
    #: no tier produced an answer (every call failed): not a wrong answer, a failure
    failed: bool = False
    #: the tier whose sample ``answer_index`` is (another tier's under ``final_answer: consensus``)
    answer_tier: int | None = None


def _answer(t: TierRecord, signal: str) -> tuple[float, int | None]:
    if len(t.samples) == 1 or signal not in t.consensus:
        return t.sample_quality[0], 0
    i = t.consensus[signal]
    return t.sample_quality[i], i


@lru_cache(maxsize=4096)
def _stand_in(k: int, threshold: float) -> TierConfig:
    """The tier settings the policy reads (k and threshold), for a recorded tier."""
    return TierConfig.model_construct(name="replay", model="replay", k=k, threshold=threshold)


_THRESHOLD = ThresholdPolicy()


def replay_decision(
    t: TierRecord,
    signal: str,
    threshold: float,
    *,
    is_last: bool,
    final_action: Literal["answer", "abstain"] = "answer",
    policy: DeferralPolicy | None = None,
) -> str:
    """The live decision (:func:`semcascade.step.decide`) on a recorded tier: accept, escalate, abstain or failed."""
    if t.failed:
        return "failed" if is_last else "escalate"
    d = step.decide(
        policy or _THRESHOLD,
        _stand_in(t.requested, threshold),
        t.scores.get(signal),
        n_samples=len(t.samples),
        is_last=is_last,
        final_action=final_action,
        signal=signal,
    )
    return d.action


def cascade_outcomes(
    records: Sequence[ExampleRecord],
    signal: str,
    thresholds: Sequence[float],
    *,
    final_action: Literal["answer", "abstain"] = "answer",
    policy: DeferralPolicy | None = None,
    final_answer: Literal["last_tier", "consensus"] = "last_tier",
) -> list[Outcome]:
    """A cascade over all tiers: tier i decides on its ``signal`` score against ``thresholds[i]``.

    ``thresholds`` has one entry per non-final tier, or one per tier (the last
    tier's matters only with ``final_action: abstain``). The decision is the
    live one (:func:`replay_decision`): a tier with no score (one sample)
    escalates unless its threshold is 0 and it asked for one sample only.
    ``final_answer="consensus"``: after an escalation the answer is the recorded
    vote over every tier that ran (:attr:`TierRecord.vote`), as live.
    """
    out = []
    for rec in records:
        cost = lat = 0.0
        n = len(rec.tiers)
        for i, t in enumerate(rec.tiers):
            cost += t.cost + t.scoring_cost.get(signal, 0.0)
            lat += t.latency_s + t.scoring_s.get(signal, 0.0)
            th = thresholds[i] if i < len(thresholds) else 0.0
            action = replay_decision(t, signal, th, is_last=i == n - 1, final_action=final_action, policy=policy)
            if action == "failed":
                out.append(Outcome(0.0, cost, lat, i, None, failed=True))
            elif action in ("accept", "abstain"):
                q, idx = _answer(t, signal)
                src = i
                if final_answer == "consensus" and i > 0:
                    if t.vote is None:
                        raise ValueError("final_answer 'consensus' needs the recorded votes; re-run `semcascade eval`")
                    src, idx = t.vote
                    q = rec.tiers[src].sample_quality[idx]
                out.append(Outcome(q, cost, lat, i, idx, abstained=action == "abstain", answer_tier=src))
            else:
                continue
            break
    return out


def tier_alone(records: Sequence[ExampleRecord], tier: int, *, mode: str, signal: str | None = None) -> list[Outcome]:
    """One tier alone: ``mode='greedy'`` (its temperature-0 answer) or ``'consensus'`` (best-of-k by ``signal``)."""
    out = []
    for rec in records:
        t = rec.tiers[tier]
        if mode == "greedy":
            if t.greedy_error is not None:
                out.append(Outcome(0.0, t.greedy_cost, t.greedy_latency_s, tier, failed=True))
                continue
            if t.greedy_quality is None:
                raise ValueError("no greedy answers were collected for this tier")
            out.append(Outcome(t.greedy_quality, t.greedy_cost, t.greedy_latency_s, tier))
        elif t.failed:
            cost = t.cost + t.scoring_cost.get(signal or "", 0.0)
            out.append(Outcome(0.0, cost, t.latency_s, tier, failed=True))
        else:
            assert signal is not None
            q, idx = _answer(t, signal)
            cost = t.cost + t.scoring_cost.get(signal, 0.0)
            out.append(Outcome(q, cost, t.latency_s + t.scoring_s.get(signal, 0.0), tier, idx))
    return out


def oracle_outcomes(records: Sequence[ExampleRecord], signal: str) -> list[Outcome]:
    """Two-tier upper bound: escalate exactly when the next tier's answer is better than the cheap one."""
    out = []
    for rec in records:
        cheap, strong = rec.tiers[0], rec.tiers[-1]
        qc, ic = _answer(cheap, signal)
        qs, js = _answer(strong, signal)
        # the oracle knows the answer's quality: it pays for no agreement scoring
        if qs > qc:
            lat = cheap.latency_s + strong.latency_s
            out.append(Outcome(qs, cheap.cost + strong.cost, lat, len(rec.tiers) - 1, js))
        else:
            out.append(Outcome(qc, cheap.cost, cheap.latency_s, 0, ic))
    return out


@dataclass(frozen=True)
class Summary:
    #: mean quality over the examples that got an answer (failures are not wrong answers)
    quality: float
    cost: float
    latency_mean: float
    latency_p50: float
    latency_p95: float
    deferral: list[float]
    n: int
    #: examples with no answer because every call of the answering tier failed
    failures: int = 0
    #: answers the last tier flagged for review (``final_action: abstain``)
    abstentions: int = 0


def summarize(outcomes: Sequence[Outcome], n_tiers: int) -> Summary:
    answered = [o for o in outcomes if not o.failed]
    q = np.array([o.quality for o in answered], dtype=float)
    c = np.array([o.cost for o in outcomes], dtype=float)
    lat = np.array([o.latency_s for o in outcomes], dtype=float)
    tiers = np.array([o.tier for o in outcomes])
    # deferral rate of tier i: share of requests reaching tier i that it passed on
    deferral = []
    for i in range(n_tiers - 1):
        reached = int((tiers >= i).sum())
        deferral.append(float((tiers > i).sum() / reached) if reached else 0.0)
    return Summary(
        quality=float(q.mean()) if len(q) else float("nan"),
        cost=float(c.sum()),
        latency_mean=float(lat.mean()),
        latency_p50=float(np.percentile(lat, 50)),
        latency_p95=float(np.percentile(lat, 95)),
        deferral=deferral,
        n=len(outcomes),
        failures=len(outcomes) - len(answered),
        abstentions=sum(o.abstained for o in outcomes),
    )


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    quality: float
    cost: float
    latency_mean: float
    deferral: float


def sweep(records: Sequence[ExampleRecord], signal: str, points: int = 41) -> list[CurvePoint]:
    """Cost-quality curve of a signal: the same threshold on every non-final tier, swept over
    the observed score quantiles (plus 0 and just above 1: never / always escalate)."""
    scores = [s for r in records for t in r.tiers[:-1] if (s := t.scores.get(signal)) is not None]
    if not scores:
        return []
    grid = sorted({0.0, 1.0 + 1e-9, *np.quantile(scores, np.linspace(0, 1, points)).tolist()})
    n_tiers = len(records[0].tiers)
    curve = []
    for th in grid:
        sm = summarize(cascade_outcomes(records, signal, [th] * (n_tiers - 1)), n_tiers)
        curve.append(CurvePoint(th, sm.quality, sm.cost, sm.latency_mean, sm.deferral[0] if sm.deferral else 0.0))
    return curve


def random_curve(records: Sequence[ExampleRecord], signal: str, points: int = 11) -> list[CurvePoint]:
    """Expected cost-quality of escalating a random share r of requests (two tiers; exact expectation)."""
    cheap = tier_alone(records, 0, mode="consensus", signal=signal)
    both = [
        Outcome(_answer(r.tiers[-1], signal)[0], r.tiers[0].cost + r.tiers[-1].cost,
                c.latency_s + r.tiers[-1].latency_s, len(r.tiers) - 1)
        for r, c in zip(records, cheap, strict=True)
    ]  # fmt: skip
    qc, qb = np.mean([o.quality for o in cheap]), np.mean([o.quality for o in both])
    cc, cb = sum(o.cost for o in cheap), sum(o.cost for o in both)
    lc, lb = np.mean([o.latency_s for o in cheap]), np.mean([o.latency_s for o in both])
    return [
        CurvePoint(
            float(r), float((1 - r) * qc + r * qb), float((1 - r) * cc + r * cb), float((1 - r) * lc + r * lb), float(r)
        )
        for r in np.linspace(0, 1, points)
    ]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, quality) points not dominated by a cheaper-or-equal, better point."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front
