"""Ranking metrics for deferral signals (dependency-free)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["auroc", "average_precision"]


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` for predicting ``labels`` (ties count 1/2).

    ``None`` when one class is absent (the AUROC is undefined then).
    """
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape:
        raise ValueError("scores and labels differ in length")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    # Mann-Whitney U with average ranks for ties.
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the precision-recall curve (average precision) of ``scores`` for ``labels``.

    Tied scores are ranked as one block. ``None`` when there is no positive.
    """
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape:
        raise ValueError("scores and labels differ in length")
    n_pos = int(y.sum())
    if n_pos == 0:
        return None
    ap = 0.0
    tp = seen = 0
    for value in np.unique(s)[::-1]:  # thresholds from high to low
        block = s == value
        tp_block = int(y[block].sum())
        tp += tp_block
        seen += int(block.sum())
        ap += (tp_block / n_pos) * (tp / seen)
    return float(ap)
