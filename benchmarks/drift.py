"""Escalation-drift monitoring on streams replayed from recorded real runs (no model call).

The shipped cascade's decisions are replayed from committed runs: the baseline
comes from the HaluEval calibration split, the streams from its test split
(stationary) and from a mix in which 30% closed-book NQ questions (answered by
the same shipped config in `eval/results/nq`) start arriving at request 2,000.
Reports false alarms per 10,000 requests and the detection delay.

    python benchmarks/drift.py            # -> benchmarks/results/drift.{json,md}
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
from _report import write_report

from semcascade.drift import DriftBaseline, DriftMonitor
from semcascade.evaluation.harness import _shipped_outcomes
from semcascade.evaluation.records import load_run
from semcascade.evaluation.rescore import run_config

ROOT = Path(__file__).resolve().parents[1]


def decisions(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(escalated, first-tier score) of every example under the run's own shipped cascade."""
    run = load_run(run_dir)
    cfg = run_config(run.report, ROOT)
    outs = _shipped_outcomes(run.records, cfg)
    signal = str(run.report.get("shipped_signal") or "confidence")
    esc = np.array([o.tier > 0 for o in outs])
    scores = np.array([np.nan if (s := r.tiers[0].scores.get(signal)) is None else s for r in run.records])
    return esc, scores


def stream(
    rng: np.random.Generator, pools: list[tuple[np.ndarray, np.ndarray]], mix: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A stream drawing request t from pool ``mix[t]`` (with replacement)."""
    esc, sc = np.empty(len(mix), dtype=bool), np.empty(len(mix))
    for p, (e, s) in enumerate(pools):
        idx = np.flatnonzero(mix == p)
        pick = rng.integers(0, len(e), size=len(idx))
        esc[idx], sc[idx] = e[pick], s[pick]
    return esc, sc


Pool = tuple[np.ndarray, np.ndarray]


def pools() -> tuple[DriftBaseline, Pool, Pool]:
    """The baseline (HaluEval calibration split) and the HaluEval test and NQ decision pools."""
    cal = decisions(ROOT / "eval/results/halueval_qa-calibration")
    test = decisions(ROOT / "eval/results/halueval_qa")
    nq = decisions(ROOT / "eval/results/nq")
    baseline = DriftBaseline.from_outcomes(
        list(cal[0]), [None if np.isnan(s) else float(s) for s in cal[1]], source="eval/results/halueval_qa-calibration"
    )
    return baseline, test, nq


def shifted_mix(rng: np.random.Generator, length: int, shift_at: int, share: float) -> np.ndarray:
    """Pool 0 until ``shift_at``, then pool 1 with probability ``share``."""
    mix = np.zeros(length, dtype=int)
    after = np.arange(length) >= shift_at
    mix[after] = (rng.random(int(after.sum())) < share).astype(int)
    return mix


def run_monitor(baseline: DriftBaseline, esc: np.ndarray, sc: np.ndarray, budget: float) -> list[tuple[int, str]]:
    mon = DriftMonitor(baseline, false_alarms_per_10k=budget)
    alarms = []
    for e, s in zip(esc, sc, strict=True):
        for a in mon.observe(bool(e), None if np.isnan(s) else float(s)):
            alarms.append((a.at_request, a.kind))
    return alarms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--streams", type=int, default=20, help="replicate streams per scenario")
    ap.add_argument("--length", type=int, default=10_000, help="requests per stream")
    ap.add_argument("--shift-at", type=int, default=2_000)
    ap.add_argument("--share", type=float, default=0.3, help="share of NQ questions after the shift")
    ap.add_argument("--budgets", default="1,5", help="false alarms per 10,000 requests to configure")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/drift"))
    args = ap.parse_args()
    logging.getLogger("semcascade.drift").setLevel(logging.ERROR)  # alarms are counted, not printed
    baseline, test, nq = pools()
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for budget in [float(b) for b in args.budgets.split(",")]:
        false_alarms, kinds = 0, {"escalation_rate": 0, "score_distribution": 0}
        for _ in range(args.streams):
            esc, sc = stream(rng, [test], np.zeros(args.length, dtype=int))
            for _, kind in run_monitor(baseline, esc, sc, budget):
                false_alarms += 1
                kinds[kind] += 1
        delays, missed, by_kind = [], 0, {"escalation_rate": [], "score_distribution": []}  # type: ignore[var-annotated]
        for _ in range(args.streams):
            esc, sc = stream(rng, [test, nq], shifted_mix(rng, args.length, args.shift_at, args.share))
            alarms = [(t, k) for t, k in run_monitor(baseline, esc, sc, budget) if t > args.shift_at]
            if not alarms:
                missed += 1
                continue
            delays.append(alarms[0][0] - args.shift_at)
            for kind in by_kind:
                first = next((t for t, k in alarms if k == kind), None)
                if first is not None:
                    by_kind[kind].append(first - args.shift_at)
        per_10k = false_alarms / (args.streams * args.length / 10_000)
        rows.append(
            {
                "budget_per_10k": budget,
                "false_alarms_per_10k": per_10k,
                "false_alarms_by_kind": kinds,
                "detection_delay_median": float(np.median(delays)) if delays else None,
                "detection_delay_p90": float(np.percentile(delays, 90)) if delays else None,
                "delay_median_by_kind": {k: (float(np.median(v)) if v else None) for k, v in by_kind.items()},
                "missed": missed,
            }
        )
    report = {
        "command": "python benchmarks/drift.py",
        "baseline": {"escalation_rate": baseline.escalation_rate, "n": baseline.n, "source": baseline.source},
        "stationary_escalation_rate": float(test[0].mean()),
        "nq_escalation_rate": float(nq[0].mean()),
        "streams": args.streams,
        "length": args.length,
        "shift_at": args.shift_at,
        "share": args.share,
        "rows": rows,
    }
    write_report(args.out, report, markdown)


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Escalation-drift monitoring on replayed streams",
        "",
        f"Command: `{r['command']}`. Baseline: the shipped cascade on the HaluEval calibration split "
        f"({r['baseline']['n']} questions, escalation rate {r['baseline']['escalation_rate']:.3f}). "
        f"Stationary streams: {r['streams']} × {r['length']:,} requests drawn from the HaluEval test split "
        f"(escalation rate {r['stationary_escalation_rate']:.3f}). Shifted streams: from request {r['shift_at']:,}, "
        f"{r['share']:.0%} of requests are NQ-open closed-book questions (escalation rate there "
        f"{r['nq_escalation_rate']:.3f}). Decisions and scores are replayed from the committed runs.",
        "",
        "| configured false alarms / 10k | measured false alarms / 10k (stationary) | of which rate / score | "
        "detection delay, median (p90) requests | median delay: rate CUSUM / score KS | missed (of streams) |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        k = row["false_alarms_by_kind"]
        d = row["delay_median_by_kind"]

        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.0f}"

        lines.append(
            f"| {row['budget_per_10k']:g} | {row['false_alarms_per_10k']:.2f} | {k['escalation_rate']} / "
            f"{k['score_distribution']} | {f(row['detection_delay_median'])} ({f(row['detection_delay_p90'])}) | "
            f"{f(d['escalation_rate'])} / {f(d['score_distribution'])} | {row['missed']} of {r['streams']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
