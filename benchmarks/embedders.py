"""MiniLM (int8 ONNX) vs nomic-embed-text-v1.5 (f16 GGUF, llama-server) as the embedding-agreement scorer.

Offline: rescoring the recorded k>1 samples of eval/results/* (no model generation). For every run whose
first tier recorded k>1 samples, each backend scores the first tier's samples through the project's own
signal code (:func:`semcascade.evaluation.collect.score_signals`, the code the live tier step runs), and
the AUROC of the ``embedding`` agreement for the first tier's consensus answer being right (the harness's
``signal_quality`` label) is reported on the run's calibration and test splits
(:func:`semcascade.calibration.run.split_records`). Also per backend: the wall time and throughput of the
bulk rescoring (distinct texts/s) and the latency of one tier's judgement (k=5 answers, 10 pairs).

Runs with one sample per tier (summaries, translations, the k=1 RC/QA runs) have no agreement to score.

    nice -n 10 .venv/bin/python benchmarks/embedders.py
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BACKENDS: dict[str, dict[str, Any]] = {
    "minilm": {"backend": "onnx"},
    "nomic": {"backend": "llama", "model": "nomic-embed-text-v1.5"},
}
RUNS = ("halueval_qa-calibration-naive", "trivia-agreement", "nq-agreement")
OUT = ROOT / "benchmarks" / "results" / "embedders"


def _labels(records: list[Any], task: str) -> tuple[list[float], list[bool]]:
    """(first-tier embedding agreement, consensus answer right) as the harness's signal_quality defines it."""
    xs, ys = [], []
    for r in records:
        t = r.tiers[0]
        s = t.scores.get("embedding")
        if s is None:
            continue
        q = t.sample_quality[t.consensus.get("embedding", 0)]
        label = q >= 0.5 if task in ("qa", "rc", "math") else q >= (r.tiers[-1].greedy_quality or 0.0)
        xs.append(float(s))
        ys.append(bool(label))
    return xs, ys


def _inputs(report: dict[str, Any], records: list[Any]) -> dict[str, tuple[str, str, str]]:
    from semcascade.evaluation.datasets import load_dataset
    from semcascade.evaluation.prompts import get_template, scoring_inputs

    ids = {r.id for r in records}
    rows = {str(e.id): e for e in load_dataset(str(report["dataset"]), None, int(report.get("seed", 0)))}
    template = get_template(str(report["task"]))
    return {i: scoring_inputs(template, rows[i]) for i in ids}


