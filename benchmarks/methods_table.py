"""Every deferral method at matched cost on the same held-out questions (offline, no model calls).

For each dataset, from recorded runs of the local tiers (0.5B -> 1.5B):

* ``eval/results/D``            the shipped config (0.5B greedy with token log-probabilities), which gives
                                P(T) (mean token probability) and the shipped fitted confidence;
* ``eval/results/D-agreement``  ``eval/configs/agreement-k5.yaml`` (0.5B draws the greedy answer plus 4
                                samples at T=0.7), which gives semantic agreement (mean embedding agreement)
                                and a combination of agreement with P(T) (a logistic model fitted here on the
                                calibration ids);
* ``benchmarks/results/strategy_memory_D.json``  the shipped cascade with and without strategy memory
                                on an ordered stream of the same dataset's questions.

Every number is on the **test** ids (``semcascade.evaluation.splits``); whatever is chosen (thresholds,
the combination's weights, the router) is chosen on the calibration ids. At each cost budget B (x the
strong tier alone on the same questions) each cascade signal gets the threshold that
``semcascade calibrate`` picks on the calibration ids for B (method 4 applied to every signal); the
router sends to the 0.5B the share of queries the calibration ids' costs allow, highest P(IK) first.
Strategy memory runs at the shipped threshold, so it has one operating point; it is shown at its own
cost beside the plain cascade on the same questions.

    .venv/bin/python benchmarks/methods_table.py --datasets nq,trivia

It reads the committed runs' ``examples.jsonl`` (ids and model outputs; the dataset text is re-read from the
local datasets by id), so it needs no model call.

Writes benchmarks/results/methods_table.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _report import write_report

from semcascade.calibration.solver import calibrate_thresholds, candidate_thresholds
from semcascade.confidence import fit_logistic
from semcascade.errors import CalibrationError
from semcascade.evaluation.fit_confidence import feature_rows
from semcascade.evaluation.metrics import auroc
from semcascade.evaluation.records import EvalRun, load_run
from semcascade.evaluation.replay import ExampleRecord, _answer, cascade_outcomes, summarize, tier_alone
from semcascade.evaluation.splits import split_of
from semcascade.routing import PIKModel, PIKRouter, train_pik

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
COMBINED = "agreement+P(T)"
COMBINED_FEATURES = ("agreement", "cluster_share", "lp_mean", "lp_min", "lp_first")


@dataclass
class Row:
    method: str
    how: str
    budget: float | None
    quality: float | None = None
    cost: float | None = None
    latency: float | None = None
    deferral: float | None = None
    n: int = 0
    note: str = ""
    #: which cheap-tier block the latency model charges first: cheap, cheap_agreement, none (strong alone)
    block: str = "cheap"
    #: strategy-memory learning calls per question (each one a strong-tier call the user waits for)
    learned_share: float = 0.0
    #: share of queries that call the 0.5B at all (routers and P(IK) skipping send the rest straight to the 1.5B)
    cheap_share: float = 1.0


@dataclass
class Baseline:
    """The strong tier alone on the test ids: what cost and latency are divided by."""

    quality: float
    cost: float
    latency: float


def _split(records: Sequence[ExampleRecord], split: str) -> list[ExampleRecord]:
    return [r for r in records if split_of(r.id) == split]


def _row_from(method: str, how: str, budget: float | None, outcomes: Sequence[Any], base: Baseline) -> Row:
    sm = summarize(outcomes, 2)
    return Row(method, how, budget, sm.quality, sm.cost / base.cost, None, sm.deferral[0], sm.n)


def modeled_latency(row: Row, blocks: dict[str, float]) -> float | None:
    """Mean latency / the 1.5B alone from same-session block timings (benchmarks/tier_latency.py): the cheap
    block on every question, the 1.5B on the deferred ones, a strategy call per learned strategy. Assumes a
    question's latency does not depend on whether it is deferred."""
    if row.quality is None or row.deferral is None:
        return None
    if row.block == "none":
        return 1.0
    return row.cheap_share * blocks[row.block] + row.deferral + row.learned_share * blocks["strategy"]


