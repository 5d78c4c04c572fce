"""A load run of the cascade against the fault server: many concurrent ``generate()`` calls.

Shared by the load test (``tests/unit/test_load.py``, which asserts on the
invariants) and ``benchmarks/load_test.py`` (which records the figures).
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from semcascade.cascade import Cascade
from semcascade.config import load_config as load_cascade_config
from semcascade.errors import SemcascadeError
from semcascade.providers import Completion, CompletionRequest, Provider, close_loop_clients
from semcascade.providers.stack import TierProviders
from semcascade.testing.fault_server import TRANSIENT_FAULTS, FaultServer

__all__ = ["InFlightProbe", "LoadReport", "load_answer", "load_config", "open_tcp_sockets", "run_load"]

#: env var holding the dummy key of the load tiers (litellm's OpenAI client wants one)
KEY_ENV = "SEMCASCADE_FAULT_KEY"


def load_answer(model: str, prompt: str, index: int, rng: random.Random) -> str:
    """Answers for the load run: the cheap model sometimes disagrees with itself (so calls escalate)."""
    if "cheap" in model and rng.random() < 0.15:
        return rng.choice(["Lyon", "Marseille", "Nice", "Toulouse"])
    return "Paris"


def load_config(
    base_url: str,
    *,
    deadline_s: float,
    timeout_s: float,
    limits: tuple[int, int] = (16, 8),
    max_tokens: int = 4,
    provider: str = "auto",
) -> dict[str, Any]:
    """Two tiers on the fault server, a lexical scorer, retries with short backoff; ``provider`` sends the calls
    (``auto``: the native client, the fault server being OpenAI-compatible; ``litellm``)."""
    retry = {"max_attempts": 3, "backoff_base_s": 0.05, "backoff_max_s": 0.4, "retry_after_max_s": 0.2}
    common: dict[str, Any] = {
        "api_base": base_url,
        "api_key_env": KEY_ENV,
        "max_tokens": max_tokens,
        "timeout": timeout_s,
        "retry": retry,
        "input_cost_per_token": 1e-7,
        "output_cost_per_token": 4e-7,
        "provider": provider,
    }
    return {
        "tiers": [
            {
                "name": "cheap",
                "model": "openai/cheap-model",
                "k": 3,
                "native_n": True,
                "threshold": 0.6,
                "max_concurrency": limits[0],
                **common,
            },
            {"name": "strong", "model": "openai/strong-model", "k": 1, "max_concurrency": limits[1], **common},
        ],
        "scorer": {"name": "lexical"},
        "deadline_s": deadline_s,
    }


class InFlightProbe:
    """Counts the provider calls in flight per tier, independently of the cascade's limiter."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.peak: collections.Counter[str] = collections.Counter()

    async def complete(self, request: CompletionRequest) -> Completion:
        key = request.tier or request.model
        self.in_flight[key] += 1
        self.peak[key] = max(self.peak[key], self.in_flight[key])
        try:
            return await self.inner.complete(request)
        finally:
            self.in_flight[key] -= 1