def _latency(scorer: Any, records: list[Any], inputs: dict[str, tuple[str, str, str]], n: int) -> dict[str, float]:
    """Median/p90 wall ms of one tier's judge() call on the first ``n`` records with k=5 distinct-ish samples."""
    from semcascade.aggregation import pair_indices

    took = []
    for r in records[:n]:
        samples = r.tiers[0].samples
        pairs = [(samples[i], samples[j]) for i, j in pair_indices(len(samples))]
        t0 = time.perf_counter()
        asyncio.run(scorer.judge(inputs[r.id][1], pairs))
        took.append((time.perf_counter() - t0) * 1e3)
    took.sort()
    return {
        "calls": len(took),
        "pairs_per_call": len(pair_indices(len(records[0].tiers[0].samples))),
        "median_ms": statistics.median(took),
        "p90_ms": took[max(0, -(-9 * len(took) // 10) - 1)],
    }


def measure_run(name: str, latency_calls: int, limit: int | None = None) -> dict[str, Any]:
    from semcascade.calibration.run import split_records
    from semcascade.config import ScorerConfig
    from semcascade.evaluation.collect import score_signals, signal_specs
    from semcascade.evaluation.metrics import auroc
    from semcascade.evaluation.records import load_run
    from semcascade.evaluation.rescore import run_config
    from semcascade.scoring._registry import create_scorer

    run = load_run(ROOT / "eval" / "results" / name)
    report = run.report
    task = str(report["task"])
    base_cfg = run_config(report, ROOT)
    if limit is not None:  # a smoke test of the script
        run.records[:] = run.records[:limit]
    inputs = _inputs(report, run.records)
    texts = {s for r in run.records for s in r.tiers[0].samples}
    out: dict[str, Any] = {"task": task, "split": run.split, "n": len(run.records), "distinct_texts": len(texts)}
    out["recorded_minilm_auroc"] = _recorded(name)
    for backend, options in BACKENDS.items():
        cfg = base_cfg.model_copy(update={"scorer": ScorerConfig(name="embedding", options=options)})
        records = copy.deepcopy(run.records)
        specs = signal_specs(cfg, ["embedding"])
        t0 = time.perf_counter()
        asyncio.run(
            score_signals(
                records,
                {i: q for i, (_, q, _) in inputs.items()},
                specs,
                cfg.equivalence,
                seed=int(report.get("seed", 0)),
                progress=False,
                prompts={i: p for i, (_, _, p) in inputs.items()},
                aggregation=cfg.aggregation,
            )
        )
        wall = time.perf_counter() - t0
        by_id = {r.id: r for r in records}
        cal, test, how = split_records(run, seed=int(report.get("seed", 0)))
        row: dict[str, Any] = {"scoring_wall_s": wall, "texts_per_s": len(texts) / wall, "split_how": how}
        for split, part in (("all", records), ("calibration", [by_id[r.id] for r in cal]),
                            ("test", [by_id[r.id] for r in test])):  # fmt: skip
            xs, ys = _labels(part, task)
            row[split] = {"n": len(xs), "positive_rate": sum(ys) / len(ys) if ys else None, "auroc": auroc(xs, ys)}
        # A fresh scorer (no pair cache in front of it; the encoder and its server are shared).
        row["latency"] = _latency(create_scorer("embedding", **options), records, inputs, latency_calls)
        out[backend] = row
        print(f"{name} {backend}: {row}", flush=True)
    return out


def _recorded(name: str) -> float | None:
    """The MiniLM embedding AUROC the run's committed report.json holds (the rescoring must reproduce it)."""
    report = json.loads((ROOT / "eval" / "results" / name / "report.json").read_text())
    value = report.get("signal_quality", {}).get("embedding", {}).get("auroc")
    return None if value is None else float(value)


def _f(x: Any, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def markdown(rep: dict[str, Any]) -> str:
    lines = [
        "# Embedding agreement: MiniLM (int8 ONNX) vs nomic-embed-text-v1.5 (f16 GGUF, llama-server)",
        "",
        f"`{rep['command']}` — {rep['machine']}. Offline rescoring of the recorded k=5 first-tier samples;",
        "AUROC of the first tier's mean pairwise embedding agreement for its consensus answer being right.",
        "",
        "| run | task | split | n | positives | AUROC MiniLM | AUROC nomic | nomic − MiniLM |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rep["runs"].items():
        for split in ("all", "calibration", "test"):
            a, b = r["minilm"][split], r["nomic"][split]
            if not a["n"]:
                lines.append(f"| {name} | {r['task']} | {split} | 0 | - | - | - | - |")
                continue
            d = None if a["auroc"] is None or b["auroc"] is None else b["auroc"] - a["auroc"]
            lines.append(
                f"| {name} | {r['task']} | {split} | {a['n']} | {_f(a['positive_rate'], 3)} | {_f(a['auroc'])} | "
                f"{_f(b['auroc'])} | {'-' if d is None else f'{d:+.3f}'} |"
            )
    lines += ["", "Splits: " + "; ".join(f"{name}: {r['minilm']['split_how']}" for name, r in rep["runs"].items())]
    lines += ["", "MiniLM's rescored AUROC on all examples vs the one in the run's committed report.json: "]
    lines[-1] += "; ".join(
        f"{name} {_f(r['minilm']['all']['auroc'])} vs {_f(r.get('recorded_minilm_auroc'))}"
        for name, r in rep["runs"].items()
    )
    lines += [
        "",
        "| run | distinct texts | MiniLM texts/s | nomic texts/s | throughput ratio (nomic/MiniLM) | "
        "MiniLM ms/judge (10 pairs) | nomic ms/judge | latency ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rep["runs"].items():
        a, b = r["minilm"], r["nomic"]
        lines.append(
            f"| {name} | {r['distinct_texts']} | {_f(a['texts_per_s'], 1)} | {_f(b['texts_per_s'], 1)} | "
            f"{_f(b['texts_per_s'] / a['texts_per_s'], 3)} | {_f(a['latency']['median_ms'], 1)} | "
            f"{_f(b['latency']['median_ms'], 1)} | {_f(b['latency']['median_ms'] / a['latency']['median_ms'], 1)} |"
        )
    lines += ["", *(f"- {n}" for n in rep["notes"]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks._report import write_report

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="*", default=list(RUNS))
    ap.add_argument("--latency-calls", type=int, default=20)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument(
        "--update",
        action="store_true",
        help="keep the other runs already in the record (re-read at each write), measure only --runs",
    )
    ap.add_argument("--render", action="store_true", help="only re-render the markdown from the JSON record")
    ap.add_argument("--limit", type=int, default=None, help="first N records of each run only (smoke test)")
    args = ap.parse_args(argv)
    rep: dict[str, Any] = {
        "command": "nice -n 10 .venv/bin/python benchmarks/embedders.py",
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, shared with a running model eval",
        "runs": {},
        "notes": [
            "Only runs whose first tier recorded k>1 samples can be rescored: halueval_qa-calibration-naive (RC, "
            "calibration split only: no k>1 test run exists), trivia-agreement and nq-agreement (closed-book QA, "
            "both splits). The summarisation (cnn_dailymail) and translation runs recorded one sample per tier, "
            "so no agreement can be measured on them without new generation runs (not started: the CPU is taken "
            "by a long eval).",
            "Both backends use the runs' scorer settings (question_mode ignore, bidirectional equivalence at 0.8, "
            "mean pairwise aggregation); nomic texts get the symmetric 'clustering: ' prefix. The consensus answer "
            "(and so the label) follows each backend's own clusters, as it would live.",
            "nomic runs in its own llama-server --embedding (1 thread, niced, on 2 cores shared with other jobs); "
            "MiniLM is onnxruntime in-process. Throughput and latency are under that contention.",
        ],
    }
    if args.render:
        rep = json.loads(Path(args.out).with_suffix(".json").read_text())
        for name, r in rep["runs"].items():
            r.setdefault("recorded_minilm_auroc", _recorded(name))
        write_report(args.out, rep, markdown)
        return 0
    mine: dict[str, Any] = {}
    for name in args.runs:
        mine[name] = measure_run(name, args.latency_calls, args.limit)
        kept: dict[str, Any] = {}
        record = Path(args.out).with_suffix(".json")
        if args.update and record.is_file():
            kept = json.loads(record.read_text())["runs"]
        rep["runs"] = {n: mine.get(n, kept.get(n)) for n in RUNS if n in mine or n in kept}
        write_report(args.out, rep, markdown)  # after each run: a partial record survives an interruption
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
