"""Throughput of 1, 2 and 3 ``semcascade serve`` replicas behind one shared Redis store.

Every replica is a real ``semcascade serve`` process on loopback with ``state: redis`` (one real
redis-server started here): the run ledger, the tiers' global concurrency slots and the answer cache
(on; every prompt is new, so every lookup misses) live in Redis. The upstream is the fault server with
a simulated latency (``--latency`` +- ``--jitter`` seconds a request, no faults), so a replica spends
most of a request waiting, as in front of a real provider. The same load for each replica count:
``--requests`` prompts from ``--clients`` concurrent ``openai.AsyncOpenAI`` clients spread
round-robin over the replicas. Replica counts are interleaved over ``--rounds`` rounds (drift on a
shared machine hits all alike); ratios are against 1 replica.

    nice -n 10 python benchmarks/replicas.py [--requests 600] [--clients 64] [--latency 0.2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import openai
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import command, machine, write_report

from semcascade.testing import FaultServer
from semcascade.testing.redis_server import RedisServer
from semcascade.testing.serve_process import ServeProcess

KEY_ENV = "SEMCASCADE_FAULT_KEY"
REPO = Path(__file__).resolve().parents[1]


def _config(server: FaultServer, redis: RedisServer, namespace: str) -> dict[str, Any]:
    def tier(name: str, k: int) -> dict[str, Any]:
        return {
            "name": name, "model": f"openai/{name}", "api_base": server.base_url, "api_key_env": KEY_ENV, "k": k,
            "native_n": True, "max_tokens": 8, "threshold": 0.6, "timeout": 10.0, "max_concurrency": 128,
            "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
        }  # fmt: skip

    state = {"name": "redis", "namespace": namespace, "options": {"url": redis.url}, "answer_cache": {"enabled": True}}
    return {
        "tiers": [tier("cheap", 3), tier("strong", 1)],
        "scorer": {"name": "lexical"},
        "budget": {"max_cost_per_run": 1000.0},
        "state": state,
        "serve": {"max_in_flight": 128, "max_queue": 512, "model_name": "bench"},
    }


async def _load(bases: list[str], prompts: list[str], clients: int) -> dict[str, Any]:
    conns = [openai.AsyncOpenAI(base_url=b, api_key="none", max_retries=0, timeout=120.0) for b in bases]
    # warm-up: one request per replica (connections, first-call paths)
    for i, c in enumerate(conns):
        await c.chat.completions.create(model="bench", messages=[{"role": "user", "content": f"warm-up {i}?"}])
    queue = list(reversed(range(len(prompts))))
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def worker(w: int) -> None:
        while queue:
            i = queue.pop()
            t0 = time.perf_counter()
            try:
                await conns[i % len(conns)].chat.completions.create(
                    model="bench", messages=[{"role": "user", "content": prompts[i]}]
                )
                latencies.append(time.perf_counter() - t0)
            except openai.APIStatusError as exc:
                code = exc.body.get("code") if isinstance(exc.body, dict) else None
                errors[f"{exc.status_code} {code or type(exc).__name__}"] += 1
            except openai.OpenAIError as exc:  # no HTTP answer: a timeout or a dropped connection
                errors[type(exc).__name__] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(clients)))
    wall = time.perf_counter() - t0
    for c in conns:
        await c.close()
    lat = sorted(latencies)
    return {
        "requests": len(prompts), "ok": len(lat), "errors": sum(errors.values()), "error_kinds": dict(errors),
        "wall_s": wall,
        "throughput_rps": len(lat) / wall, "p50_ms": 1000 * statistics.median(lat),
        "p95_ms": 1000 * lat[min(len(lat) - 1, int(0.95 * len(lat)))],
    }  # fmt: skip


def _run(n: int, server: FaultServer, redis: RedisServer, tmp: Path, tag: str, args: argparse.Namespace) -> Any:
    path = tmp / f"bench-{tag}.yaml"
    path.write_text(yaml.safe_dump(_config(server, redis, f"bench-{tag}")))
    reps = [ServeProcess([path], pythonpath=str(REPO)) for _ in range(n)]
    try:
        for r in reps:
            r.wait()
        prompts = [f"{tag} question {i}: what is the capital of France?" for i in range(args.requests)]
        out = asyncio.run(_load([r.base_url for r in reps], prompts, args.clients))
    finally:
        for r in reps:
            r.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.2, help="upstream latency a request, seconds")
    ap.add_argument("--jitter", type=float, default=0.05, help="+- uniform jitter of the latency, seconds")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--replicas", default="1,2,3")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "replicas"))
    args = ap.parse_args()
    os.environ.setdefault(KEY_ENV, "bench-key")
    counts = [int(x) for x in args.replicas.split(",")]
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    with (
        FaultServer(seed=0, base_latency_s=args.latency, jitter_s=args.jitter) as server,
        RedisServer() as redis,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for rnd in range(args.rounds):
            for n in counts:
                r = _run(n, server, redis, Path(tmp), f"r{rnd}-n{n}", args)
                print(f"round {rnd}, {n} replica(s): {r['throughput_rps']:.1f} req/s, errors {r['errors']}", flush=True)
                runs[n].append(r)
        upstream = {"requests": server.stats.requests, "peak_in_flight": server.stats.peak_in_flight}
    summary = {
        n: {
            "throughput_rps": statistics.fmean(r["throughput_rps"] for r in rs),
            "p50_ms": statistics.fmean(r["p50_ms"] for r in rs),
            "p95_ms": statistics.fmean(r["p95_ms"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
            "error_kinds": dict(sum((Counter(r.get("error_kinds", {})) for r in rs), Counter())),
        }
        for n, rs in runs.items()
    }
    base = summary[counts[0]]["throughput_rps"]
    for s in summary.values():
        s["ratio_vs_1"] = s["throughput_rps"] / base
    report = {
        "command": command("replicas.py"),
        "machine": machine(),
        "args": {"requests": args.requests, "clients": args.clients, "latency": args.latency, "jitter": args.jitter},
        "upstream": upstream,
        "runs": {str(n): rs for n, rs in runs.items()},
        "summary": {str(n): s for n, s in summary.items()},
    }
    write_report(args.out, report, _markdown)


def _kinds(s: dict[str, Any]) -> str:
    kinds = s.get("error_kinds")
    if not s["errors"] or kinds is None:
        return str(s["errors"])
    return f"{s['errors']} (" + ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())) + ")"


def _reading(r: dict[str, Any]) -> str:
    """What the figures say, from the run's own numbers."""
    one = r["summary"][next(iter(r["summary"]))]
    a = r["args"]
    waiting = a["clients"] / a["latency"]  # what a replica that only waited for the upstream could serve
    return (
        f"Reading: with {a['clients']} clients and a {a['latency']:g} s upstream, a replica that only waited for "
        f"the upstream could serve up to {waiting:.0f} req/s; one replica served {one['throughput_rps']:.1f} "
        f"({one['throughput_rps'] / waiting:.2f} of that), so here a replica is bound by its CPU, not by the "
        f"upstream, and extra replicas add throughput while cores are free ({r['machine'].split(',')[0]}; the "
        "client, the fault server and redis-server run on the same cores). What the rows show is that the shared "
        "Redis store (one global ledger, global tier slots, one answer cache) does not cap several replicas at one "
        "replica's throughput. Errors: requests that got no answer, by HTTP status and error code (or the "
        "client's exception)."
    )


def _markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Throughput of 1, 2, 3 `semcascade serve` replicas on one shared Redis store",
        "",
        f"`{r['command']}` on {r['machine']}.",
        "",
        "Each replica is a `semcascade serve` process with `state: redis` (run ledger, global tier slots, answer "
        "cache: all in one real redis-server); upstream is the loopback fault server answering after the simulated "
        "latency (no faults); clients are `openai.AsyncOpenAI`, spread round-robin; every count gets the same "
        "load, interleaved over the rounds (mean shown).",
        "",
        "| replicas | throughput req/s | per round | vs 1 replica | p50 ms | p95 ms | errors |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, s in r["summary"].items():
        rounds = " / ".join(f"{x['throughput_rps']:.1f}" for x in r["runs"][n])
        lines.append(
            f"| {n} | {s['throughput_rps']:.1f} | {rounds} | x{s['ratio_vs_1']:.2f} | {s['p50_ms']:.0f} "
            f"| {s['p95_ms']:.0f} | {_kinds(s)} |"
        )
    lines += [
        "",
        _reading(r),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