def open_tcp_sockets(port: int) -> tuple[int, int]:
    """(client-side, server-side) TCP sockets of this process connected to/at ``port`` (Linux /proc)."""
    inodes: dict[str, tuple[int, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, remote, state, inode = parts[1], parts[2], parts[3], parts[9]
                    if state == "0A":  # LISTEN
                        continue
                    inodes[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            continue
    client = server = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if not target.startswith("socket:["):
            continue
        ports = inodes.get(target[8:-1])
        if ports is None:
            continue
        client += ports[1] == port
        server += ports[0] == port
    return client, server


@dataclass
class LoadReport:
    calls: int
    concurrency: int
    fault_rate: float
    deadline_s: float
    timeout_s: float
    duration_s: float
    throughput_calls_per_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_max_s: float
    #: calls that ended later than deadline_s + slack_s after they started
    over_deadline: int
    slack_s: float
    outcomes: dict[str, int]
    untyped_errors: list[str]
    flagged_deadline: int
    answered_by_tier: dict[str, int]
    retries_by_tier: dict[str, int]
    limits: dict[str, int]
    peak_in_flight_limiter: dict[str, int]
    peak_in_flight_measured: dict[str, int]
    server_requests: int
    server_faults: dict[str, int]
    server_peak_in_flight: int
    leaked_tasks: list[str]
    sockets_before: tuple[int, int]
    sockets_after_run: tuple[int, int]
    sockets_after_close: tuple[int, int]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        rows = [
            ("calls / concurrency", f"{self.calls} / {self.concurrency}"),
            ("faulty provider calls", f"{self.fault_rate:.0%} (mix: {', '.join(sorted(self.server_faults))})"),
            ("deadline / tier timeout", f"{self.deadline_s:g} s / {self.timeout_s:g} s"),
            ("wall time", f"{self.duration_s:.1f} s"),
            ("throughput", f"{self.throughput_calls_per_s:.1f} calls/s"),
            (
                "latency p50 / p95 / max",
                f"{self.latency_p50_s:.2f} / {self.latency_p95_s:.2f} / {self.latency_max_s:.2f} s",
            ),
            ("calls past deadline + slack", f"{self.over_deadline} (slack {self.slack_s:g} s)"),
            ("outcomes", ", ".join(f"{k}: {v}" for k, v in sorted(self.outcomes.items()))),
            ("untyped errors", str(len(self.untyped_errors))),
            ("answers flagged deadline_exceeded", str(self.flagged_deadline)),
            ("answered by tier", ", ".join(f"{k}: {v}" for k, v in sorted(self.answered_by_tier.items()))),
            ("retries by tier", ", ".join(f"{k}: {v}" for k, v in sorted(self.retries_by_tier.items()))),
            (
                "peak in-flight vs limit",
                ", ".join(
                    f"{t}: {self.peak_in_flight_measured.get(t, 0)} measured / "
                    f"{self.peak_in_flight_limiter.get(t, 0)} limiter / limit {lim}"
                    for t, lim in sorted(self.limits.items())
                ),
            ),
            ("server requests / peak in flight", f"{self.server_requests} / {self.server_peak_in_flight}"),
            ("server faults served", ", ".join(f"{k}: {v}" for k, v in sorted(self.server_faults.items()))),
            ("leaked tasks", str(len(self.leaked_tasks))),
            (
                "sockets to server (client, server side)",
                f"before {self.sockets_before}, after run {self.sockets_after_run}, "
                f"after closing clients {self.sockets_after_close}",
            ),
        ]
        lines = ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
        return "\n".join(lines) + "\n"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _our_pending_tasks() -> list[str]:
    out = []
    for t in asyncio.all_tasks():
        if t is asyncio.current_task() or t.done():
            continue
        code = getattr(t.get_coro(), "cr_code", None)
        if code is not None and "/litellm/" in code.co_filename:
            continue  # litellm's process-wide logging worker, by design
        out.append(repr(t)[:200])
    return out


async def _settle(check: Any, *, tries: int = 200) -> None:
    for _ in range(tries):
        if check():
            return
        await asyncio.sleep(0.01)


async def run_load(
    server: FaultServer,
    *,
    calls: int = 2000,
    concurrency: int = 200,
    fault_rate: float = 0.2,
    fault_mix: Mapping[str, float] | None = None,
    deadline_s: float = 20.0,
    timeout_s: float = 2.0,
    limits: tuple[int, int] = (16, 8),
    slack_s: float = 1.0,
    provider: str = "auto",
) -> LoadReport:
    """``calls`` generate() calls, ``concurrency`` at a time, ``fault_rate`` of provider calls faulty,
    sent by ``provider`` (a registry name, or ``auto``)."""
    os.environ.setdefault(KEY_ENV, "fault-dummy-key")
    mix = dict(fault_mix) if fault_mix is not None else {**dict.fromkeys(TRANSIENT_FAULTS, 1.0), "hang": 0.5}
    sockets_before = open_tcp_sockets(server.port)
    cfg = load_cascade_config(
        load_config(server.base_url, deadline_s=deadline_s, timeout_s=timeout_s, limits=limits, provider=provider)
    )
    base = TierProviders(cfg)
    probe = InFlightProbe(base)  # the tiers' own base providers, measured from outside the limiter
    cascade = Cascade(cfg, provider=probe)
    await asyncio.to_thread(cascade.prepare)
    # warm-up without faults: litellm's lazy imports and client creation happen outside the measurement
    server.fault_rate = 0.0
    await cascade.generate("warm-up: what is the capital of France?")
    for t in cascade.tiers:
        t.limiter.peak_in_flight = 0
    probe.peak.clear()
    server.reset_stats()
    server.fault_rate, server.fault_mix = fault_rate, mix
    tasks_before = set(_our_pending_tasks())

    latencies: list[float] = []
    outcomes: collections.Counter[str] = collections.Counter()
    untyped: list[str] = []
    answered: collections.Counter[str] = collections.Counter()
    retries: collections.Counter[str] = collections.Counter()
    over = flagged = 0
    gate = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    def count_retries(trace: Any) -> None:
        for t in trace:
            retries[t.tier] += t.retries

    async def one(i: int) -> None:
        nonlocal over, flagged
        async with gate:
            t0 = loop.time()
            try:
                r = await cascade.generate(f"Question {i}: what is the capital of France?")
            except SemcascadeError as exc:
                outcomes[type(exc).__name__] += 1
                count_retries(getattr(exc, "trace", []))
            except Exception as exc:  # anything untyped is a bug the test reports
                outcomes["untyped"] += 1
                untyped.append(f"{type(exc).__name__}: {exc}"[:300])
            else:
                outcomes["answered"] += 1
                answered[r.tier] += 1
                flagged += r.deadline_exceeded
                count_retries(r.trace)
            elapsed = loop.time() - t0
            latencies.append(elapsed)
            over += elapsed > deadline_s + slack_s

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    duration = time.perf_counter() - started
    stats = server.stats
    await _settle(lambda: not (set(_our_pending_tasks()) - tasks_before))
    leaked = sorted(set(_our_pending_tasks()) - tasks_before)
    sockets_after_run = open_tcp_sockets(server.port)
    await close_loop_clients(cascade.stack)
    await _settle(lambda: open_tcp_sockets(server.port) == sockets_before)
    sockets_after_close = open_tcp_sockets(server.port)
    server.fault_rate = 0.0
    return LoadReport(
        calls=calls,
        concurrency=concurrency,
        fault_rate=fault_rate,
        deadline_s=deadline_s,
        timeout_s=timeout_s,
        duration_s=duration,
        throughput_calls_per_s=calls / duration if duration else 0.0,
        latency_p50_s=statistics.median(latencies) if latencies else 0.0,
        latency_p95_s=_pct(latencies, 0.95),
        latency_max_s=max(latencies, default=0.0),
        over_deadline=over,
        slack_s=slack_s,
        outcomes=dict(outcomes),
        untyped_errors=untyped[:20],
        flagged_deadline=flagged,
        answered_by_tier=dict(answered),
        retries_by_tier=dict(retries),
        limits={t.config.name: t.config.max_concurrency for t in cascade.tiers},
        peak_in_flight_limiter={t.config.name: t.limiter.peak_in_flight for t in cascade.tiers},
        peak_in_flight_measured=dict(probe.peak),
        server_requests=stats.requests,
        server_faults={k: v for k, v in stats.by_fault.items() if k != "ok"},
        server_peak_in_flight=stats.peak_in_flight,
        leaked_tasks=leaked,
        sockets_before=sockets_before,
        sockets_after_run=sockets_after_run,
        sockets_after_close=sockets_after_close,
        extra={
            "server_ok_requests": stats.by_fault.get("ok", 0),
            "providers": sorted(type(p).__name__ for p in base.providers()),
        },
    )
