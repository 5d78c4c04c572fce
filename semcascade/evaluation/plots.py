"""PNG plots of an evaluation: cost-quality frontier, deferral vs threshold, reliability diagram."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semcascade.evaluation.replay import CurvePoint, pareto_front

__all__ = ["plot_deferral", "plot_frontier", "plot_reliability"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_frontier(
    path: Path,
    curves: Mapping[str, Sequence[CurvePoint]],
    points: Mapping[str, tuple[float, float]],
    *,
    baseline_cost: float,
    title: str,
    quality_label: str,
) -> None:
    """Quality vs cost relative to the strong tier alone: one curve per signal, marked systems as points.

    The dashed line is the Pareto frontier over every curve point and system
    that can be deployed (the oracle is drawn but not part of it).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    all_pts: list[tuple[float, float]] = []
    for name, curve in curves.items():
        xs = [p.cost / baseline_cost for p in curve]
        ys = [p.quality for p in curve]
        ax.plot(xs, ys, marker=".", linewidth=1.2, markersize=4, label=name, alpha=0.85)
        all_pts += list(zip(xs, ys, strict=True))
    markers = iter(["*", "s", "D", "^", "v", "P", "X", "o", "<", ">"])
    for name, (cost, quality) in points.items():
        x = cost / baseline_cost
        ax.scatter([x], [quality], marker=next(markers, "o"), s=90, zorder=5, label=name, edgecolors="black")
        if "oracle" not in name:
            all_pts.append((x, quality))
    front = pareto_front(all_pts)
    fx = [all_pts[i][0] for i in front]
    fy = [all_pts[i][1] for i in front]
    ax.step(fx, fy, where="post", color="black", linestyle="--", linewidth=0.8, alpha=0.6, label="deployable frontier")
    ax.set_xlabel("cost relative to the strong tier alone")
    ax.set_ylabel(quality_label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_deferral(path: Path, curves: Mapping[str, Sequence[CurvePoint]], *, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, curve in curves.items():
        pts = [p for p in curve if p.threshold <= 1.0]
        ax.plot([p.threshold for p in pts], [p.deferral for p in pts], marker=".", label=name)
    ax.set_xlabel("threshold")
    ax.set_ylabel("deferral rate of the first tier")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_reliability(
    path: Path, scores: Mapping[str, Sequence[float]], correct: Sequence[float], *, title: str, bins: int = 10
) -> None:
    """Binned agreement score vs observed accuracy of the answer (diagonal = calibrated)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    y = np.asarray(correct, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    for name, s in scores.items():
        x = np.asarray(s, dtype=float)
        idx = np.clip(np.digitize(x, edges) - 1, 0, bins - 1)
        xs, ys, ns = [], [], []
        for b in range(bins):
            m = idx == b
            if m.any():
                xs.append(float(x[m].mean()))
                ys.append(float(y[m].mean()))
                ns.append(int(m.sum()))
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel("agreement score (bin mean)")
    ax.set_ylabel("accuracy of the tier's answer")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
