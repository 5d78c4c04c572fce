"""Adaptive k, replayed: a recorded tier of k samples drawn as the stopping rule would have, in order.

A recorded tier holds k samples in the order they were drawn. Adaptive k is
simulated by taking them in that order: the first ``step.first_draw`` samples,
then ``step.draw_more`` at a time on the decision score of the samples so far
(the rule the live cascade asks, :mod:`semcascade.adaptive`), and the tier
record is cut to the samples the rule drew. The cut records replay through
:func:`semcascade.evaluation.replay.cascade_outcomes` like any others, so the
decision is the live one.

The score of each prefix comes from the pairwise judgements of the recorded
samples (:func:`prefix_scores`, the tier step's consensus on the first n).
Cost of a prefix: the tier's recorded price per token times the prompt paid per
request plus the completion tokens of the samples drawn; every round after the
first is one more request (it pays its prompt again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from semcascade import step
from semcascade.aggregation import Aggregation, pair_indices
from semcascade.config import EquivalenceConfig
from semcascade.evaluation.replay import ExampleRecord, TierRecord
from semcascade.scoring.base import AgreementScorer, PairJudgement
from semcascade.stopping import StoppingRule

__all__ = ["Prefixes", "cut_tier", "prefix_scores", "prefixes_from", "rule_draws", "simulate"]


@dataclass(frozen=True)
class Prefixes:
    """Per prefix length n = 1..k of a recorded tier: the consensus score and representative sample."""

    scores: list[float | None]
    representatives: list[int]


async def prefix_scores(
    scorer: AgreementScorer,
    question: str,
    samples: Sequence[str],
    equivalence: EquivalenceConfig,
    aggregation: Aggregation,
    *,
    greedy_index: int | None = None,
) -> Prefixes:
    """The tier step's consensus of every prefix of ``samples`` (one judgement of all pairs)."""
    js = await step.judge_samples(scorer, question, samples)
    return prefixes_from(len(samples), js, equivalence, aggregation, greedy_index=greedy_index)


def prefixes_from(
    k: int,
    js: Sequence[PairJudgement],
    equivalence: EquivalenceConfig,
    aggregation: Aggregation,
    *,
    greedy_index: int | None = None,
) -> Prefixes:
    """:func:`prefix_scores` from the judgements of all pairs of ``k`` samples (:func:`pair_indices` order)."""
    pairs = pair_indices(k)
    scores: list[float | None] = []
    reps: list[int] = []
    for n in range(1, k + 1):
        sub = [j for j, (_, b) in zip(js, pairs, strict=True) if b < n]  # pair_indices(n) order
        gi = greedy_index if greedy_index is not None and greedy_index < n else None
        cons = step.tier_consensus(n, sub, equivalence, aggregation, greedy_index=gi)
        scores.append(cons.score)
        reps.append(cons.representative)
    return Prefixes(scores, reps)


def rule_draws(rule: StoppingRule, k: int, scores: Sequence[float | None]) -> tuple[int, int]:
    """(samples drawn, rounds) when the rule sees ``scores[n - 1]`` after n samples."""
    n = step.first_draw(rule, k)
    rounds = 1
    while (more := step.draw_more(rule, k, n, scores[n - 1])) > 0:
        n += more
        rounds += 1
    return n, rounds


def _prefix_cost(t: TierRecord, n: int, requests: int, prompt_per_request: int) -> float:
    tokens_all = t.prompt_tokens + t.completion_tokens
    price = t.cost / tokens_all if tokens_all else 0.0
    completion = sum(t.sample_tokens[:n]) if t.sample_tokens else t.completion_tokens * n / len(t.samples)
    return price * (requests * prompt_per_request + completion)


def cut_tier(
    t: TierRecord, signal: str, n: int, prefixes: Prefixes, *, rounds: int, prompt_per_request: int
) -> TierRecord:
    """``t`` as if only its first ``n`` samples had been drawn, in ``rounds`` rounds."""
    first_requests = max(1, round(t.prompt_tokens / prompt_per_request)) if prompt_per_request else 1
    requests = first_requests + rounds - 1
    return replace(
        t,
        samples=t.samples[:n],
        sample_quality=t.sample_quality[:n],
        mean_logprobs=t.mean_logprobs[:n],
        min_logprobs=t.min_logprobs[:n],
        first_logprobs=t.first_logprobs[:n],
        sample_tokens=t.sample_tokens[:n],
        raw_samples=t.raw_samples[:n],
        scores={**t.scores, signal: prefixes.scores[n - 1]},
        consensus={**t.consensus, signal: prefixes.representatives[n - 1]},
        cost=_prefix_cost(t, n, requests, prompt_per_request),
        greedy_index=t.greedy_index if t.greedy_index is not None and t.greedy_index < n else None,
        k=t.requested,
    )


def simulate(
    records: Sequence[ExampleRecord],
    signal: str,
    prefixes: Sequence[Prefixes],
    *,
    tier: int = 0,
    rule: StoppingRule | None = None,
    fixed_k: int | None = None,
) -> tuple[list[ExampleRecord], list[int], list[int]]:
    """Records with tier ``tier`` cut to what ``rule`` draws (or to the first ``fixed_k`` samples),
    and per example the samples drawn and the rounds. ``prefixes[j]`` belongs to ``records[j]``."""
    if (rule is None) == (fixed_k is None):
        raise ValueError("give exactly one of rule or fixed_k")
    out, drawn, rounds = [], [], []
    for rec, pre in zip(records, prefixes, strict=True):
        t = rec.tiers[tier]
        k = len(t.samples)
        if rule is not None:
            n, r = rule_draws(rule, k, pre.scores)
        else:
            assert fixed_k is not None
            n, r = min(fixed_k, k), 1
        prompt = rec.tiers[-1].prompt_tokens or t.prompt_tokens
        cut = cut_tier(t, signal, n, pre, rounds=r, prompt_per_request=prompt)
        if fixed_k is not None:
            cut = replace(cut, k=n)  # a fixed-k tier asks for n
        tiers = list(rec.tiers)
        tiers[tier] = cut
        out.append(ExampleRecord(rec.id, tiers))
        drawn.append(n)
        rounds.append(r)
    return out, drawn, rounds
