"""Load an evaluation run written by the harness back into replayable records.

``write_outputs`` stores one JSON line per example in ``examples.jsonl`` and the
run's settings in ``report.json``; :func:`load_run` reads both, so any replay
(calibrated thresholds, another signal, a model pool) needs no model calls.

    run = load_run("eval/results/nq")
    run.records[0].tiers[0].scores["embedding"], run.tier_names, run.shipped_signal
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semcascade.errors import CalibrationError
from semcascade.evaluation.replay import ExampleRecord, TierRecord

__all__ = ["EvalRun", "examples_file", "load_records", "load_run"]

_ALONE = " alone (greedy)"


@dataclass
class EvalRun:
    """One harness run: its per-example records and its ``report.json`` (empty if absent)."""

    path: Path
    records: list[ExampleRecord]
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tiers(self) -> int:
        return len(self.records[0].tiers)

    @property
    def signals(self) -> list[str]:
        """Signals with at least one score on a non-final tier (a signal that scored nothing is absent)."""
        return sorted({k for rec in self.records for t in rec.tiers[:-1] for k, v in t.scores.items() if v is not None})

    @property
    def shipped_signal(self) -> str | None:
        sig = self.report.get("shipped_signal")
        return sig if isinstance(sig, str) else None

    @property
    def split(self) -> str:
        sp = self.report.get("split", "all")
        return sp if isinstance(sp, str) else "all"

    def _names(self) -> list[str] | None:
        rows = self.report.get("systems") or []
        names = [
            str(r["system"])[: -len(_ALONE)]
            for r in rows
            if isinstance(r, dict) and str(r.get("system", "")).endswith(_ALONE)
        ]
        return names if len(names) == self.n_tiers else None

    @property
    def names_known(self) -> bool:
        """Whether ``report.json`` names the tiers."""
        return self._names() is not None

    @property
    def tier_names(self) -> list[str]:
        """Tier names from the report's systems table (``"NAME alone (greedy)"`` rows), else ``tier0``, ..."""
        return self._names() or [f"tier{i}" for i in range(self.n_tiers)]


def examples_file(path: str | os.PathLike[str], *, error: type[Exception] = CalibrationError) -> Path:
    """``path``'s ``examples.jsonl`` (``path`` may be the results folder or the file itself); ``error`` when absent."""
    p = Path(path)
    if p.is_dir():
        p = p / "examples.jsonl"
    if not p.is_file():
        raise error(
            f"{p}: no such results file; pass a folder written by `semcascade eval --out DIR` "
            "(it holds examples.jsonl) or the examples.jsonl file itself"
        )
    return p


def _num(x: Any, default: float) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else default


def _opt_int(x: Any) -> int | None:
    return int(x) if isinstance(x, int) and not isinstance(x, bool) else None


def _tier(d: dict[str, Any], where: str) -> TierRecord:
    try:
        samples = [str(s) for s in d["samples"]]
        quality = [float(q) for q in d["sample_quality"]]
        cost, latency = float(d["cost"]), float(d["latency_s"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(
            f"{where}: tier record lacks {exc}; re-run `semcascade eval` to write a complete examples.jsonl"
        ) from None
    if len(quality) != len(samples) or not samples:
        raise CalibrationError(f"{where}: sample_quality does not match samples; re-run `semcascade eval`")
    scores = {str(k): (None if v is None else float(v)) for k, v in (d.get("scores") or {}).items()}
    gq = d.get("greedy_quality")

    def per_sample(key: str) -> list[Any]:
        v = d.get(key)
        return list(v) if isinstance(v, list) and len(v) == len(samples) else []

    def opt_floats(key: str) -> list[float | None]:
        # absent in older files: unknown, never silently zero
        return [None if x is None else float(x) for x in per_sample(key)] or [None] * len(samples)

    gi = d.get("greedy_index")
    return TierRecord(
        samples=samples,
        mean_logprobs=opt_floats("mean_logprobs"),
        min_logprobs=opt_floats("min_logprobs"),
        first_logprobs=opt_floats("first_logprobs"),
        sample_tokens=[int(x) for x in per_sample("sample_tokens")],
        raw_samples=[str(x) for x in per_sample("raw_samples")],
        greedy_index=int(gi) if isinstance(gi, int) else None,
        largest_cluster={str(k): int(v) for k, v in (d.get("largest_cluster") or {}).items()},
        cost=cost,
        latency_s=latency,
        prompt_tokens=int(d.get("prompt_tokens") or 0),
        completion_tokens=int(d.get("completion_tokens") or 0),
        greedy=d.get("greedy"),
        greedy_cost=_num(d.get("greedy_cost"), math.nan),
        greedy_latency_s=_num(d.get("greedy_latency_s"), math.nan),
        scores=scores,
        consensus={str(k): int(v) for k, v in (d.get("consensus") or {}).items()},
        scoring_s={str(k): float(v) for k, v in (d.get("scoring_s") or {}).items()},
        scoring_cost={str(k): float(v) for k, v in (d.get("scoring_cost") or {}).items()},
        sample_quality=quality,
        greedy_quality=None if gq is None else float(gq),
        k=int(d["k"]) if isinstance(d.get("k"), int) else None,
        error=str(d["error"]) if d.get("error") is not None else None,
        greedy_error=str(d["greedy_error"]) if d.get("greedy_error") is not None else None,
        vote=[int(x) for x in d["vote"]] if isinstance(d.get("vote"), list) and len(d["vote"]) == 2 else None,
        greedy_prompt_tokens=_opt_int(d.get("greedy_prompt_tokens")),
        greedy_completion_tokens=_opt_int(d.get("greedy_completion_tokens")),
    )


def load_records(path: str | os.PathLike[str]) -> list[ExampleRecord]:
    """The examples of a results folder (or an ``examples.jsonl`` file) as :class:`ExampleRecord` s.

    Fields that older files lack (token log-probabilities, the greedy
    answer's own cost and latency) load as ``None`` / NaN, never as zero.
    """
    p = examples_file(path)
    records: list[ExampleRecord] = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{p}:{lineno}"
            try:
                row = json.loads(line)
                rid, tiers = str(row["id"]), row["tiers"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise CalibrationError(
                    f"{where}: not an example record; pass an examples.jsonl written by the harness"
                ) from None
            records.append(ExampleRecord(rid, [_tier(t, where) for t in tiers]))
    if not records:
        raise CalibrationError(f"{p}: holds no examples; run `semcascade eval` with --n >= 1 first")
    if len({len(r.tiers) for r in records}) != 1 or len(records[0].tiers) < 1:
        raise CalibrationError(f"{p}: examples have different numbers of tiers; use the output of a single run")
    if len({r.id for r in records}) != len(records):
        raise CalibrationError(f"{p}: repeats example ids; use the output of a single run")
    return records


def load_run(path: str | os.PathLike[str]) -> EvalRun:
    """A results folder (or its ``examples.jsonl``) with its ``report.json`` when present."""
    p = examples_file(path)
    records = load_records(p)
    report: dict[str, Any] = {}
    rj = p.parent / "report.json"
    if rj.is_file():
        try:
            loaded = json.loads(rj.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise CalibrationError(f"{rj}: is not valid JSON; re-run `semcascade eval` or delete it") from None
        if isinstance(loaded, dict):
            report = loaded
    return EvalRun(path=p.parent, records=records, report=report)
