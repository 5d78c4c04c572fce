"""``semcascade batch`` throughput: the local engine vs Ray with 1 node vs Ray with 2 nodes, same input.

``run_batch`` (what ``semcascade batch`` runs) over the same ``--n`` prompts, ``--concurrency`` requests in
flight in all, against the fault server with a simulated latency (``--latency`` +- ``--jitter`` s a request,
no faults), state on one real redis-server (a fresh namespace per run: nothing is cached from an earlier
run). The Ray cluster is real and local (``RayCluster``: ``ray start --head`` on loopback, 1 CPU a node);
its second node joins after the 1-node run. Wall time is the batch's own (from reading IN to the last line
of OUT: Ray actor start-up included, cluster start-up not).

    python benchmarks/batch_engines.py [--n 300] [--concurrency 16] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import command, machine, write_report

from semcascade.batch.run import run_batch
from semcascade.testing import FaultServer
from semcascade.testing.ray_cluster import RayCluster
from semcascade.testing.redis_server import RedisServer

KEY_ENV = "SEMCASCADE_FAULT_KEY"


def _config(server: FaultServer, redis: RedisServer, namespace: str) -> dict[str, Any]:
    tier = {
        "name": "cheap", "model": "openai/cheap", "api_base": server.base_url, "api_key_env": KEY_ENV, "k": 2,
        "native_n": False, "max_tokens": 8, "threshold": 0.5, "timeout": 10.0, "max_concurrency": 64,
        "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
    }  # fmt: skip
    return {
        "tiers": [tier],
        "scorer": {"name": "lexical"},
        "budget": {"max_cost_per_run": 1000.0},
        "state": {"name": "redis", "namespace": namespace, "options": {"url": redis.url}},
    }


def _batch(
    engine: Literal["local", "ray"], cfg: dict[str, Any], inp: Path, out: Path, args: argparse.Namespace,
    address: str | None,
) -> dict[str, Any]:  # fmt: skip
    summary = run_batch(
        inp, out, config=cfg, engine=engine, concurrency=args.concurrency, ray_address=address, progress=False
    )
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert sorted(ids) == sorted(f"r{i}" for i in range(args.n)), "an id is missing or twice"
    d = summary.as_dict()
    return {k: d[k] for k in ("written", "failed", "cost", "wall_s", "throughput_rps")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--jitter", type=float, default=0.05)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "batch_engines"))
    args = ap.parse_args()
    os.environ.setdefault(KEY_ENV, "bench-key")
    runs: dict[str, dict[str, Any]] = {}
    with (
        FaultServer(seed=0, base_latency_s=args.latency, jitter_s=args.jitter) as server,
        RedisServer() as redis,
        tempfile.TemporaryDirectory() as tmp_s,
    ):
        tmp = Path(tmp_s)
        inp = tmp / "in.jsonl"
        inp.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"question {i}?"}) + "\n" for i in range(args.n)))
        runs["local"] = _batch("local", _config(server, redis, "local"), inp, tmp / "local.jsonl", args, None)
        print("local", runs["local"], flush=True)
        import ray

        cluster = RayCluster(nodes=1, cpus=1, object_store_mb=80).start(timeout_s=900)  # slow on a loaded machine
        try:
            for nodes in (1, 2):
                if nodes == 2:
                    ray.shutdown()
                    cluster.add_node(timeout_s=900)
                name = f"ray-{nodes}-node"
                cfg = _config(server, redis, name)
                runs[name] = _batch("ray", cfg, inp, tmp / f"{name}.jsonl", args, cluster.address)
                print(name, runs[name], flush=True)
        finally:
            ray.shutdown()
            cluster.stop()
    base = runs["local"]["throughput_rps"]
    for r in runs.values():
        r["ratio_vs_local"] = r["throughput_rps"] / base
    report = {
        "command": command("batch_engines.py"),
        "machine": machine(),
        "runs": runs,
    }
    write_report(args.out, report, _markdown)


def _markdown(r: dict[str, Any]) -> str:
    lines = [
        "# `semcascade batch`: local engine vs Ray (1 node, 2 nodes) on the same input",
        "",
        f"`{r['command']}` on {r['machine']}.",
        "",
        "Upstream: the loopback fault server answering after the simulated latency (no faults); one tier, k=2; "
        "state on one real redis-server, a fresh namespace per run (nothing cached in advance). Ray nodes are "
        "`ray start` processes on this machine, 1 CPU each (one actor each); the same total concurrency for all.",
        "",
        "| engine | lines | failed | wall s | throughput req/s | vs local |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, x in r["runs"].items():
        lines.append(
            f"| {name} | {x['written']} | {x['failed']} | {x['wall_s']:.1f} | {x['throughput_rps']:.1f} "
            f"| x{x['ratio_vs_local']:.2f} |"
        )
    lines += [
        "",
        "Read with care: both Ray nodes, the driver, the fault server and redis-server share this machine's 2 "
        "cores (and other jobs), so a second node adds a process, not hardware. Wall time includes starting the "
        "Ray actors (each builds its Cascade) but not the cluster. Ray workers run at the niceness of `ray start` "
        "(RayCluster sets `RAY_worker_niceness=0`; Ray's default +15 would put the actors behind the local engine).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
