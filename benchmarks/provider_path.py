"""The request path at line rate: raw httpx vs litellm vs the native provider vs the cascade (issue 12).

    nice -n 10 python benchmarks/provider_path.py [--serial 200] [--calls 1000] [--concurrency 64] \
        [--cli-runs 5] [--before-tree DIR]

One run against :class:`semcascade.testing.FaultServer` (no faults, zero latency)
in its own process, so server CPU is not client CPU. Each path: 20 warm-up
calls, then ``--serial`` calls one at a time (p50/p95 per call), then
``--calls`` calls ``--concurrency`` at a time (calls/s). Paths:

* raw ``httpx`` POST to ``/chat/completions`` (one ``AsyncClient``), the floor;
* ``litellm.acompletion`` (``openai/`` model with ``api_base``), the peer;
* the native provider (:class:`OpenAICompatibleProvider`) alone;
* ``Cascade.generate``, one tier k=1, via the native provider and via litellm;
* ``Cascade.generate``, two tiers k=5 (lexical scorer, accepted at tier 1),
  via each; the fault server's request counter gives the upstream calls per
  generate (native ``n``: one a tier), and a variant whose samples disagree
  (escalates: two tiers, two calls) checks it per tier.

Then the CLI cold start: ``semcascade generate`` wall time (``--cli-runs``
subprocess runs each) on a native-provider config, the same config with
``provider: litellm`` (litellm imported, the old path), ``semcascade --help``,
and, with ``--before-tree`` (a checkout of the code before this change, e.g.
``git archive cdeff15 | tar -x -C /tmp/before``), the old code on the native config.

Writes ``benchmarks/results/provider_path.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BENCH_API_KEY", "sk-bench")  # every path sends a key (litellm insists on one)
KEY = os.environ["BENCH_API_KEY"]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's semcascade, and benchmarks._report
RESULTS = REPO / "benchmarks" / "results"
PROMPT = "What is the capital of France?"
MESSAGES = [{"role": "user", "content": PROMPT}]
#: answers of the ``disagree`` models: five different words, so a tier of them never agrees
DISAGREE = ("Paris", "London", "Rome", "Berlin", "Madrid")
WARMUP = 20

Call = Callable[[], Awaitable[object]]


# --------------------------------------------------------------------------- the server, in its own process


def _serve() -> int:
    """Child process: run the fault server, print its URL, answer ``stats``/``reset`` on stdin."""
    import random

    from semcascade.testing import FaultServer

    def answer(model: str, prompt: str, index: int, rng: random.Random) -> str:
        return DISAGREE[index % len(DISAGREE)] if "disagree" in model else "Paris"

    with FaultServer(answer=answer) as server:
        print(server.base_url, flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "stats":
                print(json.dumps({"requests": server.stats.requests, "choices": server.stats.choices_served}))
            elif cmd == "reset":
                server.reset_stats()
                print("{}")
            sys.stdout.flush()
    return 0


class ServerProcess:
    """The fault server in a child process (its own CPU), with its request counter readable."""

    def __enter__(self) -> ServerProcess:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        self.base_url = self._proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"the fault server did not start: {self.base_url!r}")
        return self

    def _ask(self, cmd: str) -> dict[str, int]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(cmd + "\n")
        self._proc.stdin.flush()
        out: dict[str, int] = json.loads(self._proc.stdout.readline())
        return out

    def requests(self) -> int:
        return self._ask("stats")["requests"]

    def reset(self) -> None:
        self._ask("reset")

    def __exit__(self, *exc: object) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=30)


# --------------------------------------------------------------------------- timing


async def measure(call: Call, server: ServerProcess, serial: int, calls: int, concurrency: int) -> dict[str, Any]:
    """Warm up, then p50/p95 one at a time and calls/s ``concurrency`` at a time; upstream calls per call."""
    for _ in range(WARMUP):
        await call()
    server.reset()
    lat = []
    cpu0 = time.process_time()
    for _ in range(serial):
        t0 = time.perf_counter()
        await call()
        lat.append(time.perf_counter() - t0)
    cpu_serial = time.process_time() - cpu0
    upstream_serial = server.requests()
    server.reset()
    todo = iter(range(calls))

    async def worker() -> None:
        for _ in todo:
            await call()

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    upstream = server.requests()
    lat.sort()
    return {
        "p50_ms": 1e3 * statistics.median(lat),
        "p95_ms": 1e3 * lat[min(len(lat) - 1, int(0.95 * len(lat)))],
        "mean_ms": 1e3 * statistics.fmean(lat),
        "calls_per_s": calls / elapsed,
        "concurrent_s": elapsed,
        "client_cpu_ms_per_call_serial": 1e3 * cpu_serial / serial,
        "client_cpu_ms_per_call_concurrent": 1e3 * cpu / calls,
        "upstream_per_call_serial": upstream_serial / serial,
        "upstream_per_call_concurrent": upstream / calls,
    }


def _tier(name: str, model: str, base: str, k: int, provider: str) -> dict[str, Any]:
    return {"name": name, "model": model, "api_base": base, "k": k, "max_concurrency": 64, "provider": provider,
            "max_tokens": 16, "api_key_env": "BENCH_API_KEY"}  # fmt: skip


def cascade_config(base: str, provider: str, *, k: int, tiers: int, model: str = "bench") -> dict[str, Any]:
    names = ["cheap", "strong"][:tiers]
    return {
        "tiers": [_tier(n, f"openai/{model}-{n}", base, k, provider) for n in names],
        "scorer": {"name": "lexical"},
    }


async def run_paths(server: ServerProcess, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    import httpx

    from semcascade import Cascade
    from semcascade.providers import CompletionRequest
    from semcascade.providers.openai_compat import OpenAICompatibleProvider

    base = server.base_url
    out: dict[str, dict[str, Any]] = {}

    def go(name: str, call: Call) -> Awaitable[dict[str, Any]]:
        print(f"  {name} ...", file=sys.stderr, flush=True)
        return measure(call, server, args.serial, args.calls, args.concurrency)

    body = {"model": "bench", "messages": MESSAGES, "temperature": 0.0, "max_tokens": 16}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(limits=limits, headers={"Authorization": f"Bearer {KEY}"}) as client:

        async def raw() -> object:
            r = await client.post(f"{base}/chat/completions", json=body)
            r.raise_for_status()
            return r.json()["choices"][0]["message"]["content"]

        out["raw httpx POST"] = await go("raw httpx", raw)

    native = OpenAICompatibleProvider(pool_size=args.concurrency)
    request = CompletionRequest(
        model="openai/bench", messages=MESSAGES, temperature=0.0, max_tokens=16, api_base=base, api_key=KEY
    )

    async def native_call() -> object:
        return await native.complete(request)

    out["native provider"] = await go("native provider", native_call)
    await native.aclose()

    for label, cfg in [
        ("Cascade.generate 1 tier k=1, native", cascade_config(base, "openai", k=1, tiers=1)),
        ("Cascade.generate 2 tiers k=5, native", cascade_config(base, "openai", k=5, tiers=2)),
        ("Cascade.generate 2 tiers k=5 escalating, native", cascade_config(base, "openai", k=5, tiers=2,
                                                                           model="disagree")),
    ]:  # fmt: skip
        async with Cascade(cfg) as cascade:
            t0 = time.perf_counter()
            out[label] = await go(label, lambda c=cascade: c.generate(PROMPT))  # type: ignore[misc]
            out[label]["wall_s"] = time.perf_counter() - t0

    import litellm  # the peer, imported after the native paths ran (so they ran without it)

    litellm.suppress_debug_info = True

    async def litellm_call() -> object:
        r = await litellm.acompletion(
            model="openai/bench", api_base=base, api_key=KEY, messages=MESSAGES, temperature=0.0, max_tokens=16
        )
        return r.choices[0].message.content

    out["litellm.acompletion"] = await go("litellm", litellm_call)
    for label, cfg in [
        ("Cascade.generate 1 tier k=1, litellm", cascade_config(base, "litellm", k=1, tiers=1)),
        ("Cascade.generate 2 tiers k=5, litellm", cascade_config(base, "litellm", k=5, tiers=2)),
    ]:
        async with Cascade(cfg) as cascade:
            t0 = time.perf_counter()
            out[label] = await go(label, lambda c=cascade: c.generate(PROMPT))  # type: ignore[misc]
            out[label]["wall_s"] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------- CLI cold start


def cli_runs(tree: Path, argv: list[str], runs: int) -> dict[str, Any]:
    """Wall time of ``python -m semcascade.cli ARGV`` from ``tree``, ``runs`` times (fresh interpreters)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    times, loaded = [], None
    probe = (
        "import runpy, sys, atexit, json\n"
        "atexit.register(lambda: print('MODULES ' + json.dumps([m for m in ('litellm', 'openai') "
        "if m in sys.modules]), file=sys.stderr))\n"
        "sys.argv = ['semcascade'] + sys.argv[1:]\n"
        "runpy.run_module('semcascade.cli', run_name='__main__')\n"
    )
    for i in range(runs + 1):  # the first run warms the OS file cache and is not counted
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, env=env, cwd=tree, check=False
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"semcascade {' '.join(argv)} failed: {proc.stderr[-2000:]}")
        if i:
            times.append(wall)
        line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES "))
        loaded = json.loads(line.removeprefix("MODULES "))
    return {"runs_s": times, "median_s": statistics.median(times), "min_s": min(times), "sdk_loaded": loaded}


