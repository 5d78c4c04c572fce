"""The pairwise envelope of a model pool: every two-tier cascade, their upper envelope, and the
switching points where the best pair changes.

Given models evaluated on the same examples (the tiers of one harness run, or
of several runs over the same ids), each ordered pair (cheaper ``i``, dearer
``j``) is a two-tier cascade whose cost-quality curve comes from an exact
threshold sweep on ``i``'s agreement score. Each model alone is a policy too.
The envelope is the best quality reachable at or below each cost (deterministic
policies: a staircase); a switching point is a cost at which the policy on the
envelope changes from one pair (or lone model) to another.

    env = pairwise_envelope(model_pool(["eval/results/nq"]), signal="embedding")
    env.switches, env.best_at(0.5)
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semcascade.calibration.solver import StageTable, pair_curve
from semcascade.errors import CalibrationError
from semcascade.evaluation.records import EvalRun, load_run
from semcascade.evaluation.replay import ExampleRecord, TierRecord, pareto_front

__all__ = ["Envelope", "EnvelopePoint", "ModelPool", "Switch", "model_pool", "pairwise_envelope", "plot_envelope"]


@dataclass
class ModelPool:
    """Models evaluated on the same examples: ``outputs[m][e]`` is model ``m`` on example ``ids[e]``."""

    names: list[str]
    ids: list[str]
    outputs: list[list[TierRecord]]

    def records(self, chain: Sequence[int]) -> list[ExampleRecord]:
        """The examples as a cascade over the models in ``chain`` (cheapest first)."""
        return [ExampleRecord(rid, [self.outputs[m][e] for m in chain]) for e, rid in enumerate(self.ids)]


def model_pool(results: Sequence[EvalRun | str | os.PathLike[str]]) -> ModelPool:
    """Every tier of every run (results folders or loaded runs) as one model, on the example ids all share.

    A model (tier name) that appears in several runs is taken from the first.
    """
    runs = [r if isinstance(r, EvalRun) else load_run(r) for r in results]
    if not runs:
        raise CalibrationError("no results given; pass one or more folders written by `semcascade eval`")
    shared = set.intersection(*({r.id for r in run.records} for run in runs))
    if not shared:
        raise CalibrationError("the results share no example ids; evaluate the models on the same dataset, n and seed")
    ids = [r.id for r in runs[0].records if r.id in shared]
    names: list[str] = []
    outputs: list[list[TierRecord]] = []
    for run in runs:
        by_id = {r.id: r for r in run.records}
        for i, name in enumerate(run.tier_names):
            label = name if run.names_known else f"{run.path.name}:{name}"
            if label in names:  # the same model in another run: keep the first
                continue
            names.append(label)
            outputs.append([by_id[rid].tiers[i] for rid in ids])
    return ModelPool(names, ids, outputs)


@dataclass(frozen=True)
class EnvelopePoint:
    """One deployable policy: a pair at a threshold, or a model alone (``cheap == dear``)."""

    cheap: int
    dear: int
    threshold: float | None
    quality: float
    cost: float
    deferral: float

    @property
    def alone(self) -> bool:
        return self.cheap == self.dear


@dataclass(frozen=True)
class Switch:
    """At ``cost`` the envelope's policy changes from ``before`` to ``after`` (labels)."""

    cost: float
    quality: float
    before: str
    after: str


@dataclass
class Envelope:
    names: list[str]
    signal: str
    #: models by index, cheapest (total cost alone) first
    order: list[int]
    alone: dict[int, EnvelopePoint]
    curves: dict[tuple[int, int], list[EnvelopePoint]]
    #: the envelope's corner points, by increasing cost
    frontier: list[EnvelopePoint]
    switches: list[Switch]
    #: cost of the dearest model alone (the unit of relative cost)
    unit_cost: float
    n: int
    notes: list[str] = field(default_factory=list)

    def label(self, p: EnvelopePoint) -> str:
        if p.alone:
            return f"{self.names[p.cheap]} alone"
        return f"{self.names[p.cheap]} -> {self.names[p.dear]}"

    def text(self) -> str:
        """The envelope's corners and switching points, costs relative to the dearest model alone."""
        u = self.unit_cost
        lines = [f"pairwise envelope: {len(self.names)} models, {len(self.curves)} pairs, signal {self.signal}, "
                 f"n={self.n}; cost relative to {self.names[self.order[-1]]} alone"]  # fmt: skip
        lines += ["", "models alone (cheapest first):"]
        lines += [f"  {self.names[m]}: cost {self.alone[m].cost / u:.3f}, quality {self.alone[m].quality:.4f}"
                  for m in self.order]  # fmt: skip
        lines += ["", "switching points (cost where the best policy changes):"]
        lines += [f"  {s.cost / u:.3f}: {s.before} => {s.after} (quality {s.quality:.4f})" for s in self.switches]
        if not self.switches:
            lines.append("  none: one policy is best at every cost")
        lines += ["", f"envelope corners: {len(self.frontier)}"]
        for p in self.frontier:
            th = f" threshold {p.threshold:.4g}, deferral {p.deferral:.2f}" if not p.alone else ""
            lines.append(f"  {p.cost / u:.3f} -> {p.quality:.4f}  {self.label(p)}{th}")
        lines += [f"note: {x}" for x in self.notes]
        return "\n".join(lines)

    def best_at(self, cost: float) -> EnvelopePoint | None:
        """The best policy costing at most ``cost`` (absolute), or None below the cheapest."""
        best = None
        for p in self.frontier:
            if p.cost <= cost + 1e-15:
                best = p
        return best


