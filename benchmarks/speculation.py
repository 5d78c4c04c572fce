"""Speculative escalation against the sequential cascade and the strong tier alone, at matched quality.

The upstream is the loopback fault server (real HTTP, the native OpenAI-compatible provider) with a
provider-like latency (``semcascade.testing.fault_server.ProviderLatency``): a lognormal time to
first token (a heavy tail) plus a time per token, different for the cheap and the strong model,
drawn per request from the request itself so the same request takes the same time in every system.
Its answers are replayed from a committed run (``eval/results/halueval_qa-calibration-naive``: the
cheap tier's 5 recorded samples, sample j for the request with seed j, and the strong tier's recorded
answer), and the cascade decides on them with the run's own config (embedding agreement, equivalence
0.8, threshold 0.8), so its accept/escalate decisions, and its quality, are the run's; the benchmark
checks that every decision matches the recorded one.

Systems: the sequential cascade, the speculative cascade (``speculate: disagree`` on the cheap tier:
the strong tier starts as soon as two of the cheap samples that came back disagree; and
``{when: disagree, after_s: ...}``), and the strong tier alone. Reported: p50/p95 end-to-end latency of
all and of escalated requests, the cost relative to the sequential cascade, and what speculation
did (used / wasted / cancelled). Cost of a speculative call cut in flight is unknown (the provider
may bill what it generated): it is shown as 0 (billed as reported) and as its full completed cost
(the strong-alone run's cost of the same request: the pessimistic case).

    nice -n 10 python benchmarks/speculation.py     # -> benchmarks/results/speculation.{json,md}
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _report import machine, write_report

from semcascade import Cascade, CascadeResult
from semcascade.aggregation import pair_indices
from semcascade.config import load_config
from semcascade.evaluation.records import load_run
from semcascade.scoring._registry import create_scorer
from semcascade.scoring.base import PairJudgement
from semcascade.testing import FaultServer
from semcascade.testing.fault_server import ProviderLatency

ROOT = Path(__file__).resolve().parents[1]
RUN = "halueval_qa-calibration-naive"
CONFIG = ROOT / "eval" / "configs" / "naive-agreement.yaml"
KEY_ENV = "SEMCASCADE_BENCH_KEY"
#: (median time to first token s, its lognormal sigma, s per output token): a small and a large hosted model
CHEAP = (0.35, 0.5, 0.012)
STRONG = (0.60, 0.7, 0.030)


class LookupScorer:
    """The embedding scorer's judgements of the run's sample pairs, computed once before the timed runs.

    The machine running this is shared (a long model eval on its 2 cores): scoring there takes
    seconds, not the milliseconds it takes on a free CPU, and would swamp the latency being compared.
    The decisions are the embedding scorer's all the same (a pair it has not seen is judged live).
    """

    name = "embedding"
    kind = "similarity"

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.table: dict[tuple[str, str], PairJudgement] = {}
        self.misses = 0

    async def fill(self, groups: Sequence[Sequence[str]]) -> None:
        pairs = [(g[a], g[b]) for g in groups for a, b in pair_indices(len(g))]
        for (a, b), j in zip(pairs, await self.inner.judge("", pairs), strict=True):
            self.table[(a, b)] = j
            self.table[(b, a)] = PairJudgement(j.backward, j.forward, j.contradiction)

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        todo = [p for p in pairs if p not in self.table and p[0] != p[1]]
        if todo:
            self.misses += len(todo)
            for p, j in zip(todo, await self.inner.judge(question, todo), strict=True):
                self.table[p] = j
        return [self.table.get(p) or PairJudgement(1.0, 1.0, 0.0) for p in pairs]


class ReplayServer(FaultServer):
    """The fault server answering with a committed run's samples: the prompt is the example id."""

    def __init__(self, samples: Mapping[str, tuple[list[str], str]], **kw: Any) -> None:
        super().__init__(**kw)
        self.samples = samples

    def _texts(self, body: dict[str, Any], model: str, count: int) -> list[str]:
        example = str(body["messages"][-1]["content"])
        cheap, strong = self.samples[example]
        if model.endswith("strong"):
            return [strong] * count
        seed = int(body.get("seed") or 0)
        return [cheap[(seed + i) % len(cheap)] for i in range(count)]


