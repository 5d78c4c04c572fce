"""Shared state: per-request overhead of the Redis store vs SQLite (the default), and the answer cache.

Against the loopback fault server (no faults, no latency, so the store's share is visible): the same
sequential requests through a Cascade whose run budget, tier limits, response cache and answer cache
(lookups miss: every prompt is new) live in SQLite vs in a real redis-server started here; p50/p95
latency per request and the Redis/SQLite ratio. Then a stream with repeated prompts (Zipf over a
pool) with the answer cache on: hit rate and the upstream cost saved vs the same stream without it.

    python benchmarks/shared_state.py [--requests 300] [--stream 400]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import command, machine, write_report

from semcascade.cascade import Cascade
from semcascade.testing import FaultServer
from semcascade.testing.redis_server import RedisServer

KEY_ENV = "SEMCASCADE_FAULT_KEY"


def _config(server: FaultServer, state: dict[str, Any]) -> dict[str, Any]:
    tier = {
        "name": "cheap", "model": "openai/cheap-model", "api_base": server.base_url, "api_key_env": KEY_ENV, "k": 2,
        "native_n": False, "max_tokens": 8, "threshold": 0.5, "timeout": 5.0, "max_concurrency": 4,
        "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
    }  # fmt: skip
    return {"tiers": [tier], "scorer": {"name": "lexical"}, "budget": {"max_cost_per_run": 100.0}, "state": state}


async def _latencies(cfg: dict[str, Any], prompts: list[str]) -> list[float]:
    out = []
    async with Cascade(cfg) as cascade:
        await cascade.generate("warm-up " + prompts[0])
        for p in prompts:
            t0 = time.perf_counter()
            await cascade.generate(p)
            out.append(time.perf_counter() - t0)
    return out


def _pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


async def _stream(cfg: dict[str, Any], prompts: list[str]) -> dict[str, Any]:
    hits = 0
    cost = 0.0
    saved = 0.0
    async with Cascade(cfg) as cascade:
        for p in prompts:
            r = await cascade.generate(p)
            hits += r.answer_cache_hit
            cost += r.cost
            saved += r.cached_cost or 0.0
    return {"requests": len(prompts), "hits": hits, "hit_rate": hits / len(prompts), "cost": cost, "saved": saved}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--stream", type=int, default=400)
    ap.add_argument("--pool", type=int, default=100)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "shared_state"))
    args = ap.parse_args()
    os.environ.setdefault(KEY_ENV, "bench-key")
    rng = random.Random(0)
    with FaultServer(seed=0) as server, RedisServer() as redis, tempfile.TemporaryDirectory() as tmp:
        server.latency_s = 0.0
        ac = {"enabled": True}
        states = {
            "sqlite": {"name": "sqlite", "response_cache": True, "answer_cache": ac, "options": {"path": tmp}},
            "redis": {"name": "redis", "response_cache": True, "answer_cache": ac, "options": {"url": redis.url}},
        }
        lat: dict[str, list[float]] = {}
        for round_ in range(2):  # interleaved twice, so drift on a shared machine hits both alike
            for name, state in states.items():
                prompts = [f"{name} round {round_} question {i}?" for i in range(args.requests // 2)]
                lat.setdefault(name, []).extend(asyncio.run(_latencies(_config(server, state), prompts)))
        overhead = {
            name: {
                "requests": len(xs),
                "p50_ms": 1000 * statistics.median(xs),
                "p95_ms": 1000 * _pct(xs, 0.95),
                "mean_ms": 1000 * statistics.fmean(xs),
            }
            for name, xs in lat.items()
        }
        ratio = {k: overhead["redis"][k] / overhead["sqlite"][k] for k in ("p50_ms", "p95_ms")}
        pool = [f"repeated question {i}?" for i in range(args.pool)]
        weights = [1 / (i + 1) for i in range(args.pool)]
        stream = rng.choices(pool, weights=weights, k=args.stream)
        on = asyncio.run(_stream(_config(server, {**states["redis"], "namespace": "stream-on"}), stream))
        off_state = {"name": "redis", "namespace": "stream-off", "options": {"url": redis.url}}
        off = asyncio.run(_stream(_config(server, off_state), stream))
    report = {
        "command": command("shared_state.py"),
        "machine": machine(),
        "overhead": overhead,
        "redis_over_sqlite": ratio,
        "answer_cache": {
            "stream": args.stream,
            "pool": args.pool,
            "distinct": len(set(stream)),
            "with_cache": on,
            "without_cache": off,
            "cost_saved_share": 1 - on["cost"] / off["cost"] if off["cost"] else None,
        },
    }
    write_report(args.out, report, _markdown)


def _markdown(r: dict[str, Any]) -> str:
    o, a = r["overhead"], r["answer_cache"]
    lines = [
        "# Shared state: Redis vs SQLite per request, and the answer cache",
        "",
        f"`{r['command']}` on {r.get('machine', 'a machine not recorded')} (loopback fault server, no latency; a "
        "real redis-server started by the script)",
        "",
        "| store | requests | p50 ms | p95 ms | mean ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, x in o.items():
        lines.append(f"| {name} | {x['requests']} | {x['p50_ms']:.2f} | {x['p95_ms']:.2f} | {x['mean_ms']:.2f} |")
    rr = r["redis_over_sqlite"]
    lines += [
        "",
        f"Redis / SQLite: p50 x{rr['p50_ms']:.2f}, p95 x{rr['p95_ms']:.2f}.",
        "",
        f"Answer cache on a stream of {a['stream']} prompts (Zipf over {a['pool']}, {a['distinct']} distinct): "
        f"hit rate {a['with_cache']['hit_rate']:.1%}, upstream cost {a['with_cache']['cost']:.6f} vs "
        f"{a['without_cache']['cost']:.6f} without it ({a['cost_saved_share']:.1%} saved).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
