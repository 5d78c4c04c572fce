"""Latency added by `semcascade serve` over in-process ``Cascade.generate``; the litellm proxy as peer.

    nice -n 10 python benchmarks/serve_overhead.py [--n1 300] [--n64 2000] [--litellm /path/to/venv/bin/litellm]

Zero-latency upstream: the fault server (no faults) in its own process. One tier, k=1, so every
request is one upstream call for each contender (the cascade logic itself is in the baseline):

- ``inproc``: ``await cascade.generate(messages)`` in this process (the baseline);
- ``direct``: an httpx POST straight to the upstream (what one HTTP hop costs on this machine);
- ``serve``: ``semcascade serve`` in its own process, called with httpx (non-streaming);
- ``litellm-proxy``: ``litellm --config`` forwarding to the same upstream, if a ``litellm`` proxy
  executable is given (installed into a throwaway venv, not the project's lock).

At concurrency 1 (``--n1`` sequential requests) and 64 (``--n64`` requests, 64 in flight): p50/p95
per-request latency and throughput; "added" = contender p50/p95 minus the in-process baseline's.
Writes benchmarks/results/serve_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "SEMCASCADE_FAULT_KEY"
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "What is the capital of France?"}]
BODY: dict[str, Any] = {"model": "bench", "messages": MESSAGES}

UPSTREAM = """
import sys
from semcascade.testing.fault_server import FaultServer
s = FaultServer(seed=1).start()
print(s.port, flush=True)
sys.stdin.read()
"""


def _config(upstream: str) -> dict[str, Any]:
    return {
        "tiers": [
            {
                "name": "only",
                "model": "openai/bench-model",
                "api_base": upstream,
                "api_key_env": KEY_ENV,
                "k": 1,
                "temperature": 0.0,
                "max_tokens": 8,
                "max_concurrency": 128,
                "input_cost_per_token": 1e-7,
                "output_cost_per_token": 1e-7,
            }
        ],
        "scorer": {"name": "lexical"},
        "serve": {"model_name": "bench", "auth": "off", "max_in_flight": 128},
    }


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _measure(call: Callable[[], Awaitable[None]], n: int, concurrency: int) -> dict[str, float]:
    for _ in range(min(50, n)):  # warm-up: connections, caches
        await call()
    lat: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            t = time.perf_counter()
            await call()
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    wall = time.perf_counter() - t0
    return {
        "n": n,
        "p50_ms": statistics.median(lat) * 1000,
        "p95_ms": _pct(lat, 0.95) * 1000,
        "throughput_rps": n / wall,
    }


def _wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _start_serve(config: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SEMCASCADE_LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "semcascade.cli", "serve", "--config", str(config), "--port", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _start_litellm(exe: str, upstream: str, port: int, tmp: Path) -> subprocess.Popen[bytes]:
    cfg = {
        "model_list": [
            {
                "model_name": "bench",
                "litellm_params": {"model": "openai/bench-model", "api_base": upstream, "api_key": "dummy"},
            }
        ],
        "litellm_settings": {"telemetry": False, "drop_params": True},
    }
    path = tmp / "litellm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    cmd = [exe, "--config", str(path), "--port", str(port), "--host", "127.0.0.1", "--num_workers", "1"]
    log = (tmp / "litellm.log").open("wb")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run(args: argparse.Namespace, upstream: str, tmp: Path) -> dict[str, Any]:
    from semcascade.cascade import Cascade

    cfg = _config(upstream)
    path = tmp / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out: dict[str, Any] = {}
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)

    cascade = Cascade(cfg)

    async def inproc() -> None:
        await cascade.generate(MESSAGES)

    async with httpx.AsyncClient(limits=limits, timeout=600) as http:  # a busy machine is slow, not broken

        async def direct() -> None:
            r = await http.post(upstream + "/chat/completions", json={**BODY, "model": "bench-model", "max_tokens": 8})
            r.raise_for_status()

        contenders: dict[str, Callable[[], Awaitable[None]]] = {"inproc": inproc, "direct": direct}
        procs: list[subprocess.Popen[bytes]] = []
        try:
            port = _free_port()
            procs.append(_start_serve(path, port))
            _wait_http(f"http://127.0.0.1:{port}/ready")
            serve_url = f"http://127.0.0.1:{port}/v1/chat/completions"

            async def served() -> None:
                r = await http.post(serve_url, json=BODY)
                r.raise_for_status()

            contenders["serve"] = served
            if args.litellm:
                lport = _free_port()
                procs.append(_start_litellm(args.litellm, upstream, lport, tmp))
                _wait_http(f"http://127.0.0.1:{lport}/health/liveliness", timeout=600)  # ~40 s on a busy machine
                lurl = f"http://127.0.0.1:{lport}/v1/chat/completions"

                async def proxied() -> None:
                    r = await http.post(lurl, json=BODY, headers={"Authorization": "Bearer sk-none"})
                    r.raise_for_status()

                contenders["litellm-proxy"] = proxied
            for c in (1, 64):
                n = args.n1 if c == 1 else args.n64
                for name, call in contenders.items():
                    try:
                        out.setdefault(name, {})[f"c{c}"] = await _measure(call, n, c)
                    except httpx.HTTPError as exc:  # e.g. a proxy dropping connections under load: reported
                        out[name][f"c{c}"] = {"error": f"{type(exc).__name__}: {exc}"}
                    print(name, c, out[name][f"c{c}"], flush=True)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
    await cascade.aclose()
    return out


def _markdown(res: dict[str, Any], meta: dict[str, Any]) -> str:
    base = res["inproc"]
    lines = [
        "# serve overhead",
        "",
        f"`{meta['command']}` on {meta['machine']} ({meta['note']}).",
        "Zero-latency upstream (fault server, own process); one tier, k=1. Added = contender minus in-process.",
        "",
        "| contender | c | p50 ms | p95 ms | added p50 ms | added p95 ms | throughput req/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, by_c in res.items():
        for c, m in by_c.items():
            b = base[c]
            if "error" in m:
                lines.append(f"| {name} | {c[1:]} | failed: {m['error']} | | | | |")
                continue
            added = "" if name == "inproc" else f"{m['p50_ms'] - b['p50_ms']:+.2f}"
            added95 = "" if name == "inproc" else f"{m['p95_ms'] - b['p95_ms']:+.2f}"
            lines.append(
                f"| {name} | {c[1:]} | {m['p50_ms']:.2f} | {m['p95_ms']:.2f} | {added} | {added95} | "
                f"{m['throughput_rps']:.0f} |"
            )
    if "throughput_rps" in res.get("litellm-proxy", {}).get("c64", {}):
        r = res["serve"]["c64"]["throughput_rps"] / res["litellm-proxy"]["c64"]["throughput_rps"]
        lines += ["", f"Throughput at 64 concurrent clients, serve / litellm proxy: {r:.2f}x."]
    elif "litellm-proxy" not in res:
        lines += ["", f"litellm proxy: not measured ({meta.get('litellm_note', 'no --litellm given')})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n1", type=int, default=300, help="requests at concurrency 1")
    parser.add_argument("--n64", type=int, default=2000, help="requests at concurrency 64")
    parser.add_argument("--litellm", default=None, help="a litellm proxy executable (from a throwaway venv)")
    parser.add_argument("--litellm-note", default=None, help="why the proxy was not measured (for the report)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault(KEY_ENV, "dummy")
    up = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert up.stdout is not None
        upstream = f"http://127.0.0.1:{int(up.stdout.readline())}/v1"
        with tempfile.TemporaryDirectory() as tmp:
            res = asyncio.run(_run(args, upstream, Path(tmp)))
    finally:
        up.kill()
        up.wait()
    meta = {
        "command": " ".join(["nice -n 10 python benchmarks/serve_overhead.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "note": "the 2 cores are shared with other jobs; figures are noisy",
        "litellm_note": args.litellm_note or "no --litellm given",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_overhead.json").write_text(json.dumps({"meta": meta, "results": res}, indent=2) + "\n")
    (args.out / "serve_overhead.md").write_text(_markdown(res, meta))
    print(_markdown(res, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
