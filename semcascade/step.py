"""The tier step: samples -> judgement -> consensus -> decision score -> decision.

This module is the one place the deferral rule lives. The live cascade
(:class:`~semcascade.cascade.Cascade`), the replay of recorded runs
(:mod:`semcascade.evaluation.replay`), the threshold solver
(:mod:`semcascade.calibration.solver`) and the router all call it, so a
figure computed offline is the decision the shipped code makes live.

* :func:`tier_signal` — what a tier decides on (its ``signal``, else its
  confidence model, else agreement under the config's scorer).
* :func:`tier_consensus` — clusters, representative and agreement of the samples.
* :func:`score_tier` — the decision score and the answer under a signal.
* :func:`decide` — accept / escalate / abstain, through the config's policy.
* :func:`first_draw`, :func:`draw_more` — adaptive k: how many samples a tier draws
  before it decides (its stopping rule, :mod:`semcascade.stopping`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from semcascade.aggregation import Aggregation, Consensus, consensus, pair_indices, weighted_vote
from semcascade.confidence import ConfidenceModel, TierEvidence
from semcascade.config import CascadeConfig, EquivalenceConfig, TierConfig
from semcascade.policy import Decision, DeferralPolicy
from semcascade.scoring.base import AgreementScorer, PairJudgement
from semcascade.scoring.signals import SignalContext, SignalValue, available_signals, get_signal, resolve_signal
from semcascade.stopping import StoppingRule

__all__ = [
    "TierScore",
    "decide",
    "draw_more",
    "first_draw",
    "final_vote",
    "judge_samples",
    "score_tier",
    "tier_consensus",
    "tier_signal",
]

FinalAction = Literal["answer", "abstain"]


def tier_signal(cfg: CascadeConfig, tier: TierConfig) -> str:
    """The signal ``tier`` decides on, resolved to a registry name.

    ``tier.signal`` when set; else ``confidence`` when the tier has a
    confidence model; else agreement under the config's scorer.
    """
    name = tier.signal or ("confidence" if tier.confidence_model else "agreement")
    return resolve_signal(name, cfg.scorer.name)


async def judge_samples(scorer: AgreementScorer, question: str, answers: Sequence[str]) -> list[PairJudgement]:
    """The scorer's judgement of every pair of ``answers`` (in :func:`pair_indices` order)."""
    n = len(answers)
    if n < 2:
        return []
    return await scorer.judge(question, [(answers[a], answers[b]) for a, b in pair_indices(n)])


def tier_consensus(
    n: int,
    judgements: Sequence[PairJudgement],
    equivalence: EquivalenceConfig,
    aggregation: Aggregation,
    *,
    greedy_index: int | None,
) -> Consensus:
    """Clusters, representative and agreement of ``n`` samples; the greedy sample answers when in the consensus."""
    return consensus(n, judgements, equivalence, aggregation, prefer=greedy_index)


@dataclass(frozen=True)
class TierScore:
    """What a tier's samples scored: the agreement under the config's scorer and the decision score."""

    consensus: Consensus
    #: agreement under the config's scorer (None with one sample)
    agreement: float | None
    #: the signal decided on and its score (None: no signal, e.g. one sample)
    signal: str
    score: float | None
    #: the sample the tier returns
    representative: int
    #: the fitted confidence, when the tier decides on it
    confidence: float | None


def score_tier(
    signal: str,
    evidence: TierEvidence,
    consensus_by_signal: Mapping[str, Consensus],
    *,
    confidence_model: ConfidenceModel | None = None,
    greedy_index: int | None = None,
    scores: Mapping[str, float | None] | None = None,
    rng: random.Random | None = None,
) -> SignalValue:
    """The decision score and the returned answer of one tier under ``signal`` (a registry name)."""
    ctx = SignalContext(
        evidence=evidence,
        consensus=consensus_by_signal,
        scores=scores or {},
        confidence_model=confidence_model,
        greedy_index=greedy_index,
        rng=rng,
    )
    return get_signal(signal).compute(ctx)


def decide(
    policy: DeferralPolicy,
    tier: TierConfig,
    score: float | None,
    *,
    n_samples: int,
    is_last: bool,
    final_action: FinalAction,
    signal: str,
) -> Decision:
    """The deferral decision: the only call of the policy, live and in replay alike."""
    black_box = signal in available_signals() and get_signal(signal).kind == "black-box"
    score_name = "agreement" if black_box else signal
    return policy.decide(
        tier, score, n_samples=n_samples, is_last=is_last, final_action=final_action, score_name=score_name
    )


def first_draw(rule: StoppingRule, k: int) -> int:
    """Adaptive k: the samples a tier draws first (between 1 and its ``k``)."""
    return max(1, min(int(rule.initial(k)), k))


def draw_more(rule: StoppingRule, k: int, drawn: int, score: float | None) -> int:
    """Adaptive k: how many more samples to draw after ``drawn`` scored ``score`` (0: decide now),
    never past ``k``. Live and in replay alike, the decision then goes through :func:`decide`."""
    return max(0, min(int(rule.more(k, drawn, score)), k - drawn))


async def final_vote(
    scorer: AgreementScorer,
    question: str,
    pooled: Sequence[str],
    weights: Sequence[float],
    equivalence: EquivalenceConfig,
) -> tuple[int, float] | None:
    """``final_answer: consensus``: the pooled answer (samples of every tier that ran, cheapest tier
    first) with the most weighted support, and its support share; ``None`` with fewer than two answers."""
    if len(pooled) < 2:
        return None
    js = await judge_samples(scorer, question, pooled)
    return weighted_vote(len(pooled), js, equivalence, weights)
