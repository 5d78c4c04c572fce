"""Adaptive k against fixed k on committed k=5 runs (no model call; the embedding scorer runs locally).

Each run's first tier drew 5 samples per question (embedding agreement decides).
Adaptive k is replayed by taking the recorded samples in order
(``semcascade.evaluation.adaptive``): ``agree_early`` draws 2, stops when their
agreement is >= accept_at or < escalate_below, else draws one more, up to 5.
Fixed k = 2, 3, 5 are the first 2, 3, 5 samples. Every system's threshold is
swept (0.00..1.00); at matched quality (the fixed-k=5 cascade at the config's
threshold 0.8) each system's cheapest point reaching that quality is reported,
with the first tier's samples per request and sequential sampling rounds
(latency is not modelled: each round is one more sequential call).

    python benchmarks/adaptive_k.py       # -> benchmarks/results/adaptive_k.{json,md}
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import numpy as np
from _report import write_report

from semcascade.aggregation import pair_indices
from semcascade.config import EquivalenceConfig
from semcascade.evaluation.adaptive import Prefixes, prefixes_from, simulate
from semcascade.evaluation.records import load_run
from semcascade.evaluation.replay import ExampleRecord, cascade_outcomes, summarize, tier_alone
from semcascade.scoring._registry import create_scorer
from semcascade.stopping import create_stopping_rule

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("nq-agreement", "trivia-agreement", "halueval_qa-calibration-naive")
SIGNAL = "embedding"
RULES = [(0.9, 0.5), (0.95, 0.5), (0.9, 0.3), (0.85, 0.6)]
GRID = np.round(np.linspace(0.0, 1.0, 101), 2)


async def _prefixes(records: list[ExampleRecord]) -> list[Prefixes]:
    scorer = create_scorer("embedding", backend="onnx")
    eq = EquivalenceConfig(rule="bidirectional", threshold=0.8)  # the runs' configs
    pairs = [pair_indices(len(r.tiers[0].samples)) for r in records]
    flat = [(r.tiers[0].samples[a], r.tiers[0].samples[b]) for r, ps in zip(records, pairs, strict=True) for a, b in ps]
    js = await scorer.judge("", flat)  # one batch: every text embedded once
    out, at = [], 0
    for r, ps in zip(records, pairs, strict=True):
        t = r.tiers[0]
        out.append(
            prefixes_from(len(t.samples), js[at : at + len(ps)], eq, "mean_pairwise", greedy_index=t.greedy_index)
        )
        at += len(ps)
    return out


def _curve(records: list[ExampleRecord], strong_cost: float) -> list[tuple[float, float, float]]:
    """(threshold, quality, cost / strong alone) over the grid."""
    out = []
    for th in GRID:
        sm = summarize(cascade_outcomes(records, SIGNAL, [float(th)]), 2)
        out.append((float(th), sm.quality, sm.cost / strong_cost))
    return out


def _system(name: str, recs: list[ExampleRecord], drawn: list[int], rounds: list[int], strong_cost: float,
            target_q: float) -> dict[str, Any]:  # fmt: skip
    curve = _curve(recs, strong_cost)
    at = next(c for c in curve if c[0] == 0.8)
    ok = [c for c in curve if c[1] >= target_q - 1e-12]
    best = min(ok, key=lambda c: (c[2], -c[1])) if ok else None
    # samples drawn by the first tier (every request visits it) at the matched point
    return {
        "system": name,
        "samples_per_request": float(np.mean(drawn)),
        "rounds_per_request": float(np.mean(rounds)),
        "at_threshold_0.8": {"quality": at[1], "cost_vs_strong": at[2]},
        "matched": None if best is None else {"threshold": best[0], "quality": best[1], "cost_vs_strong": best[2]},
        "best_quality": max(c[1] for c in curve),
    }


def run(name: str) -> dict[str, Any]:
    rv = load_run(ROOT / "eval/results" / name)
    records = rv.records
    pre = asyncio.run(_prefixes(records))
    recorded = np.array([r.tiers[0].scores.get(SIGNAL) for r in records], dtype=float)
    full = np.array([p.scores[-1] for p in pre], dtype=float)
    strong = summarize(tier_alone(records, 1, mode="consensus", signal=SIGNAL), 2)
    fixed5, d5, r5 = simulate(records, SIGNAL, pre, fixed_k=5)
    modelled = np.array([r.tiers[0].cost for r in fixed5])
    actual = np.array([r.tiers[0].cost for r in records])
    target = summarize(cascade_outcomes(fixed5, SIGNAL, [0.8]), 2).quality
    systems = [_system("fixed k=5", fixed5, d5, r5, strong.cost, target)]
    for k in (2, 3):
        recs, d, r = simulate(records, SIGNAL, pre, fixed_k=k)
        systems.append(_system(f"fixed k={k}", recs, d, r, strong.cost, target))
    for acc, esc in RULES:
        rule = create_stopping_rule("agree_early", accept_at=acc, escalate_below=esc)
        recs, d, r = simulate(records, SIGNAL, pre, rule=rule)
        systems.append(_system(f"agree_early accept>={acc:g} escalate<{esc:g}", recs, d, r, strong.cost, target))
    base = systems[0]["matched"]["cost_vs_strong"]
    for s in systems:
        s["matched_cost_vs_fixed5"] = None if s["matched"] is None else s["matched"]["cost_vs_strong"] / base
    return {
        "run": name,
        "n": len(records),
        "strong_quality": strong.quality,
        "target_quality": target,
        # the replayed prefix of all 5 samples reproduces the recorded agreement, and the cost model the recorded cost
        "max_score_deviation": float(np.nanmax(np.abs(full - recorded))),
        "max_cost_model_deviation": float(np.max(np.abs(modelled - actual) / actual)),
        "systems": systems,
    }


def markdown(rep: dict[str, Any]) -> str:
    lines = [
        "# Adaptive k vs fixed k (first tier, embedding agreement), replayed from committed k=5 runs",
        "",
        f"`{rep['command']}`. Matched quality = the fixed k=5 cascade's at threshold 0.8; 'matched cost' = the "
        "cheapest threshold of each system reaching it (cost relative to the strong tier alone, and to fixed k=5). "
        "Samples and rounds are the first tier's per request. Each row's replayed 5-sample agreement reproduces the "
        "recorded one (max deviation below) and the cost model the recorded cost.",
        "",
    ]
    for r in rep["runs"]:
        lines += [
            f"## {r['run']} (n={r['n']}; strong alone quality {r['strong_quality']:.3f}; matched quality "
            f"{r['target_quality']:.3f}; score deviation {r['max_score_deviation']:.1e}, cost model deviation "
            f"{r['max_cost_model_deviation']:.1%})",
            "",
            "| system | samples / request | rounds | quality @0.8 | cost @0.8 | matched: threshold | quality | cost | "
            "cost vs fixed k=5 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for s in r["systems"]:
            m = s["matched"]
            mm = (
                f"{m['threshold']:.2f} | {m['quality']:.3f} | {m['cost_vs_strong']:.3f} | "
                f"{s['matched_cost_vs_fixed5']:.2f}"
                if m
                else f"- | never (best {s['best_quality']:.3f}) | - | -"
            )
            at = s["at_threshold_0.8"]
            lines.append(
                f"| {s['system']} | {s['samples_per_request']:.2f} | {s['rounds_per_request']:.2f} | "
                f"{at['quality']:.3f} | {at['cost_vs_strong']:.3f} | {mm} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/adaptive_k"))
    args = ap.parse_args()
    rep = {"command": "python benchmarks/adaptive_k.py", "runs": [run(n) for n in RUNS]}
    write_report(args.out, rep, markdown)


if __name__ == "__main__":
    main()