def calibrated_row(method: str, run: EvalRun, signal: str, budget: float, base: Baseline, ids: set[str]) -> Row:
    """Threshold chosen on the calibration ids for ``budget``, measured on the test ids in ``ids``."""
    cal = _split(run.records, "calibration")
    test = [r for r in run.records if r.id in ids]
    how = f"`{run.path.name}`, signal `{signal}`"
    try:
        choice = calibrate_thresholds(cal, signal, budget=budget)
    except CalibrationError as exc:
        return Row(method, how, budget, note=str(exc).split(";")[0])
    row = _row_from(method, how, budget, cascade_outcomes(test, signal, list(choice.thresholds)), base)
    row.note = f"threshold {choice.thresholds[0]:.3g}"
    return row


def fixed_row(method: str, run: EvalRun, signal: str, threshold: float, base: Baseline, ids: set[str]) -> Row:
    test = [r for r in run.records if r.id in ids]
    row = _row_from(
        method, f"`{run.path.name}`, signal `{signal}`", None, cascade_outcomes(test, signal, [threshold]), base
    )
    row.note = f"threshold {threshold:g} (as shipped)"
    return row


def add_combined_signal(folder: Path, run: EvalRun) -> None:
    """Fit agreement + P(T) on the calibration ids and score every record with it (as signal ``COMBINED``)."""
    rows = feature_rows(folder, features=COMBINED_FEATURES)
    cal = np.asarray([split_of(i) == "calibration" for i in rows.ids])
    model = fit_logistic(rows.x[cal], rows.y[cal], COMBINED_FEATURES, name="agreement+pt", version="methods-table")
    score = {i: model.score(x) for i, x in zip(rows.ids, rows.x, strict=True)}
    for rec in run.records:
        rec.tiers[0].scores[COMBINED] = score[rec.id]


@dataclass
class PIK:
    """The trained P(IK) model and its P(the 0.5B is right) for every calibration and test id (embedded once)."""

    model: PIKModel
    p: dict[str, float]

    @classmethod
    def train(cls, folder: Path, run: EvalRun, ids: set[str], seed: int) -> PIK:
        model = train_pik(folder, seed=seed)
        records = _split(run.records, "calibration") + [r for r in run.records if r.id in ids]
        p = PIKRouter(model).predict(_inputs(run, records))[:, 0]
        return cls(model, {r.id: float(x) for r, x in zip(records, p, strict=True)})

    def of(self, records: Sequence[ExampleRecord]) -> np.ndarray:
        return np.asarray([self.p[r.id] for r in records], dtype=float)


def router_row(folder: Path, run: EvalRun, budget: float, base: Baseline, ids: set[str], pik: PIK) -> Row:
    """P(IK) router: the top share of test queries by P(IK) go to the 0.5B alone, the rest to the 1.5B alone."""
    seed = pik.model.training["seed"]
    cal = _split(run.records, "calibration")
    c0 = np.mean([r.tiers[0].cost for r in cal])
    c1 = np.mean([r.tiers[-1].cost for r in cal])
    share = float(np.clip((budget - 1.0) * c1 / (c0 - c1), 0.0, 1.0))  # share * c0 + (1 - share) * c1 = budget * c1
    test = [r for r in run.records if r.id in ids]
    p = pik.of(test)
    to_cheap = np.zeros(len(test), dtype=bool)
    to_cheap[np.argsort(-p, kind="stable")[: round(share * len(test))]] = True
    cheap = tier_alone(test, 0, mode="consensus", signal="p_mean")
    strong = tier_alone(test, len(test[0].tiers) - 1, mode="consensus", signal="p_mean")
    outcomes = [c if go else s for c, s, go in zip(cheap, strong, to_cheap, strict=True)]
    row = _row_from(
        "P(IK) router", f"`{folder.name}`, trained on calibration ids (seed {seed})", budget, outcomes, base
    )
    row.deferral = 1.0 - float(to_cheap.mean())  # share sent to the strong tier
    row.cheap_share = float(to_cheap.mean())
    row.note = f"{to_cheap.mean():.0%} of queries routed to the 0.5B before any generation"
    return row


