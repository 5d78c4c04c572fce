from __future__ import annotations

import numpy as np
import pytest

from semcascade.aggregation import agreement_matrix, cluster_samples, consensus, is_equivalent, medoid, pair_indices
from semcascade.config import EquivalenceConfig
from semcascade.scoring.base import PairJudgement

BI = EquivalenceConfig(rule="bidirectional", threshold=0.5)
NC = EquivalenceConfig(rule="no_contradiction", threshold=0.5)


def sims(n: int, table: dict[tuple[int, int], float]) -> list[PairJudgement]:
    return [PairJudgement(table.get(p, 0.0), table.get(p, 0.0)) for p in pair_indices(n)]


def test_pair_indices_order() -> None:
    assert pair_indices(3) == [(0, 1), (0, 2), (1, 2)]
    assert pair_indices(1) == []


def test_matrix_symmetric_with_unit_diagonal() -> None:
    m = agreement_matrix(3, [PairJudgement(0.2, 0.4), PairJudgement(1.0, 1.0), PairJudgement(0.0, 0.5)])
    assert np.allclose(m, m.T)
    assert np.allclose(np.diag(m), 1.0)
    assert m[0, 1] == pytest.approx(0.3) and m[1, 2] == pytest.approx(0.25)


def test_matrix_rejects_wrong_count() -> None:
    with pytest.raises(ValueError, match="expected 3 judgements"):
        agreement_matrix(3, [PairJudgement(1, 1)])


def test_bidirectional_needs_both_directions() -> None:
    assert is_equivalent(PairJudgement(0.9, 0.6), BI)
    assert not is_equivalent(PairJudgement(0.9, 0.4), BI)  # one-way entailment is not equivalence


def test_no_contradiction_rule() -> None:
    assert is_equivalent(PairJudgement(0.1, 0.1, contradiction=0.2), NC)  # neutral pair passes
    assert not is_equivalent(PairJudgement(0.9, 0.9, contradiction=0.7), NC)
    assert not is_equivalent(PairJudgement(0.3, 0.2), NC)  # falls back to 1 - max(sim)


def test_clusters_greedy_against_first_member() -> None:
    eq = np.eye(4, dtype=bool)
    for i, j in [(0, 2), (1, 3)]:
        eq[i, j] = eq[j, i] = True
    assert cluster_samples(4, eq) == [[0, 2], [1, 3]]
    eq2 = np.eye(4, dtype=bool)
    eq2[3, 1] = eq2[1, 3] = True
    assert cluster_samples(4, eq2) == [[1, 3], [0], [2]]  # largest first


def test_medoid_picks_most_central_and_breaks_ties_low() -> None:
    m = np.array([[1, 0.2, 0.3], [0.2, 1, 0.9], [0.3, 0.9, 1]])
    assert medoid([0, 1, 2], m) == 2  # 1.2 vs 1.1 vs 0.5
    assert medoid([1, 2], m) == 1  # tie -> lowest index
    with pytest.raises(ValueError):
        medoid([], m)


def test_consensus_majority_cluster_and_scores() -> None:
    # samples 0,1,2 agree strongly; 3,4 are outliers agreeing with each other weakly
    table = {(0, 1): 0.9, (0, 2): 0.8, (1, 2): 0.95, (3, 4): 0.6}
    js = sims(5, table)
    c = consensus(5, js, BI, "mean_pairwise")
    assert c.clusters[0] == [0, 1, 2]
    assert c.representative == 1  # 0.9+0.95 is the largest row sum in the cluster
    assert c.score == pytest.approx(sum(table.values()) / 10)
    c2 = consensus(5, js, BI, "largest_cluster")
    assert c2.score == pytest.approx(3 / 5)


def test_consensus_tied_clusters_prefer_tighter() -> None:
    table = {(0, 1): 0.55, (2, 3): 0.99}
    c = consensus(4, sims(4, table), BI)
    assert [len(x) for x in c.clusters] == [2, 2]
    assert c.representative in (2, 3)


def test_single_sample_has_no_score() -> None:
    c = consensus(1, [], BI)
    assert c.score is None and c.representative == 0 and c.clusters == [[0]]


def test_all_disagree() -> None:
    c = consensus(3, sims(3, {}), BI)
    assert c.clusters == [[0], [1], [2]] and c.score == 0.0 and c.representative == 0
