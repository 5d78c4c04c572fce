"""Offline replay of the P(IK) router against the agreement cascade on logged eval runs (no model calls).

For each results folder: train the router (train/validation = the calibration
split, seeded), then on the held-out test split compare

* AUROC for "the cheap tier's consensus answer is right": P(IK) (query only,
  before generation) vs the embedding agreement of the cheap tier's samples;
* at the same share of queries answered by the cheap tier: the pre-generation
  router (cheap tier for the queries with the highest P(IK), the strong tier
  alone for the rest: no cheap-tier cost on those) vs the cascade (cheap tier on
  every query, escalating the lowest-agreement ones), quality and cost from the
  logged answers and costs.

    .venv/bin/python benchmarks/router_offline.py /work/main/eval/results/nq /work/main/eval/results/halueval_qa

Writes benchmarks/results/router_offline.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from semcascade.evaluation.metrics import auroc
from semcascade.evaluation.splits import split_of
from semcascade.routing import PIKRouter, load_examples, train_pik

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SHARES = (0.1, 0.25, 0.5, 0.75)


def replay(folder: Path, seed: int, signal: str) -> dict[str, Any]:
    model = train_pik(folder, seed=seed)
    examples, _ = load_examples(folder, signal=signal)
    raw = {
        r["id"]: r for r in (json.loads(line) for line in (folder / "examples.jsonl").read_text().splitlines() if line)
    }
    test = [e for e in examples if split_of(e.id) == "test"]
    p0 = PIKRouter(model).predict([e.input for e in test])[:, 0]
    agree = np.asarray([raw[e.id]["tiers"][0]["scores"][signal] for e in test], dtype=float)
    right = np.asarray([e.correct for e in test], dtype=float)  # (n, tiers)
    cost = np.asarray([[t["cost"] for t in raw[e.id]["tiers"]] for e in test], dtype=float)
    n = len(test)
    out: dict[str, Any] = {
        "results": str(folder),
        "seed": seed,
        "n_test": n,
        "tier_names": model.tier_names,
        "signal": signal,
        "cheap_right_share": float(right[:, 0].mean()),
        "auroc_pik_cheap": auroc(list(p0), list(right[:, 0] > 0)),
        "auroc_agreement_cheap": auroc(list(agree), list(right[:, 0] > 0)),
        "strong_alone": {"quality": float(right[:, -1].mean()), "cost": float(cost[:, -1].sum())},
        "points": [],
    }
    for share in SHARES:
        m = round(share * n)
        by_p = np.argsort(-p0, kind="stable")[:m]
        by_a = np.argsort(-agree, kind="stable")[:m]
        to_cheap_r = np.zeros(n, dtype=bool)
        to_cheap_r[by_p] = True
        to_cheap_c = np.zeros(n, dtype=bool)
        to_cheap_c[by_a] = True
        router_q = np.where(to_cheap_r, right[:, 0], right[:, -1]).mean()
        router_c = np.where(to_cheap_r, cost[:, 0], cost[:, -1]).sum()
        cascade_q = np.where(to_cheap_c, right[:, 0], right[:, -1]).mean()
        cascade_c = (cost[:, 0] + np.where(to_cheap_c, 0.0, cost[:, -1])).sum()
        out["points"].append(
            {
                "cheap_share": m / n,
                "router_quality": float(router_q),
                "router_cost": float(router_c),
                "cascade_quality": float(cascade_q),
                "cascade_cost": float(cascade_c),
            }
        )
    return out


def markdown(runs: list[dict[str, Any]], command: str) -> str:
    lines = ["# P(IK) router vs the cascade (offline replay on the test split)", "", f"`{command}`", ""]
    for r in runs:
        names = r["tier_names"]
        a_p, a_a = r["auroc_pik_cheap"], r["auroc_agreement_cheap"]
        lines += [
            f"## {r['results']} (seed {r['seed']}, {r['n_test']} test examples)",
            "",
            f"AUROC for '{names[0]} consensus answer is right' ({r['cheap_right_share']:.3f} of test examples): "
            f"P(IK) from the query {'n/a' if a_p is None else f'{a_p:.3f}'}, "
            f"the cascade's {r.get('signal', 'deferral')} signal {'n/a' if a_a is None else f'{a_a:.3f}'}.",
            "",
            f"{names[-1]} alone: quality {r['strong_alone']['quality']:.3f}, cost {r['strong_alone']['cost']:.4g}.",
            "",
            f"| share answered by {names[0]} | router quality | router cost | cascade quality | cascade cost |",
            "|---|---|---|---|---|",
        ]
        for p in r["points"]:
            lines.append(
                f"| {p['cheap_share']:.2f} | {p['router_quality']:.3f} | {p['router_cost']:.4g} | "
                f"{p['cascade_quality']:.3f} | {p['cascade_cost']:.4g} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="eval results folders (examples.jsonl)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--signal", default="embedding")
    ap.add_argument("--out", default=str(OUT / "router_offline"))
    args = ap.parse_args()
    runs = [replay(Path(f), args.seed, args.signal) for f in args.results]
    command = "python benchmarks/router_offline.py " + " ".join(sys.argv[1:])
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"command": command, "runs": runs}, indent=1) + "\n")
    md = markdown(runs, command)
    stem.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