def skip_row(folder: Path, run: EvalRun, budget: float, base: Baseline, ids: set[str], pik: PIK, signal: str) -> Row:
    """P(IK) as an extra deferral signal (``RoutedCascade(mode="skip")``): the lowest-P(IK) share of queries skips
    the 0.5B and goes straight to the 1.5B, the rest run the cascade on ``signal``. The share (0, 0.1, ..., 1) and
    the threshold are chosen together on the calibration ids for ``budget``."""
    cal = _split(run.records, "calibration")
    test = [r for r in run.records if r.id in ids]
    p_cal, p_test = pik.of(cal), pik.of(test)
    last = len(cal[0].tiers) - 1

    def outcomes(records: list[ExampleRecord], p: np.ndarray, share: float, th: float) -> tuple[list[Any], float]:
        skip = np.zeros(len(records), dtype=bool)
        skip[np.argsort(p, kind="stable")[: round(share * len(records))]] = True
        casc = cascade_outcomes(records, signal, [th])
        strong = tier_alone(records, last, mode="consensus", signal=signal)
        return [s if sk else c for c, s, sk in zip(casc, strong, skip, strict=True)], float(1.0 - skip.mean())

    unit = sum(r.tiers[last].cost for r in cal)
    scores = np.asarray([r.tiers[0].scores.get(signal) for r in cal], dtype=float)
    best: tuple[tuple[float, float], float, float] | None = None
    for share in np.linspace(0.0, 1.0, 11):
        for th in candidate_thresholds(scores):
            sm = summarize(outcomes(cal, p_cal, float(share), float(th))[0], 2)
            key = (sm.quality, -sm.cost)
            if sm.cost / unit <= budget + 1e-12 and (best is None or key > best[0]):
                best = (key, float(share), float(th))
    how = f"`{folder.name}`, P(IK) + signal `{signal}`"
    name = "P(IK) skip + P(T) cascade"
    if best is None:
        return Row(name, how, budget, note="no share and threshold meet the budget on the calibration ids")
    _, share, th = best
    outs, visit = outcomes(test, p_test, share, th)
    row = _row_from(name, how, budget, outs, base)
    row.cheap_share = visit
    row.deferral = float(np.mean([o.tier == last for o in outs]))
    row.note = f"{1.0 - visit:.0%} skip the 0.5B; threshold {th:.3g}"
    return row


def test_auroc(run: EvalRun, signal: str, ids: set[str]) -> float | None:
    """AUROC of the 0.5B's ``signal`` score for "its answer is right", on the test ids."""
    recs = [r for r in run.records if r.id in ids and r.tiers[0].scores.get(signal) is not None]
    scores = [float(r.tiers[0].scores[signal] or 0.0) for r in recs]
    return auroc(scores, [_answer(r.tiers[0], signal)[0] >= 0.5 for r in recs])


def pik_auroc(run: EvalRun, pik: PIK, ids: set[str]) -> float | None:
    test = [r for r in run.records if r.id in ids]
    return auroc(pik.of(test).tolist(), [r.tiers[0].sample_quality[0] >= 0.5 for r in test])


def _block_timing(dataset: str) -> dict[str, float] | None:
    """Each block's mean latency / the 1.5B alone's, timed in one session (benchmarks/tier_latency.py)."""
    path = OUT / "tier_latency.json"
    if not path.is_file():
        return None
    for d in json.loads(path.read_text())["datasets"]:
        if d["dataset"] == dataset:
            return {str(k): float(v) for k, v in d["relative_to_strong"].items()}
    return None


def _inputs(run: EvalRun, records: Sequence[ExampleRecord]) -> list[str]:
    from semcascade.evaluation.datasets import load_dataset

    by_id = {str(e.id): e.input for e in load_dataset(str(run.report["dataset"]), None, int(run.report.get("seed", 0)))}
    return [by_id[r.id] for r in records]


