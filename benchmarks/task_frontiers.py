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
from semcascade.evaluation.datasets import load_dataset
from semcascade.evaluation.prices import PriceTable, load_price_table, reprice_records, reprice_run, run_prices
from semcascade.evaluation.prompts import build_messages
from semcascade.evaluation.records import EvalRun, load_run
from semcascade.evaluation.replay import ExampleRecord, Outcome, cascade_outcomes, tier_alone
from semcascade.messages import question_of

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"
OUT = ROOT / "benchmarks" / "results" / "task_frontiers"
PRICES = ("recorded", "gpt-4o-mini/gpt-4o", "claude-haiku/claude-sonnet")
#: today's single global config: configs/local.yaml's signal and threshold
GLOBAL = ("confidence", (0.5,))


@dataclass(frozen=True)
class RunSpec:
    """A run of a task: folders holding both splits, or calibration folders and test folders (pooled)."""

    label: str
    test: tuple[str, ...]
    calibration: tuple[str, ...] = ()
    #: made with configs/local.yaml: today's global config can be replayed on it
    shipped: bool = False


@dataclass(frozen=True)
class TaskSpec:
    """A task of the embedded default: its config task name and its runs (the first run's tiers alone
    are the baselines; its report names the quality metric)."""

    task: str
    runs: tuple[RunSpec, ...]


TASKS: dict[str, TaskSpec] = {
    "rc (HaluEval)": TaskSpec(
        "rc", (RunSpec("local.yaml", ("halueval_qa",), ("halueval_qa-calibration",), shipped=True),)
    ),
    "qa (NQ-open + TriviaQA)": TaskSpec(
        "qa",
        (
            RunSpec("local.yaml", ("nq", "trivia"), shipped=True),
            RunSpec("agreement-k5", ("nq-agreement", "trivia-agreement")),
        ),
    ),
    "summarization (CNN/DM)": TaskSpec("summarization", (RunSpec("local.yaml", ("cnn_dailymail",), shipped=True),)),
    "translation (manga ja-en)": TaskSpec(
        "translation", (RunSpec("local.yaml", ("translation",), ("translation-calibration",), shipped=True),)
    ),
    "math (GSM-symbolic)": TaskSpec(
        "math",
        (
            RunSpec("greedy P(T)", ("math-greedy-test",), ("math-greedy-calibration",), shipped=True),
            RunSpec("k=5 vote", ("math-vote-test",), ("math-vote-calibration",)),
        ),
    ),
}


def _priced(name: str, prices: str) -> EvalRun:
    run = load_run(RESULTS / name)
    if prices == "recorded":
        return run
    return reprice_run(run, load_price_table(prices, run.n_tiers), config=None)


def _task_run(spec: RunSpec, prices: str) -> tuple[TaskRun, str]:
    cal: list[ExampleRecord] = []
    test: list[ExampleRecord] = []
    hows = []
    for i, name in enumerate(spec.test):
        run = _priced(name, prices)
        if spec.calibration:
            c = _priced(spec.calibration[i], prices).records
            held = {r.id for r in c}
            cal += c
            test += [r for r in run.records if r.id not in held]
            hows.append(f"{spec.calibration[i]} / {name}")
        else:
            c, t, how = split_records(run)
            cal += c
            test += t
            hows.append(f"{name} ({how})")
    return TaskRun(spec.label, cal, test), "; ".join(hows)


def _row(r: CandidateResult) -> dict[str, Any]:
    d = dataclasses.asdict(r)
    d["candidate"] = {**dataclasses.asdict(r.candidate), "label": r.candidate.label}
    return d


def _task(name: str, spec: TaskSpec, prices: str) -> dict[str, Any]:
    specs = spec.runs
    loaded = [_task_run(s, prices) for s in specs]
    metric = str(load_run(RESULTS / specs[0].test[0]).report.get("quality_metric", "quality"))
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
        "config_task": spec.task,
        "metric": metric,
        "prices": prices,
        "splits": [how for _, how in loaded],
        "rule": choice.rule,
        "chosen": choice.chosen.label,
        "calibration": [_row(r) for r in choice.results],
        "test": {k: _row(v) for k, v in rows.items()},
    }


def _available(spec: TaskSpec) -> bool:
    names = [n for s in spec.runs for n in (*s.test, *s.calibration)]
    return all((RESULTS / n / "examples.jsonl").is_file() for n in names)


def _apply(c: dict[str, Any], rec: ExampleRecord) -> Outcome:
    """A task's chosen candidate (as recorded in the report) applied to one example's records.

    A cascade whose signal this example's run did not record escalates (as a tier without a score does)."""
    k = len(rec.tiers)
    if c["kind"] == "cheap":
        return tier_alone([rec], 0, mode="greedy")[0]
    if c["kind"] == "strong":
        return tier_alone([rec], k - 1, mode="greedy")[0]
    sig = c["signal"] if rec.tiers[0].scores.get(c["signal"]) is not None else "__unscored__"
    th = list(c["thresholds"]) if sig != "__unscored__" else [1.0]
    return cascade_outcomes([rec], sig, th)[0]


def _prompts(records: Sequence[tuple[str, ExampleRecord]]) -> dict[str, str]:
    """Example id -> the last user turn its task's template renders (what a user of the task sends)."""
    by_dataset: dict[str, set[str]] = {}
    for dataset, rec in records:
        by_dataset.setdefault(dataset, set()).add(rec.id)
    out = {}
    for dataset, ids in by_dataset.items():
        for ex in load_dataset(dataset):
            if str(ex.id) in ids:
                out[str(ex.id)] = question_of(build_messages(ex))
    return out


