"""Re-derive a recorded run's scores and report with the current code, without a model call.

A run's ``examples.jsonl`` holds every tier's outputs; the signals scored on
them, the answer quality and every figure of its report are functions of
those outputs and of the code. After a change to the tier step, a signal or a
metric, :func:`rescore_run` recomputes them (every signal that needs no model
call: agreement under local scorers, token probabilities, fitted confidence,
random) and rewrites the run's files, so the committed figures are those of
the code that ships. Signals that need a model call (the LLM-judge NLI) keep
their recorded scores.

    semcascade rescore eval/results/halueval_qa
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semcascade.config import CascadeConfig, load_config
from semcascade.errors import CalibrationError
from semcascade.evaluation.collect import score_signals, signal_specs
from semcascade.evaluation.datasets import Example, load_dataset
from semcascade.evaluation.prompts import get_template, scoring_inputs
from semcascade.evaluation.quality import get_task_metrics
from semcascade.evaluation.records import load_run
from semcascade.evaluation.replay import ExampleRecord
from semcascade.scoring.signals import agreement_signal_for, get_signal

__all__ = ["RescoreResult", "offline_signals", "rescore_run", "run_config"]

#: signals whose scores need a model call: kept as recorded
MODEL_SIGNALS = ("nli", "nli+embedding")


@dataclass(frozen=True)
class RescoreResult:
    path: Path
    n: int
    signals: tuple[str, ...]
    #: per signal: examples whose first-tier score or answer changed
    changed: dict[str, int]


def run_config(report: dict[str, Any], root: Path | None = None) -> CascadeConfig:
    """The config a run was made with, fitted to its task as the harness fits it."""
    from semcascade.evaluation.harness import _task_config

    name = str(report.get("config") or "configs/local.yaml")
    base = Path(root or Path.cwd())
    candidates = [base / name, Path(name)]
    if name == "configs/local.yaml":
        candidates.append(Path(__file__).resolve().parents[1] / "configs" / "local.yaml")
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise CalibrationError(f"the run's config {name!r} is not found; run from the repository root")
    return _task_config(load_config(path), str(report["task"]))


def offline_signals(records: list[ExampleRecord]) -> list[str]:
    """The signals recorded in ``records`` that can be recomputed without a model call, in dependency order."""
    seen = sorted({s for r in records for t in r.tiers for s in t.scores})
    order = [s for s in seen if s not in MODEL_SIGNALS and get_signal(s).kind == "black-box"]
    order += [s for s in seen if s not in MODEL_SIGNALS and s not in order]
    return order


def _examples(report: dict[str, Any], ids: set[str]) -> dict[str, Example]:
    rows = load_dataset(str(report["dataset"]), None, int(report.get("seed", 0)))
    by_id = {str(e.id): e for e in rows if str(e.id) in ids}
    missing = ids - set(by_id)
    if missing:
        raise CalibrationError(f"{len(missing)} example ids of the run are not in the dataset (e.g. {min(missing)})")
    return by_id


def rescore_run(
    path: str | os.PathLike[str],
    *,
    write: bool = True,
    command: str | None = None,
    root: str | os.PathLike[str] | None = None,
    add_signals: Sequence[str] = (),
) -> RescoreResult:
    """Recompute the offline signals, the answer quality and the report of the run in ``path``.

    ``add_signals``: offline signals the run did not record, scored now too (e.g. ``confidence``, to
    replay the shipped config's fitted confidence on a run made before it was recorded).
    """
    from semcascade.evaluation.harness import build_report, write_outputs

    run = load_run(path)
    report = run.report
    if not report.get("task") or not report.get("dataset"):
        raise CalibrationError(f"{run.path}: report.json does not name the task and dataset; re-run `semcascade eval`")
    cfg = run_config(report, Path(root) if root is not None else None)
    task = str(report["task"])
    records = run.records
    examples = _examples(report, {r.id for r in records})
    template = get_template(task)
    metrics = get_task_metrics(task)
    for rec in records:
        refs = examples[rec.id].references
        for t in rec.tiers:
            t.sample_quality = [metrics.score(s, refs) for s in t.samples]
            t.greedy_quality = metrics.score(t.greedy or "", refs)
    inputs = {r.id: scoring_inputs(template, examples[r.id]) for r in records}
    signals = offline_signals(records)
    for name in add_signals:
        if name in MODEL_SIGNALS:
            raise CalibrationError(f"signal {name!r} needs model calls; re-run `semcascade eval --signals {name}`")
        get_signal(name)  # an unknown name is a ConfigError naming the known ones
        if name not in signals:
            signals.append(name)
    before = {s: [(r.tiers[0].scores.get(s), r.tiers[0].consensus.get(s)) for r in records] for s in signals}
    timing = [[(dict(t.scoring_s), dict(t.scoring_cost)) for t in r.tiers] for r in records]
    asyncio.run(
        score_signals(
            records,
            {i: q for i, (_, q, _) in inputs.items()},
            signal_specs(cfg, signals),
            cfg.equivalence,
            seed=int(report.get("seed", 0)),
            progress=False,
            prompts={i: p for i, (_, _, p) in inputs.items()},
            aggregation=cfg.aggregation,
        )
    )
    for rec, tiers in zip(records, timing, strict=True):  # the paid run's scoring times and costs stand
        for t, (secs, cost) in zip(rec.tiers, tiers, strict=True):
            t.scoring_s.update({k: v for k, v in secs.items()})
            t.scoring_cost.update({k: v for k, v in cost.items()})
    changed = {
        s: sum(
            a != (r.tiers[0].scores.get(s), r.tiers[0].consensus.get(s))
            for a, r in zip(before[s], records, strict=True)
        )
        for s in signals
    }
    if write:
        ordered = [examples[r.id] for r in records]
        names = [
            s for s in report.get("signal_quality", {}) if s in {x for r in records for t in r.tiers for x in t.scores}
        ]
        rep = build_report(
            records,
            ordered,
            cfg,
            dataset=str(report["dataset"]),
            seed=int(report.get("seed", 0)),
            signals=names or signals,
        )
        rep.config = str(report.get("config") or "configs/local.yaml")
        rep.split = str(report.get("split") or "all")
        rep.agreement_signal = agreement_signal_for(cfg.scorer.name)
        rep.command = report.get("command")
        rep.cache_stats = dict(report.get("cache_stats") or {})
        rep.elapsed_s = float(report.get("elapsed_s") or 0.0)
        for system, metrics_ in (report.get("corpus_metrics") or {}).items():
            rate = metrics_.get("hallucination_rate") if isinstance(metrics_, dict) else None
            if rate is not None and "hallucination_rate" not in rep.corpus_metrics.get(system, {}):
                # judged by the NLI judge on the original run's answers: not recomputable offline
                rep.corpus_metrics.setdefault(system, {})["hallucination_rate (original run)"] = float(rate)
        write_outputs(rep, records, ordered, run.path)
        extra = json.loads((run.path / "report.json").read_text())
        extra["rescored"] = {"command": command or f"semcascade rescore {run.path}", "signals": signals}
        (run.path / "report.json").write_text(json.dumps(extra, indent=1, default=float))
    return RescoreResult(run.path, len(records), tuple(signals), changed)