def memory_rows(dataset: str, base_by_id: dict[str, tuple[float, float, float]], ids: set[str]) -> list[Row]:
    """The strategy-memory streams (``strategy_memory_DATASET*.json``: one per memory setting), restricted to the
    test ids, after the plain cascade on the same questions."""
    paths = sorted(OUT.glob(f"strategy_memory_{dataset}.json")) + sorted(OUT.glob(f"strategy_memory_{dataset}_*.json"))
    if not paths:
        return [Row("cascade + strategy memory", f"`strategy_memory_{dataset}.json`", None, note="not run")]
    out = []
    for path in paths:
        data = json.loads(path.read_text())
        ms = data["memory_settings"]
        setting = f"min_similarity {ms['min_similarity']:g}"
        if ms.get("skip_learning_above") is not None:
            setting += f", skip_learning_above {ms['skip_learning_above']:g}"
        keys = [("with_memory", f"cascade + strategy memory ({setting})")]
        if not out:
            keys.insert(0, ("plain", "cascade, same stream (no memory)"))
        for key, name in keys:
            steps = [s for s in data["steps"][key] if s["id"] in ids and s["id"] in base_by_id]
            if not steps:
                out.append(Row(name, f"`{path.name}`", None, note="no test ids in the stream"))
                continue
            bq = sum(base_by_id[s["id"]][0] for s in steps) / len(steps)
            bc = sum(base_by_id[s["id"]][1] for s in steps)
            out.append(
                Row(
                    name,
                    f"`{path.name}` ({data['n']}-question stream, its test ids)",
                    None,
                    quality=sum(s["system_quality"] for s in steps) / len(steps),
                    cost=sum(s["cost"] for s in steps) / bc,
                    deferral=sum(s["strong_called"] for s in steps) / len(steps),
                    n=len(steps),
                    learned_share=sum(s["learned"] for s in steps) / len(steps),
                    note=f"1.5B alone on these: {bq:.3f}; 0.5B accuracy "
                    f"{sum(s['cheap_quality'] for s in steps) / len(steps):.3f}; prompts with strategies "
                    f"{sum(s['injected'] > 0 for s in steps) / len(steps):.0%}",
                )
            )
    return out