def mixed_stream(tables: dict[str, Any], classifier: str) -> dict[str, Any]:
    """Every task's test examples as one stream: each task's chosen cascade under oracle task labels and
    under ``task: auto`` labels, today's global config and the strong tier alone, per price table."""
    from semcascade.task_classifier import TaskClassifier

    first = next(iter(tables.values()))["tasks"]
    stream: list[tuple[str, str, str, ExampleRecord]] = []  # (config task, dataset, run label, record)
    for t in first:
        spec = next(s for s in TASKS.values() if s.task == t["config_task"])
        chosen_run = t["test"]["chosen"]["candidate"]["run"]
        run_spec = next(r for r in spec.runs if r.label == chosen_run)
        for name in run_spec.test:
            run = load_run(RESULTS / name)
            held = set()
            if run_spec.calibration:
                held = {r.id for r in load_run(RESULTS / run_spec.calibration[run_spec.test.index(name)]).records}
                test = [r for r in run.records if r.id not in held]
            else:
                test = split_records(run)[1]
            stream += [(t["config_task"], str(run.report["dataset"]), run_spec.label, r) for r in test]
    texts = _prompts([(d, r) for _, d, _, r in stream])
    clf = TaskClassifier.load(classifier)
    labels = clf.classify([texts[r.id] for *_, r in stream])
    out: dict[str, Any] = {"classifier": classifier, "n": len(stream)}
    out["classifier_accuracy"] = sum(a == b for (a, *_), b in zip(stream, labels, strict=True)) / len(stream)
    per_price = {}
    for prices, table in tables.items():
        chosen = {t["config_task"]: t["test"]["chosen"]["candidate"] for t in table["tasks"]}
        repriced = {rec.id: rec for *_, rec in stream}
        if prices != "recorded":
            pt = load_price_table(prices, 2)
            for task, _, label, rec in stream:
                name = next(n for s in TASKS.values() if s.task == task for r in s.runs if r.label == label
                            for n in r.test)  # fmt: skip
                old = run_prices(load_run(RESULTS / name))
                repriced[rec.id] = reprice_records([rec], old, pt)[0]
        rows: dict[str, dict[str, float]] = {}
        strong_cost = sum(tier_alone([repriced[r.id]], 1, mode="greedy")[0].cost for *_, r in stream)
        systems = {
            "oracle labels": [_apply(chosen[t], repriced[r.id]) for t, _, _, r in stream],
            "task: auto": [
                _apply(chosen.get(lab, {"kind": "strong"}), repriced[r.id])
                for (*_, r), lab in zip(stream, labels, strict=True)
            ],
            "global config": [_apply(GLOBAL_CANDIDATE, repriced[r.id]) for *_, r in stream],
            "strong tier alone": [tier_alone([repriced[r.id]], 1, mode="greedy")[0] for *_, r in stream],
        }
        for sysname, outs in systems.items():
            row = {"cost_ratio": sum(o.cost for o in outs) / strong_cost}
            for task in chosen:
                qs = [o.quality for o, (t, *_) in zip(outs, stream, strict=True) if t == task and not o.failed]
                row[task] = sum(qs) / len(qs) if qs else float("nan")
            rows[sysname] = row
        per_price[prices] = rows
    out["systems"] = per_price
    return out


GLOBAL_CANDIDATE = {"kind": "cascade", "signal": GLOBAL[0], "thresholds": list(GLOBAL[1])}


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
    mixed = rep.get("mixed")
    if mixed:
        tasks = [t for t in next(iter(mixed["systems"].values()))["oracle labels"] if t != "cost_ratio"]
        lines += [
            f"## Mixed stream: every task's test examples ({mixed['n']}), per-task labels vs `task: auto`",
            "",
            f"`task: auto` labels by `{mixed['classifier']}` (accuracy {mixed['classifier_accuracy']:.3f} on this "
            "stream). A misrouted example gets the predicted task's decision rule applied to its own recorded "
            "outputs (its prompt is not re-run); a rule whose signal it did not record escalates.",
            "",
        ]
        for prices, rows in mixed["systems"].items():
            lines += [
                f"Prices {prices}:",
                "",
                "| system | cost / strong | " + " | ".join(tasks) + " |",
                "|---" * (len(tasks) + 2) + "|",
            ]
            for name, row in rows.items():
                lines.append(
                    f"| {name} | {row['cost_ratio']:.2f} | " + " | ".join(f"{row[t]:.3f}" for t in tasks) + " |"
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
    ap.add_argument("--classifier", default="builtin:tasks-v1", help="the task: auto classifier of the mixed stream")
    ap.add_argument("--no-mixed", action="store_true", help="skip the mixed stream (needs the embedder)")
    args = ap.parse_args(argv)
    prices = [p.strip() for p in args.prices.split(",") if p.strip()]
    tables: dict[str, Any] = {}
    for p in prices:
        tasks = []
        source, ratio = "", float("nan")
        for name, full in TASKS.items():
            # a run not recorded yet is no candidate; a task whose first (baseline) run is missing is skipped
            spec = TaskSpec(full.task, tuple(r for r in full.runs if _available(TaskSpec(full.task, (r,)))))
            if not spec.runs or spec.runs[0] != full.runs[0]:
                print(f"skipping {name}: its baseline run is not recorded", file=sys.stderr)
                continue
            if spec.runs != full.runs:
                print(f"{name}: without the runs not recorded yet", file=sys.stderr)
            tasks.append(_task(name, spec, p))
            if not source:
                first = load_run(RESULTS / spec.runs[0].test[0])
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
    if not args.no_mixed:
        rep["mixed"] = mixed_stream(tables, args.classifier)
    write_report(Path(args.out), rep, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