def cold_start(server: ServerProcess, args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        native_cfg, litellm_cfg = Path(tmp) / "native.yaml", Path(tmp) / "litellm.yaml"
        native_cfg.write_text(yaml.safe_dump(cascade_config(server.base_url, "auto", k=5, tiers=2)))
        litellm_cfg.write_text(yaml.safe_dump(cascade_config(server.base_url, "litellm", k=5, tiers=2)))
        gen = ["generate", "--quiet", "--config"]
        cases = [
            ("semcascade --help", REPO, ["--help"]),
            ("semcascade generate, native provider", REPO, [*gen, str(native_cfg), PROMPT]),
            ("semcascade generate, provider: litellm (old path)", REPO, [*gen, str(litellm_cfg), PROMPT]),
        ]
        if args.before_tree is not None:
            cases.append(("semcascade generate, native config, code before this change", args.before_tree,
                          [*gen, str(native_cfg), PROMPT]))  # fmt: skip
        for label, tree, argv in cases:
            print(f"  {label} ...", file=sys.stderr, flush=True)
            out[label] = cli_runs(Path(tree), argv, args.cli_runs)
    return out


# --------------------------------------------------------------------------- report


def markdown(rep: dict[str, Any]) -> str:
    paths = rep["paths"]
    raw, peer = paths["raw httpx POST"], paths["litellm.acompletion"]
    lines = [
        "# The request path: raw httpx vs litellm vs the native provider vs the cascade",
        "",
        f"`{rep['command']}` on {rep['machine']} ({rep['cpus']} CPUs, Python {rep['python']}), one run. "
        f"Fault server (no faults, zero latency) in its own process; {rep['serial']} calls one at a time "
        f"(p50/p95), {rep['calls']} calls {rep['concurrency']} at a time (calls/s), after {WARMUP} warm-up calls. "
        "`upstream/call`: requests the server saw per call (concurrent phase).",
        "",
        "| path | p50 ms | p95 ms | p50 / raw httpx | calls/s at "
        f"{rep['concurrency']} | calls/s / litellm | upstream/call |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in paths.items():
        lines.append(
            f"| {name} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p50_ms'] / raw['p50_ms']:.2f}x | "
            f"{r['calls_per_s']:.0f} | {r['calls_per_s'] / peer['calls_per_s']:.2f}x | "
            f"{r['upstream_per_call_concurrent']:.2f} |"
        )
    t = rep["targets"]
    lines += [
        "",
        f"Targets: native provider p50 within 1.5x raw httpx: **{t['native_p50_vs_raw']:.2f}x** "
        f"({'met' if t['native_p50_vs_raw'] <= 1.5 else 'missed'}); native calls/s >= 3x litellm's: "
        f"**{t['native_calls_per_s_vs_litellm']:.2f}x** "
        f"({'met' if t['native_calls_per_s_vs_litellm'] >= 3 else 'missed'}); a k=5 tier makes one upstream call: "
        f"**{t['k5_native_upstream_per_call']:.2f}** per generate accepted at tier 1, "
        f"**{t['k5_native_escalating_upstream_per_call']:.2f}** per generate through both tiers.",
        "",
        f"## CLI cold start (wall time of a fresh process, median of {rep['cli_runs']} runs after one uncounted run)",
        "",
        "| command | median s | min s | provider SDKs loaded |",
        "|---|---|---|---|",
    ]
    for name, r in rep["cold_start"].items():
        lines.append(f"| {name} | {r['median_s']:.2f} | {r['min_s']:.2f} | {', '.join(r['sdk_loaded']) or 'none'} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serial", type=int, default=200)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--cli-runs", type=int, default=5)
    ap.add_argument("--before-tree", type=Path, default=None, help="a checkout of the code to compare the CLI with")
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "provider_path")
    args = ap.parse_args(argv)
    if args.serve:
        return _serve()
    from benchmarks._report import write_report

    with ServerProcess() as server:
        print("request paths:", file=sys.stderr)
        paths = asyncio.run(run_paths(server, args))
        cold = {} if args.skip_cli else cold_start(server, args)
    native, raw, peer = paths["native provider"], paths["raw httpx POST"], paths["litellm.acompletion"]
    rep: dict[str, Any] = {
        "command": "python benchmarks/provider_path.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "serial": args.serial,
        "calls": args.calls,
        "concurrency": args.concurrency,
        "cli_runs": args.cli_runs,
        "paths": paths,
        "targets": {
            "native_p50_vs_raw": native["p50_ms"] / raw["p50_ms"],
            "native_calls_per_s_vs_litellm": native["calls_per_s"] / peer["calls_per_s"],
            "cascade_k1_native_calls_per_s_vs_litellm": paths["Cascade.generate 1 tier k=1, native"]["calls_per_s"]
            / paths["Cascade.generate 1 tier k=1, litellm"]["calls_per_s"],
            "k5_native_upstream_per_call": paths["Cascade.generate 2 tiers k=5, native"][
                "upstream_per_call_concurrent"
            ],
            "k5_native_escalating_upstream_per_call": paths["Cascade.generate 2 tiers k=5 escalating, native"][
                "upstream_per_call_concurrent"
            ],
        },
        "cold_start": cold,
    }
    if args.skip_cli:
        rep["cold_start"] = {}
    write_report(args.out, rep, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
