"""One cost-quality chart: the strong tier alone, the naive-signal cascade, the shipped cascade and the oracle.

Reads two harness runs over the same examples (so the strong tier, its cost and
the oracle are shared) and draws their threshold sweeps on one frontier plot:

    semcascade eval --config configs/local.yaml --dataset halueval_qa --split test --n 500 \\
        --signals p_mean,p_min,p_first,confidence,random --out eval/results/halueval_qa
    semcascade eval --config eval/configs/naive-agreement.yaml --dataset halueval_qa --split test --n 500 \\
        --signals embedding,lexical,logprob,p_min,random --out eval/results/halueval_qa-naive
    python benchmarks/frontier_vs_naive.py eval/results/halueval_qa eval/results/halueval_qa-naive

writes ``frontier_vs_naive.png`` into the shipped run's folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from semcascade.evaluation.plots import plot_frontier
from semcascade.evaluation.replay import CurvePoint


def _report(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "report.json").read_text()))


def _curve(rep: dict[str, Any], signal: str) -> list[CurvePoint]:
    return [CurvePoint(**p) for p in rep["curves"].get(signal, [])]


def _row(rep: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next(r for r in rep["systems"] if str(r["system"]).startswith(prefix))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shipped", type=Path, help="results folder of the shipped config")
    ap.add_argument("naive", type=Path, help="results folder of the naive-agreement config, same examples")
    args = ap.parse_args()
    shipped, naive = _report(args.shipped), _report(args.naive)
    strong = _row(shipped, "qwen-1.5b alone (greedy)")
    if abs(_row(naive, "qwen-1.5b alone (greedy)")["cost"] - strong["cost"]) > 1e-9 * max(1.0, strong["cost"]):
        raise SystemExit("the two runs are not over the same examples (the strong tier's cost differs)")
    curves = {
        "naive: embedding agreement, k=5 T=0.7": _curve(naive, "embedding"),
        "naive: lexical agreement, k=5 T=0.7": _curve(naive, "lexical"),
        "shipped: fitted confidence, k=1": _curve(shipped, "confidence"),
    }
    points = {}
    for label, rep, prefix in (
        ("strong tier alone (1.5B)", shipped, "qwen-1.5b alone (greedy)"),
        ("cheap tier alone (0.5B greedy)", shipped, "qwen-0.5b alone (greedy)"),
        ("naive cascade at its threshold 0.8", naive, "cascade: embedding (shipped"),
        ("shipped cascade at its threshold 0.5", shipped, "cascade: confidence (shipped"),
        ("oracle deferral", shipped, "oracle deferral"),
    ):
        row = _row(rep, prefix)
        points[label] = (float(row["cost"]), float(row["quality"]))
    out = args.shipped / "frontier_vs_naive.png"
    plot_frontier(
        out, curves, points, baseline_cost=float(strong["cost"]),
        title=f"{shipped['dataset']} ({shipped['split']} split, n={shipped['n']}): shipped vs naive cascade",
        quality_label=str(shipped["quality_metric"]),
    )  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