def _label(names: Sequence[str], p: EnvelopePoint) -> str:
    return f"{names[p.cheap]} alone" if p.alone else f"{names[p.cheap]} -> {names[p.dear]}"


def pairwise_envelope(pool: ModelPool, signal: str) -> Envelope:
    """Every two-tier cascade of ``pool`` under ``signal``, their upper envelope and switching points."""
    if len(pool.names) < 2:
        raise CalibrationError("a pool needs at least two models; pass a run with >= 2 tiers or several runs")
    n = len(pool.ids)
    totals = [sum(t.cost + t.scoring_cost.get(signal, 0.0) for t in out) for out in pool.outputs]
    order = sorted(range(len(pool.names)), key=lambda m: (totals[m], m))
    notes: list[str] = []
    alone: dict[int, EnvelopePoint] = {}
    for m in order:
        tab = StageTable.from_records(pool.records([m]), signal)
        q_alone, c_alone = tab.evaluate([])
        alone[m] = EnvelopePoint(m, m, None, q_alone, c_alone, 0.0)
    curves: dict[tuple[int, int], list[EnvelopePoint]] = {}
    for rank, i in enumerate(order):
        for j in order[rank + 1 :]:
            tab = StageTable.from_records(pool.records([i, j]), signal)
            if not np.isfinite(tab.score[0]).any():
                notes.append(f"{pool.names[i]} has no {signal} score (one sample?): it cannot lead a cascade")
                continue
            th, q, c, d = pair_curve(tab)
            curves[(i, j)] = [
                EnvelopePoint(i, j, float(t), float(qq), float(cc), float(dd))
                for t, qq, cc, dd in zip(th, q, c, d, strict=True)
                if dd > 0  # deferring nothing is the cheap model alone
            ]
    # lone models first, so a tie goes to the simpler policy
    points = [alone[m] for m in order] + [p for pts in curves.values() for p in pts]
    front = [points[i] for i in pareto_front([(p.cost, p.quality) for p in points])]
    switches = []
    for prev, cur in itertools.pairwise(front):
        before, after = _label(pool.names, prev), _label(pool.names, cur)
        if before != after:
            switches.append(Switch(cur.cost, cur.quality, before, after))
    return Envelope(
        names=list(pool.names),
        signal=signal,
        order=order,
        alone=alone,
        curves=curves,
        frontier=front,
        switches=switches,
        unit_cost=max(totals) or 1.0,
        n=n,
        notes=sorted(set(notes)),
    )


def plot_envelope(env: Envelope, path: str | Path, *, title: str, quality_label: str = "quality") -> Path:
    """Every pair's curve, the lone models, the envelope (staircase) and its switching points, as a PNG."""
    from semcascade.evaluation.plots import _plt

    plt = _plt()
    u = env.unit_cost
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for (i, j), pts in env.curves.items():
        pts = sorted(pts, key=lambda p: p.cost)
        ax.plot([p.cost / u for p in pts], [p.quality for p in pts], marker=".", markersize=3, linewidth=1.0,
                alpha=0.7, label=f"{env.names[i]} -> {env.names[j]}")  # fmt: skip
    for m in env.order:
        p = env.alone[m]
        ax.scatter(
            [p.cost / u], [p.quality], marker="s", s=60, zorder=5, edgecolors="black", label=f"{env.names[m]} alone"
        )
    fx = [p.cost / u for p in env.frontier]
    fy = [p.quality for p in env.frontier]
    if fx:
        fx.append(max(fx[-1], max(p.cost for p in env.alone.values()) / u) * 1.02)
        fy.append(fy[-1])
    ax.step(fx, fy, where="post", color="black", linestyle="--", linewidth=1.2, label="pairwise envelope")
    for s in env.switches:
        ax.axvline(s.cost / u, color="red", linestyle=":", linewidth=0.8, alpha=0.7)
        ax.scatter([s.cost / u], [s.quality], marker="o", s=70, facecolors="none", edgecolors="red", zorder=6)
        ax.annotate(s.after, (s.cost / u, s.quality), textcoords="offset points", xytext=(4, -10), fontsize=6,
                    color="red")  # fmt: skip
    ax.scatter([], [], marker="o", facecolors="none", edgecolors="red", label="switching point")
    ax.set_xlabel(f"cost relative to the dearest model alone ({env.names[env.order[-1]]})")
    ax.set_ylabel(quality_label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
