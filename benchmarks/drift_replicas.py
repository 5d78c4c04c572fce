"""Drift monitoring behind several replicas: one shared stream on Redis vs a monitor per process.

The streams of ``benchmarks/drift.py`` (the shipped cascade's decisions replayed from the committed
HaluEval and NQ runs; no model call) are dealt round-robin to R replicas. Three ways to watch them:

* ``one process``: a single monitor sees every request (the reference: what the thresholds promise);
* ``per process``: each replica's own monitor sees its share (``state: sqlite``, what replicas did
  before the drift counters were shared);
* ``shared (redis)``: each replica's monitor keeps its counters in one real redis-server
  (``state: redis``; a separate connection per replica).

Reported per mode: false alarms per 10,000 requests of the whole service on stationary streams, and
the delay, in the service's requests, from the shift to the first alarm on any replica.

    python benchmarks/drift_replicas.py      # -> benchmarks/results/drift_replicas.{json,md}
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from _report import command, machine, write_report
from drift import ROOT, pools, shifted_mix, stream

from semcascade.drift import DriftConfig, DriftMonitor
from semcascade.state.redis_store import RedisStateStore
from semcascade.testing.redis_server import RedisServer

MODES = ("one process", "per process", "shared (redis)")


def _alarms(monitors: list[DriftMonitor], esc: np.ndarray, sc: np.ndarray) -> list[int]:
    """Requests of the service (1-based) at which some replica alarmed; request t goes to replica t mod R."""
    out = []
    for t, (e, s) in enumerate(zip(esc, sc, strict=True)):
        if monitors[t % len(monitors)].observe(bool(e), None if np.isnan(s) else float(s)):
            out.append(t + 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--streams", type=int, default=10, help="replicate streams per scenario")
    ap.add_argument("--length", type=int, default=10_000, help="requests per stream")
    ap.add_argument("--shift-at", type=int, default=2_000)
    ap.add_argument("--share", type=float, default=0.3, help="share of NQ questions after the shift")
    ap.add_argument("--budget", type=float, default=5.0, help="configured false alarms per 10,000 requests")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/drift_replicas"))
    args = ap.parse_args()
    logging.getLogger("semcascade.drift").setLevel(logging.ERROR)  # alarms are counted, not printed
    baseline, test, nq = pools()
    drift = DriftConfig(enabled=True, baseline=baseline, false_alarms_per_10k=args.budget)
    rng = np.random.default_rng(0)
    stationary = [stream(rng, [test], np.zeros(args.length, dtype=int)) for _ in range(args.streams)]
    shifted = [
        stream(rng, [test, nq], shifted_mix(rng, args.length, args.shift_at, args.share)) for _ in range(args.streams)
    ]

    with RedisServer() as redis:
        stores = [RedisStateStore(redis.url, namespace="bench") for _ in range(args.replicas)]
        run = 0

        def monitors(mode: str) -> list[DriftMonitor]:
            nonlocal run
            run += 1
            if mode == "one process":
                return [_monitor(drift, None)]
            if mode == "per process":
                return [_monitor(drift, None) for _ in range(args.replicas)]
            # a fresh stream key per run (task name), every replica on its own connection
            return [_monitor(drift, st, task=f"run{run}") for st in stores]

        rows = [_measure(mode, monitors, stationary, shifted, args) for mode in MODES]
        for st in stores:
            st.close()
    report = {
        "command": command("drift_replicas.py"),
        "machine": machine(),
        "replicas": args.replicas,
        "budget_per_10k": args.budget,
        "baseline": {"escalation_rate": baseline.escalation_rate, "n": baseline.n, "source": baseline.source},
        "streams": args.streams,
        "length": args.length,
        "shift_at": args.shift_at,
        "share": args.share,
        "rows": rows,
    }
    write_report(args.out, report, markdown)


def _monitor(drift: DriftConfig, state: RedisStateStore | None, task: str | None = None) -> DriftMonitor:
    monitor = DriftMonitor.from_config(drift, task=task, state=state)
    assert monitor is not None
    return monitor


def _measure(
    mode: str,
    monitors: Callable[[str], list[DriftMonitor]],
    stationary: list[tuple[np.ndarray, np.ndarray]],
    shifted: list[tuple[np.ndarray, np.ndarray]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    false_alarms = sum(len(_alarms(monitors(mode), e, s)) for e, s in stationary)
    delays, missed = [], 0
    for e, s in shifted:
        after = [t for t in _alarms(monitors(mode), e, s) if t > args.shift_at]
        if after:
            delays.append(after[0] - args.shift_at)
        else:
            missed += 1
    print(f"{mode}: {false_alarms} false alarms, delays {delays}", flush=True)
    return {
        "mode": mode,
        "false_alarms_per_10k": false_alarms / (len(stationary) * args.length / 10_000),
        "detection_delay_median": float(np.median(delays)) if delays else None,
        "detection_delay_p90": float(np.percentile(delays, 90)) if delays else None,
        "missed": missed,
    }


def markdown(r: dict[str, Any]) -> str:
    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.0f}"

    ref = r["rows"][0]
    lines = [
        f"# Drift monitoring behind {r['replicas']} replicas: one shared stream vs a monitor per process",
        "",
        f"Command: `{r['command']}` on {r['machine']}. Streams and baseline as in `benchmarks/drift.py` "
        f"(decisions replayed from the committed HaluEval and NQ runs): {r['streams']} stationary and "
        f"{r['streams']} shifted streams of {r['length']:,} requests, {int(100 * r['share'])}% NQ questions "
        f"from request {r['shift_at']:,}; request t goes to replica t mod {r['replicas']}; "
        f"`false_alarms_per_10k: {r['budget_per_10k']:g}`.",
        "",
        "| monitors | false alarms / 10k service requests | vs one process | detection delay, median (p90) service "
        "requests | vs one process | missed |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        fa = row["false_alarms_per_10k"]
        d = row["detection_delay_median"]
        fa_ratio = f"x{fa / ref['false_alarms_per_10k']:.2f}" if ref["false_alarms_per_10k"] else "n/a"
        d_ratio = f"x{d / ref['detection_delay_median']:.2f}" if d and ref["detection_delay_median"] else "n/a"
        lines.append(
            f"| {row['mode']} | {fa:.2f} | {fa_ratio} | {f(d)} ({f(row['detection_delay_p90'])}) | {d_ratio} "
            f"| {row['missed']} of {r['streams']} |"
        )
    lines += [
        "",
        "Why: a monitor's false-alarm rate is per request it sees, so R monitors on a third of the traffic "
        "each raise about as many false alarms per service request as one monitor on all of it; but each of "
        "them needs its usual number of its own requests to see a shift, which is more of the service's. With "
        "the counters in Redis the replicas are one monitor on one stream: the same float arithmetic as one "
        "process (`tests/unit/test_drift_shared.py` checks it step by step), so the same alarms at the same "
        "requests on the same streams.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
