"""Per-task cascades chosen by measurement, at several price tables (offline, no model calls).

For each task of the embedded default, from the committed runs of the local tiers (0.5B -> 1.5B):

* candidates (``semcascade.calibration.tasks``): the cheap tier alone, the strong tier alone, and for
  every recorded signal of every run of the task the thresholds ``semcascade calibrate`` picks on the
  calibration examples for "quality >= the strong tier alone";
* the choice: the cheapest candidate whose calibration quality is at least the strong tier alone's;
* reported on the test examples: the chosen cascade, the strong tier alone, and today's single global
  config (``configs/local.yaml``'s fitted confidence at its shipped threshold) applied to the task.

Costs are re-priced from the recorded tokens (``semcascade.evaluation.prices``) at each price table:
``recorded`` (the local tiers' FLOP prices, a cheap token costs 0.32 of a strong one), and the presets
``gpt-4o-mini/gpt-4o`` (0.06) and ``claude-haiku/claude-sonnet`` (0.33, litellm's offline cost map).
The shipped local config is chosen at the recorded prices.

Splits: an example's split is a hash of its id (``semcascade.evaluation.splits``); runs that hold only
the test split (CNN/DailyMail: 100 articles) are split 50/50 by a seeded permutation of their ids.

    .venv/bin/python benchmarks/task_frontiers.py

Writes benchmarks/results/task_frontiers.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _report import write_report

from semcascade.calibration.run import split_records
from semcascade.calibration.tasks import Candidate, CandidateResult, Rule, TaskRun, choose_task_cascade, evaluate
from semcascade.errors import CalibrationError
from semcascade.evaluation.prices import PriceTable, load_price_table, reprice_run, run_prices
from semcascade.evaluation.records import EvalRun, load_run

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"
OUT = ROOT / "benchmarks" / "results" / "task_frontiers"
PRICES = ("recorded", "gpt-4o-mini/gpt-4o", "claude-haiku/claude-sonnet")
#: today's single global config: configs/local.yaml's signal and threshold
GLOBAL = ("confidence", (0.5,))


@dataclass(frozen=True)
class RunSpec:
    """A run of a task: one folder holding both splits, or a calibration folder and a test folder."""

    label: str
    test: str
    calibration: str | None = None
    #: made with configs/local.yaml: today's global config can be replayed on it
    shipped: bool = False


#: task -> its runs (the first run's tiers alone are the baselines; its report names the quality metric)
TASKS: dict[str, tuple[RunSpec, ...]] = {
    "rc (HaluEval)": (RunSpec("local.yaml", "halueval_qa", "halueval_qa-calibration", shipped=True),),
    "qa (NQ-open)": (RunSpec("local.yaml", "nq", shipped=True), RunSpec("agreement-k5", "nq-agreement")),
    "qa (TriviaQA)": (RunSpec("local.yaml", "trivia", shipped=True), RunSpec("agreement-k5", "trivia-agreement")),
    "summarization (CNN/DM)": (RunSpec("local.yaml", "cnn_dailymail", shipped=True),),
    "translation (manga ja-en)": (RunSpec("local.yaml", "translation", "translation-calibration", shipped=True),),
    "math (GSM-symbolic)": (
        RunSpec("greedy P(T)", "math-greedy-test", "math-greedy-calibration", shipped=True),
        RunSpec("k=5 vote", "math-test", "math-calibration"),
    ),
}


def _load(spec: RunSpec, prices: str) -> tuple[EvalRun, EvalRun | None]:
    def priced(name: str) -> EvalRun:
        run = load_run(RESULTS / name)
        if prices == "recorded":
            return run
        return reprice_run(run, load_price_table(prices, run.n_tiers), config=None)

    return priced(spec.test), priced(spec.calibration) if spec.calibration else None


def _task_run(spec: RunSpec, prices: str) -> tuple[TaskRun, str]:
    test, cal = _load(spec, prices)
    if cal is not None:
        held = {r.id for r in cal.records}
        return TaskRun(spec.label, cal.records, [r for r in test.records if r.id not in held]), (
            f"{spec.calibration} / {spec.test}"
        )
    c, t, how = split_records(test)
    return TaskRun(spec.label, c, t), f"{spec.test} ({how})"


def _row(r: CandidateResult) -> dict[str, Any]:
    d = dataclasses.asdict(r)
    d["candidate"] = {**dataclasses.asdict(r.candidate), "label": r.candidate.label}
    return d


def _task(name: str, specs: Sequence[RunSpec], prices: str) -> dict[str, Any]:
    loaded = [_task_run(s, prices) for s in specs]
    metric = str(load_run(RESULTS / specs[0].test).report.get("quality_metric", "quality"))
    runs = [r for r, _ in loaded]
    choice = choose_task_cascade(runs)
    shipped = next((s for s in specs if s.shipped), None)
    rows = {"chosen": evaluate(choice.chosen, runs), "strong": evaluate(Candidate(runs[0].label, "strong"), runs)}
    rows["cheap"] = evaluate(Candidate(runs[0].label, "cheap"), runs)
    if shipped is not None:
        try:
            rows["global"] = evaluate(Candidate(shipped.label, "cascade", GLOBAL[0], GLOBAL[1]), runs)
        except (CalibrationError, ValueError) as exc:
            print(f"{name}: global config not replayable ({exc})", file=sys.stderr)
    return {
        "task": name,
        "metric": metric,
        "prices": prices,
        "splits": [how for _, how in loaded],
        "rule": choice.rule,
        "chosen": choice.chosen.label,
        "calibration": [_row(r) for r in choice.results],
        "test": {k: _row(v) for k, v in rows.items()},
    }


def _available(specs: Sequence[RunSpec]) -> bool:
    names = [n for s in specs for n in (s.test, s.calibration) if n]
    return all((RESULTS / n / "examples.jsonl").is_file() for n in names)


def markdown(rep: dict[str, Any]) -> str:
    lines = [
        "# Per-task cascades chosen on the calibration split, reported on the test split",
        "",
        f"Command: `{rep['command']}`. Rule: {rep['rule']}. Ratios are against the strong tier alone "
        "(1.5B, greedy) on the same test examples; `global` is today's single config "
        "(`configs/local.yaml`: fitted confidence @ 0.5) applied to the task.",
        "",
    ]
    for prices in rep["prices"]:
        table = rep["tables"][prices]
        lines += [
            f"## Prices: {prices} ({table['source']}; cheap/strong price ratio {table['ratio']:.2f})",
            "",
            "| task | metric | chosen (on calibration) | quality: chosen / strong / global / cheap | cost: chosen / "
            "global | latency: chosen / global | escalation: chosen / global | AUROC chosen | n test |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for t in table["tasks"]:
            te = t["test"]
            g = te.get("global")

            def f(x: float | None, d: int = 3) -> str:
                return "n/a" if x is None or x != x else f"{x:.{d}f}"

            lines.append(
                f"| {t['task']} | {t['metric']} | {t['chosen']} | {f(te['chosen']['quality'])} / "
                f"{f(te['strong']['quality'])} / {f(g['quality'] if g else None)} / {f(te['cheap']['quality'])} | "
                f"{f(te['chosen']['cost_ratio'], 2)} / {f(g['cost_ratio'] if g else None, 2)} | "
                f"{f(te['chosen']['latency_ratio'], 2)} / {f(g['latency_ratio'] if g else None, 2)} | "
                f"{f(te['chosen']['escalation'], 2)} / {f(g['escalation'] if g else None, 2)} | "
                f"{f(te['chosen']['auroc'])} | {te['chosen']['n']} |"
            )
        lines.append("")
    flips = rep.get("flips") or []
    lines += ["## What changes with the price table", ""]
    lines += [f"- {x}" for x in flips] or ["- the same cascade is chosen for every task at every price table"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prices", default=",".join(PRICES), help="comma-separated price tables (presets or files)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    prices = [p.strip() for p in args.prices.split(",") if p.strip()]
    tables: dict[str, Any] = {}
    for p in prices:
        tasks = []
        source, ratio = "", float("nan")
        for name, specs in TASKS.items():
            if not _available(specs):
                print(f"skipping {name}: its runs are not all recorded", file=sys.stderr)
                continue
            tasks.append(_task(name, specs, p))
            if not source:
                first = load_run(RESULTS / specs[0].test)
                table: PriceTable = run_prices(first) if p == "recorded" else load_price_table(p, first.n_tiers)
                source, ratio = table.source, table.ratio
        tables[p] = {"source": source, "ratio": ratio, "tasks": tasks}
    flips = []
    base = {t["task"]: t["chosen"] for t in tables[prices[0]]["tasks"]}
    for p in prices[1:]:
        for t in tables[p]["tasks"]:
            if base.get(t["task"]) != t["chosen"]:
                flips.append(f"{t['task']}: {base.get(t['task'])} at {prices[0]} -> {t['chosen']} at {p}")
    custom = "" if args.prices == ",".join(PRICES) else f" --prices {args.prices}"
    rep = {
        "command": "python benchmarks/task_frontiers.py" + custom,
        "rule": Rule().describe(),
        "prices": prices,
        "tables": tables,
        "flips": flips,
    }
    write_report(Path(args.out), rep, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