def _config(base_url: str, speculate: Any, *, strong_only: bool = False) -> dict[str, Any]:
    cfg = load_config(CONFIG).model_dump(mode="json", exclude_none=True)
    cfg.pop("local_server", None)
    common = {"api_base": base_url, "api_key_env": KEY_ENV, "max_concurrency": 256, "native_n": False,
              "logprobs": False, "retry": {"max_attempts": 1}, "timeout": 60.0}  # fmt: skip
    cheap, strong = cfg["tiers"]
    cheap.update(common, model="openai/cheap", seed=0, speculate=speculate)
    strong.update(common, model="openai/strong")
    for t in (cheap, strong):
        t.pop("parameters", None)
    cfg["tiers"] = [strong] if strong_only else [cheap, strong]
    if speculate is None:
        cheap.pop("speculate", None)
    return cfg


async def _run_system(
    cfg: dict[str, Any], ids: Sequence[str], concurrency: int, scorer: LookupScorer
) -> list[tuple[CascadeResult, float]]:
    async with Cascade(cfg, scorer=scorer) as cascade:  # type: ignore[arg-type]
        await asyncio.to_thread(cascade.prepare)
        await cascade.generate(ids[0])  # warm: the scorer's model loaded, the client connected
        sem = asyncio.Semaphore(concurrency)
        out: list[tuple[CascadeResult, float] | None] = [None] * len(ids)

        async def one(i: int) -> None:
            async with sem:
                t0 = time.perf_counter()
                r = await cascade.generate(ids[i])
                out[i] = (r, time.perf_counter() - t0)

        await asyncio.gather(*(one(i) for i in range(len(ids))))
    return [x for x in out if x is not None]