def dataset_rows(name: str, budgets: Sequence[float], seed: int) -> dict[str, Any]:
    shipped_dir = ROOT / "eval" / "results" / name
    agree_dir = ROOT / "eval" / "results" / f"{name}-agreement"
    shipped = load_run(shipped_dir)
    agree = load_run(agree_dir) if (agree_dir / "examples.jsonl").is_file() else None
    ids = {r.id for r in _split(shipped.records, "test")}
    if agree is not None:
        ids &= {r.id for r in agree.records}
        add_combined_signal(agree_dir, agree)
    test = [r for r in shipped.records if r.id in ids]
    k = len(test[0].tiers)
    strong = summarize(tier_alone(test, k - 1, mode="consensus", signal="p_mean"), k)
    base = Baseline(strong.quality, strong.cost, strong.latency_mean)
    rows: list[Row] = [
        Row("1.5B alone", f"`{name}`", None, strong.quality, 1.0, None, 1.0, strong.n, block="none"),
        _row_from(
            "0.5B alone (greedy)", f"`{name}`", None, tier_alone(test, 0, mode="consensus", signal="p_mean"), base
        ),
    ]
    rows[-1].deferral = 0.0
    shipped_signal = shipped.shipped_signal or "confidence"
    pik = PIK.train(shipped_dir, shipped, ids, seed)
    rows.append(fixed_row("shipped cascade: fitted confidence", shipped, shipped_signal, 0.5, base, ids))
    for b in budgets:
        if agree is not None:
            rows.append(calibrated_row("semantic agreement (k=5, embedding)", agree, "embedding", b, base, ids))
            rows.append(
                calibrated_row(f"combined: {COMBINED} (fitted on calibration ids)", agree, COMBINED, b, base, ids)
            )
            rows[-1].block = rows[-2].block = "cheap_agreement"
        else:
            rows.append(Row("semantic agreement (k=5, embedding)", f"`{name}-agreement`", b, note="not run"))
        rows.append(calibrated_row("P(T): mean token probability", shipped, "p_mean", b, base, ids))
        rows.append(
            calibrated_row(
                "fitted confidence (shipped signal), calibrated threshold", shipped, shipped_signal, b, base, ids
            )
        )
        rows.append(router_row(shipped_dir, shipped, b, base, ids, pik))
        rows.append(skip_row(shipped_dir, shipped, b, base, ids, pik, "p_mean"))
    base_by_id = {}
    for r in test:
        t = r.tiers[-1]
        base_by_id[r.id] = (t.sample_quality[0], t.cost, t.latency_s)
    rows += memory_rows(name, base_by_id, ids)
    aurocs = {
        "P(T) mean": test_auroc(shipped, "p_mean", ids),
        "fitted confidence (shipped)": test_auroc(shipped, shipped_signal, ids),
        "P(IK) (query only)": pik_auroc(shipped, pik, ids),
    }
    if agree is not None:
        aurocs["semantic agreement (embedding, k=5)"] = test_auroc(agree, "embedding", ids)
        aurocs[COMBINED] = test_auroc(agree, COMBINED, ids)
    timing = _block_timing(name)
    for r in rows:
        r.latency = None if timing is None else modeled_latency(r, timing)
    return {
        "dataset": name,
        "n_test": len(ids),
        "strong_alone": asdict(base),
        "auroc": aurocs,
        "latency_blocks": timing,
        "cheap_right_share": float(np.mean([r.tiers[0].sample_quality[0] for r in test])),
        "rows": [asdict(r) for r in rows],
    }


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Every deferral method at matched cost (test ids; choices made on calibration ids)",
        "",
        f"Command: `{report['command']}`",
        "",
        "Cost and latency are relative to the 1.5B alone on the same questions; deferral is the share of "
        "questions that reach the 1.5B (for the router: the share sent to it). A budget row is the best "
        "operating point `semcascade calibrate` finds on the calibration ids at that budget, measured on the "
        "test ids. Latency is modeled from one session's timing of each block on the same test questions "
        "(`benchmarks/results/tier_latency.md`): the cheap block on every question, the 1.5B on the deferred "
        "ones, one strategy call per learned strategy (recorded runs replay latencies from different sessions, "
        "which do not compare).",
        "",
    ]
    for d in report["datasets"]:
        lines += [
            f"## {d['dataset']}: {d['n_test']} test questions (1.5B alone {d['strong_alone']['quality']:.3f}; "
            f"0.5B right on {d['cheap_right_share']:.1%})",
            "",
            "AUROC for 'the 0.5B's answer is right' on these questions: "
            + ", ".join(f"{k} {_f(v)}" for k, v in d["auroc"].items())
            + ".",
            "",
            "| budget | method | accuracy | cost | latency | deferral | from | note |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in d["rows"]:
            b = "-" if r["budget"] is None else f"{r['budget']:g}"
            lines.append(
                f"| {b} | {r['method']} | {_f(r['quality'])} | {_f(r['cost'], '.2f')} | {_f(r['latency'], '.2f')} | "
                f"{_f(r['deferral'], '.2f')} | {r['how']} | {r['note']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="nq,trivia")
    ap.add_argument("--budgets", default="0.5,1.0,1.5", help="cost budgets, x the strong tier alone")
    ap.add_argument("--seed", type=int, default=0, help="router training seed")
    ap.add_argument("--out", default=str(OUT / "methods_table"))
    args = ap.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    report = {
        "command": "python benchmarks/methods_table.py " + " ".join(sys.argv[1:]),
        "budgets": budgets,
        "datasets": [dataset_rows(d.strip(), budgets, args.seed) for d in args.datasets.split(",")],
    }
    write_report(Path(args.out), report, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
