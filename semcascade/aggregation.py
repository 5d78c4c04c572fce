"""From pairwise judgements to a tier's consensus: matrix, clusters, medoid, score.

Pure functions over small matrices (k is at most a few dozen), so they are
easy to test by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np

from semcascade.config import EquivalenceConfig
from semcascade.scoring.base import PairJudgement

__all__ = [
    "Consensus",
    "agreement_matrix",
    "cluster_samples",
    "consensus",
    "is_equivalent",
    "medoid",
    "pair_indices",
]

Aggregation = Literal["mean_pairwise", "largest_cluster"]


def pair_indices(n: int) -> list[tuple[int, int]]:
    """All unordered pairs (i < j) of ``n`` samples, in a fixed order."""
    return list(combinations(range(n), 2))


def agreement_matrix(n: int, judgements: Sequence[PairJudgement]) -> np.ndarray:
    """Symmetric ``n x n`` matrix of pair agreements (diagonal 1) in :func:`pair_indices` order."""
    pairs = pair_indices(n)
    if len(judgements) != len(pairs):
        raise ValueError(f"expected {len(pairs)} judgements for {n} samples, got {len(judgements)}")
    m = np.eye(n, dtype=float)
    for (i, j), jd in zip(pairs, judgements, strict=True):
        m[i, j] = m[j, i] = float(np.clip(jd.agreement, 0.0, 1.0))
    return m


def is_equivalent(j: PairJudgement, rule: EquivalenceConfig) -> bool:
    """Whether a pair counts as the same meaning under ``rule``.

    ``bidirectional``: both directions >= threshold (strict mutual entailment;
    for similarity scorers, similarity >= threshold).
    ``no_contradiction``: P(contradiction) < threshold; where the scorer gives no
    contradiction probability, ``1 - max(forward, backward)`` stands in for it.
    """
    if rule.rule == "bidirectional":
        return j.forward >= rule.threshold and j.backward >= rule.threshold
    contradiction = j.contradiction if j.contradiction is not None else 1.0 - max(j.forward, j.backward)
    return contradiction < rule.threshold


def cluster_samples(n: int, equivalent: np.ndarray) -> list[list[int]]:
    """Greedy meaning clusters (as in semantic entropy).

    Each sample joins the first existing cluster whose first member it is
    equivalent to, else starts a new one. ``equivalent`` is an ``n x n`` bool
    matrix. Clusters are returned largest first (ties: earliest first member).
    """
    clusters: list[list[int]] = []
    for i in range(n):
        for c in clusters:
            if equivalent[i, c[0]]:
                c.append(i)
                break
        else:
            clusters.append([i])
    return sorted(clusters, key=lambda c: (-len(c), c[0]))


def medoid(members: Sequence[int], matrix: np.ndarray) -> int:
    """The member with the highest total agreement with the other members (ties: lowest index)."""
    if not members:
        raise ValueError("medoid of an empty cluster")
    idx = list(members)
    sub = matrix[np.ix_(idx, idx)]
    totals = sub.sum(axis=1) - np.diag(sub)
    return idx[int(np.argmax(totals))]  # argmax returns the first maximum


@dataclass(frozen=True)
class Consensus:
    """The outcome of aggregating one tier's samples."""

    matrix: np.ndarray
    clusters: list[list[int]]
    representative: int
    #: agreement in [0, 1]; ``None`` when there is only one sample
    score: float | None


def consensus(
    n: int,
    judgements: Sequence[PairJudgement],
    rule: EquivalenceConfig,
    aggregation: Aggregation = "mean_pairwise",
    *,
    prefer: int | None = None,
) -> Consensus:
    """Aggregate ``n`` samples' pairwise judgements into clusters, a representative and a score.

    The representative is the medoid of the largest cluster; when several
    clusters tie for largest, the one with the higher mean internal agreement
    wins. ``prefer`` (e.g. the greedy sample) is the representative instead
    whenever it belongs to the winning cluster. ``mean_pairwise`` scores the tier by the mean off-diagonal agreement;
    ``largest_cluster`` by the largest cluster's share of the samples.
    """
    if n < 1:
        raise ValueError("consensus needs at least one sample")
    matrix = agreement_matrix(n, judgements)
    equiv = np.eye(n, dtype=bool)
    for (i, j), jd in zip(pair_indices(n), judgements, strict=True):
        equiv[i, j] = equiv[j, i] = is_equivalent(jd, rule)
    clusters = cluster_samples(n, equiv)
    top = [c for c in clusters if len(c) == len(clusters[0])]

    def internal(c: list[int]) -> float:
        if len(c) < 2:
            return 0.0
        sub = matrix[np.ix_(c, c)]
        return float((sub.sum() - len(c)) / (len(c) * (len(c) - 1)))

    best = max(top, key=internal)  # max keeps the first of equals
    rep = prefer if prefer is not None and prefer in best else medoid(best, matrix)
    if n == 1:
        score: float | None = None
    elif aggregation == "largest_cluster":
        score = len(clusters[0]) / n
    else:
        score = float((matrix.sum() - n) / (n * (n - 1)))
    return Consensus(matrix=matrix, clusters=clusters, representative=rep, score=score)


def weighted_vote(
    n: int, judgements: Sequence[PairJudgement], rule: EquivalenceConfig, weights: Sequence[float]
) -> tuple[int, float]:
    """The answer with the most weighted support among ``n`` pooled answers, and its support share.

    An answer's support is the total weight of the answers equivalent to it
    (itself included). Ties go to the later answer, so when answers are
    pooled cheapest tier first, the stronger tier wins a tie.
    """
    if n < 1 or len(weights) != n:
        raise ValueError("weighted_vote needs one weight per answer")
    equiv = np.eye(n, dtype=bool)
    for (i, j), jd in zip(pair_indices(n), judgements, strict=True):
        equiv[i, j] = equiv[j, i] = is_equivalent(jd, rule)
    w = np.asarray(weights, dtype=float)
    support = equiv.astype(float) @ w
    best = max(range(n), key=lambda i: (float(support[i]), i))
    return best, float(support[best] / w.sum()) if w.sum() > 0 else 0.0