def _pct(xs: Sequence[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def _summary(
    name: str,
    runs: list[tuple[CascadeResult, float]],
    escalated: Sequence[bool],
    strong_cost: Sequence[float],
    seq_cost: float | None,
) -> dict[str, Any]:
    lat = [s for _, s in runs]
    esc = [s for (_, s), e in zip(runs, escalated, strict=True) if e]
    cost = sum(r.cost for r, _ in runs)
    cut = sum(c for (r, _), c in zip(runs, strong_cost, strict=True) if r.speculated == "cancelled")
    outcomes = [r.speculated or "none" for r, _ in runs]
    return {
        "system": name,
        "n": len(runs),
        "p50_all_s": _pct(lat, 50),
        "p95_all_s": _pct(lat, 95),
        "p50_escalated_s": _pct(esc, 50),
        "p95_escalated_s": _pct(esc, 95),
        "cost": cost,
        "cost_if_cut_calls_billed_in_full": cost + cut,
        "charged_to_budget": cost + sum(t.charged_cost - t.cost for r, _ in runs for t in r.speculation),
        "cost_vs_sequential": None if seq_cost is None else cost / seq_cost,
        "cost_vs_sequential_cut_billed": None if seq_cost is None else (cost + cut) / seq_cost,
        "speculation": {k: outcomes.count(k) for k in ("used", "wasted", "cancelled", "refused", "none")},
        #: on escalated requests: how long the cheap tier took, and how far into it the speculation started
        "p50_first_tier_escalated_s": _pct([r.trace[0].latency_s for (r, _), e in zip(runs, escalated, strict=True)
                                            if e and len(r.trace) > 1], 50),
        "p50_started_after_s": _pct([r.speculation[0].started_after_s for (r, _), e in zip(runs, escalated, strict=True)
                                     if e and r.speculation], 50),
    }  # fmt: skip


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault(KEY_ENV, "bench-dummy-key")
    run = load_run(ROOT / "eval" / "results" / RUN)
    records = run.records[: args.n]
    threshold = load_config(CONFIG).tiers[0].threshold
    samples = {r.id: (list(r.tiers[0].raw_samples), r.tiers[1].raw_samples[0]) for r in records}
    recorded = [bool((r.tiers[0].scores.get("embedding") or 0.0) < threshold) for r in records]
    latency = ProviderLatency(by_model={"cheap": CHEAP, "strong": STRONG}, seed=args.seed)
    ids = [r.id for r in records]
    scorer = LookupScorer(create_scorer("embedding", backend="onnx"))
    await scorer.fill([r.tiers[0].samples for r in records])
    with ReplayServer(samples, latency=latency) as server:
        url, after = server.base_url, {"when": "disagree", "after_s": args.after_s}
        systems = [
            ("strong tier alone", _config(url, None, strong_only=True)),
            ("sequential cascade", _config(url, None)),
            ("speculative: disagree", _config(url, {"when": "disagree"})),
            (f"speculative: disagree or after {args.after_s}s", _config(url, after)),
        ]
        results: dict[str, list[tuple[CascadeResult, float]]] = {}
        for name, cfg in systems:
            t0 = time.perf_counter()
            results[name] = await _run_system(cfg, ids, args.concurrency, scorer)
            print(f"{name}: {time.perf_counter() - t0:.1f}s", flush=True)
    seq = results["sequential cascade"]
    live_escalated = [r.escalated for r, _ in seq]
    strong_cost = [r.cost for r, _ in results["strong tier alone"]]
    rows = []
    for name, runs in results.items():
        decided = [r.escalated for r, _ in runs] if name != "strong tier alone" else live_escalated
        rows.append(_summary(name, runs, live_escalated, strong_cost, None if name == "strong tier alone" else 1.0))
        rows[-1]["decisions_match_sequential"] = decided == live_escalated
        rows[-1]["answers_match_sequential"] = name == "strong tier alone" or [r.text for r, _ in runs] == [
            r.text for r, _ in seq
        ]
    seq_cost = rows[1]["cost"]
    for row in rows[1:]:
        row["cost_vs_sequential"] = row["cost"] / seq_cost
        row["cost_vs_sequential_cut_billed"] = row["cost_if_cut_calls_billed_in_full"] / seq_cost
    strong_p95 = rows[0]["p95_all_s"]
    for row in rows:
        row["p95_escalated_vs_strong_p95"] = (row["p95_escalated_s"] or row["p95_all_s"]) / strong_p95
    quality = {
        name: float(
            np.mean(
                [
                    (rec.tiers[1].sample_quality[0] if r.escalated or name == "strong tier alone" else
                     rec.tiers[0].sample_quality[r.trace[0].representative or 0])
                    for (r, _), rec in zip(runs, records, strict=True)
                ]
            )
        )
        for name, runs in results.items()
    }  # fmt: skip
    return {
        "run": RUN,
        "config": str(CONFIG.relative_to(ROOT)),
        "n": len(records),
        "concurrency": args.concurrency,
        "latency_model": {
            "cheap": CHEAP,
            "strong": STRONG,
            "seed": args.seed,
            "form": "ttft_median * exp(sigma * N(0,1)) + per_token * completion tokens",
        },
        "escalated": sum(live_escalated),
        "scorer_misses": scorer.misses,
        "decisions_match_recorded": sum(a == b for a, b in zip(live_escalated, recorded, strict=True)),
        "quality": quality,
        "systems": rows,
        "command": "nice -n 10 python benchmarks/speculation.py"
        + (f" --n {args.n}" if args.n != 300 else "")
        + (f" --concurrency {args.concurrency}" if args.concurrency != 3 else ""),
        "machine": machine(),
    }


def _f(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def markdown(rep: dict[str, Any]) -> str:
    lines = [
        f"# Speculative escalation: {rep['run']} replayed, {rep['n']} requests, {rep['concurrency']} concurrent",
        "",
        f"Command: `{rep['command']}`. Decisions: {rep['escalated']} of {rep['n']} escalated; live decisions match "
        f"the recorded ones on {rep['decisions_match_recorded']}/{rep['n']}. Latency model (s): cheap "
        f"{rep['latency_model']['cheap']}, strong {rep['latency_model']['strong']} "
        "(median TTFT, lognormal sigma, per token).",
        "",
        "| system | quality | p50 all | p95 all | p50 escalated | p95 escalated | p95 esc / strong p95 "
        "| cost / sequential | ... cut calls billed in full | used / wasted / cancelled / refused "
        "| escalated: p50 cheap tier | ... p50 started after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rep["systems"]:
        s = r["speculation"]
        spec = (
            f"{s['used']} / {s['wasted']} / {s['cancelled']} / {s['refused']}" if "speculative" in r["system"] else "-"
        )
        lines.append(
            f"| {r['system']} | {rep['quality'][r['system']]:.3f} | {_f(r['p50_all_s'])} | {_f(r['p95_all_s'])} "
            f"| {_f(r['p50_escalated_s'])} | {_f(r['p95_escalated_s'])} | {_f(r['p95_escalated_vs_strong_p95'])} "
            f"| {_f(r['cost_vs_sequential'], '.3f')} | {_f(r['cost_vs_sequential_cut_billed'], '.3f')} | {spec} "
            f"| {_f(r['p50_first_tier_escalated_s'])} | {_f(r['p50_started_after_s'])} |"
        )
    lines += [
        "",
        "Escalated = the requests the sequential cascade escalated (the same requests in every system; for the "
        "strong tier alone, its latency on them). Cost is what the provider reported; a speculative call "
        "cancelled in flight is billed 0 there, and in full (its completed cost) in the next column.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=3)
    ap.add_argument("--after-s", type=float, default=1.0, help="the latest start of the after_s variant")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speculation"))
    args = ap.parse_args()
    write_report(args.out, asyncio.run(main_async(args)), markdown)


if __name__ == "__main__":
    main()
