from __future__ import annotations

import itertools
import random

import pytest

from semcascade.evaluation.metrics import auroc, average_precision


def brute(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_perfect_and_inverted() -> None:
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0


def test_ties_count_half() -> None:
    assert auroc([0.5, 0.5], [True, False]) == 0.5


def test_undefined_for_one_class() -> None:
    assert auroc([0.1, 0.2], [True, True]) is None


def test_matches_brute_force() -> None:
    rng = random.Random(3)
    for _ in range(50):
        n = rng.randint(2, 30)
        scores = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0, rng.random()]) for _ in range(n)]
        labels = [rng.random() < 0.4 for _ in range(n)]
        if len(set(labels)) < 2:
            continue
        assert auroc(scores, labels) == pytest.approx(brute(scores, labels))


def test_length_mismatch() -> None:
    with pytest.raises(ValueError):
        auroc([0.1], [True, False])


def test_average_precision_hand_computed() -> None:
    # ranking: T F T F -> precision at the two positives: 1/1 and 2/3
    assert average_precision([0.9, 0.8, 0.7, 0.1], [True, False, True, False]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0.9, 0.8], [True, True]) == 1.0
    assert average_precision([0.5, 0.5], [True, False]) == pytest.approx(0.5)  # a tied block
    assert average_precision([0.1, 0.2], [False, False]) is None


def test_average_precision_matches_sklearn() -> None:
    from sklearn.metrics import average_precision_score

    rng = random.Random(5)
    for _ in range(20):
        scores = [rng.random() for _ in range(25)]
        labels = [rng.random() < 0.4 for _ in range(25)]
        if not any(labels):
            continue
        assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores))
