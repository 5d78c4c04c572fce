"""Per-task serve statistics: one in-process object that ``GET /metrics`` and ``GET /dashboard/data.json`` render.

Each served config and each of its ``tasks`` (plus ``default``: requests no task answered) has a
:class:`TaskEntry`: decided requests, escalations by the tier they reached, the escalation rate over
the drift monitor's window against the calibration baseline and band (``drift:``), the drift alarms
by kind, cost, the strong-tier cost measured where the strong tier ran, a histogram of first-tier
decision scores, the rate over time and the last decisions; and the drift monitor's stream as its
counters hold it (``stream``: every replica's requests when the state store is shared).
:class:`TaskCollector` exposes them on the server's Prometheus registry; :meth:`TaskStats.snapshot`
is the dashboard's JSON. Both read the same entries under one lock, so the page and the scrape
never disagree.

Labels are bounded: ``model`` is a served config's name, ``task`` one of its tasks or ``default``
(any other task name is counted as ``default``), ``tier`` a tier name of the task's config, ``kind``
a drift alarm kind.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from semcascade.drift import rate_window

if TYPE_CHECKING:
    from semcascade.cascade import Cascade
    from semcascade.config import CascadeConfig
    from semcascade.drift import DriftMonitor
    from semcascade.result import CascadeResult

__all__ = ["ALARM_KINDS", "DEFAULT_TASK", "SCORE_BUCKETS", "Band", "TaskCollector", "TaskEntry", "TaskStats"]

#: the task label of a request no config task answered
DEFAULT_TASK = "default"
#: upper bounds of the first-tier score histogram (then +Inf)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
#: the kinds of :class:`~semcascade.drift.DriftAlarm`
ALARM_KINDS = ("escalation_rate", "score_distribution", "certified_loss")
#: the escalation rate's window without a drift monitor (the monitor's default window)
_DEFAULT_WINDOW = rate_window(200)


@dataclass(frozen=True)
class Band:
    """The drift monitor's calibration band: the baseline escalation rate ± the shift its CUSUM is tuned to."""

    baseline: float
    low: float
    high: float


def _bucket(score: float) -> int:
    """Index of the (non-cumulative) histogram bucket of ``score``; ``len(SCORE_BUCKETS)`` is +Inf."""
    for i, le in enumerate(SCORE_BUCKETS):
        if score <= le:
            return i
    return len(SCORE_BUCKETS)


def _counts(scores: list[float]) -> list[int]:
    out = [0] * (len(SCORE_BUCKETS) + 1)
    for s in scores:
        out[_bucket(s)] += 1
    return out


@dataclass
class TaskEntry:
    """The statistics of one (served config, task)."""

    model: str
    task: str
    #: the tier names of the task's cascade, cheapest first (the last is the strong tier)
    tiers: list[str]
    #: the escalation rate is taken over this many recent requests (the drift monitor's window)
    window: int
    band: Band | None
    #: the calibration baseline's first-tier scores, in the histogram's buckets
    baseline_scores: list[int]
    #: the task cascade's drift monitor, looked up once a request was recorded (the cascade exists then)
    monitor_of: Callable[[], DriftMonitor | None]
    recent_size: int
    series_size: int
    requests: int = 0
    cost: float = 0.0
    #: cost of the strong (last) tier on the requests it ran for, and how many those were
    strong_cost: float = 0.0
    strong_runs: int = 0
    escalations: dict[str, int] = field(default_factory=dict)
    alarms: dict[str, int] = field(default_factory=dict)
    score_counts: list[int] = field(default_factory=lambda: [0] * (len(SCORE_BUCKETS) + 1))
    score_sum: float = 0.0

    def __post_init__(self) -> None:
        self.escalations = dict.fromkeys(self.tiers[1:], 0)
        self.alarms = dict.fromkeys(ALARM_KINDS, 0) if self.band is not None else {}
        self._window: deque[bool] = deque(maxlen=self.window)
        #: (request number, unix time, escalation rate after it)
        self.series: deque[tuple[int, float, float]] = deque(maxlen=self.series_size)
        self.recent: deque[dict[str, Any]] = deque(maxlen=self.recent_size)
        self._monitor: DriftMonitor | None = None
        #: the monitor's alarm counts by kind at the last look
        self._alarms_seen: dict[str, int] = {}

    @property
    def escalation_rate(self) -> float:
        """The share of the last ``window`` decided requests that escalated (0 before any)."""
        return sum(self._window) / len(self._window) if self._window else 0.0

    @property
    def strong_only_estimate(self) -> float | None:
        """What the requests would have cost on the strong tier alone: its mean measured cost where it ran,
        times the requests (``None`` until it ran once)."""
        if not self.strong_runs:
            return None
        return self.strong_cost / self.strong_runs * self.requests

    def sync_alarms(self) -> list[str]:
        """Count the alarms this process's monitor raised since the last look; their kinds.

        Per process, like every figure here (with the drift counters on Redis an alarm is raised by the
        replica whose request crossed the threshold, so the replicas' counts sum to the stream's)."""
        monitor = self._monitor
        if monitor is None:
            return []
        new: list[str] = []
        for kind, n in monitor.alarm_counts.items():
            seen = self._alarms_seen.get(kind, 0)
            if n > seen:
                new += [kind] * (n - seen)
                self.alarms[kind] = self.alarms.get(kind, 0) + n - seen
                self._alarms_seen[kind] = n
        return new

    def record(self, result: CascadeResult, *, request_id: str, served: str, now: float, texts: bool) -> None:
        if self._monitor is None:
            self._monitor = self.monitor_of()
            self._alarms_seen = {}
        self.requests += 1
        self.cost += result.cost
        for t in result.trace[1:]:
            if t.tier in self.escalations:
                self.escalations[t.tier] += 1
        last = self.tiers[-1]
        strong = [t for t in result.trace if t.tier == last]
        if strong:
            self.strong_runs += 1
            self.strong_cost += sum(t.cost for t in strong)
        first = result.trace[0] if result.trace else None
        score = None if first is None else (first.score if first.score is not None else first.agreement)
        if score is not None:
            self.score_counts[_bucket(score)] += 1
            self.score_sum += score
        self._window.append(result.escalated)
        self.series.append((self.requests, now, self.escalation_rate))
        raised = self.sync_alarms()
        self.recent.append(_decision(result, request_id, served, now, raised, texts=texts))

    def snapshot(self) -> dict[str, Any]:
        self.sync_alarms()
        band = self.band
        return {
            "model": self.model,
            "task": self.task,
            "tiers": list(self.tiers),
            "requests": self.requests,
            "escalations": dict(self.escalations),
            "escalation_rate": self.escalation_rate,
            "window": self.window,
            "baseline_rate": None if band is None else band.baseline,
            "band": None if band is None else [band.low, band.high],
            "alarms": dict(self.alarms),
            "cost": self.cost,
            "strong_tier_cost": self.strong_cost,
            "strong_tier_runs": self.strong_runs,
            "strong_only_cost_estimate": self.strong_only_estimate,
            "scores": {
                "buckets": [*SCORE_BUCKETS, None],
                "counts": list(self.score_counts),
                "sum": self.score_sum,
                "baseline_counts": list(self.baseline_scores),
            },
            "series": [[n, round(t, 3), r] for n, t, r in self.series],
            "recent": list(self.recent)[::-1],
            "stream": self.stream(),
        }

    def stream(self) -> dict[str, Any] | None:
        """The drift monitor's stream: every replica's requests when its counters are shared (Redis), else
        this process's; ``None`` before a request was recorded or without a monitor."""
        monitor = self._monitor
        if monitor is None:
            return None
        t = monitor.counters.totals()
        return {
            "shared": monitor.counters.shared,
            "requests": t.requests,
            "escalations": t.escalations,
            "escalation_rate": t.escalation_rate,
            "alarms": {**dict.fromkeys(ALARM_KINDS, 0), **t.alarms},
        }


def _decision(result: CascadeResult, rid: str, served: str, now: float, alarms: list[str], *,
              texts: bool) -> dict[str, Any]:  # fmt: skip
    """One decision of the ring buffer: the outcome and each tier's record (answers only with ``texts``)."""
    tiers = []
    for t in result.trace:
        row: dict[str, Any] = {
            "tier": t.tier,
            "decision": t.decision,
            "reason": t.reason,
            "signal": t.signal,
            "score": t.score if t.score is not None else t.agreement,
            "threshold": t.threshold,
            "k": len(t.samples),
            "cost": t.cost,
            "latency_s": round(t.latency_s, 4),
            "errors": len(t.errors),
        }
        if texts:
            row["answers"] = [s.answer for s in t.samples]
        tiers.append(row)
    return {
        "request_id": rid,
        "time": round(now, 3),
        "served": served,
        "tier": result.tier,
        "escalated": result.escalated,
        "abstained": result.abstained,
        "cost": result.cost,
        "stop_reason": result.stop_reason,
        "alarms": alarms,
        "trace": tiers,
    }


def _band(cfg: CascadeConfig) -> tuple[Band | None, int, list[int]]:
    drift = cfg.drift
    if not drift.enabled or drift.baseline is None:
        return None, _DEFAULT_WINDOW, [0] * (len(SCORE_BUCKETS) + 1)
    p0 = drift.baseline.escalation_rate
    band = Band(p0, max(0.0, round(p0 - drift.shift, 12)), min(1.0, round(p0 + drift.shift, 12)))
    return band, rate_window(drift.window), _counts(list(drift.baseline.scores))


class TaskStats:
    """The per-task statistics of the served configs (name -> cascade)."""

    def __init__(self, models: Mapping[str, Cascade], *, recent: int = 20, series: int = 240,
                 texts: bool = False) -> None:  # fmt: skip
        self._lock = threading.Lock()
        self._names = {id(c): name for name, c in models.items()}
        self._texts = texts
        self.entries: dict[tuple[str, str], TaskEntry] = {}
        for name, cascade in models.items():
            for task in [*cascade.config.task_names, None]:
                cfg = cascade.config if task is None else cascade.config.task_config(task)
                band, window, baseline = _band(cfg)
                label = DEFAULT_TASK if task is None else task
                self.entries[(name, label)] = TaskEntry(
                    name, label, [t.name for t in cfg.tiers], window, band, baseline, _monitor_of(cascade, task),
                    recent, series,
                )  # fmt: skip

    def entry(self, cascade: Cascade, task: str | None) -> TaskEntry | None:
        """The entry of ``cascade`` (a served config) and ``task``; an unknown task is ``default``."""
        name = self._names.get(id(cascade))
        if name is None:
            return None
        return self.entries.get((name, task or DEFAULT_TASK)) or self.entries[(name, DEFAULT_TASK)]

    def record(self, cascade: Cascade, result: CascadeResult, *, request_id: str, served: str,
               now: float | None = None) -> None:  # fmt: skip
        """Count one decided request of served config ``cascade`` (``served``: the model name it was asked as)."""
        with self._lock:
            entry = self.entry(cascade, result.task)
            if entry is not None:
                entry.record(result, request_id=request_id, served=served, now=time.time() if now is None else now,
                             texts=self._texts)  # fmt: skip

    def snapshot(self) -> dict[str, Any]:
        """Every entry as JSON-ready data (the dashboard's ``data.json``)."""
        with self._lock:
            return {"time": round(time.time(), 3), "tasks": [e.snapshot() for e in self.entries.values()]}


def _monitor_of(cascade: Cascade, task: str | None) -> Callable[[], DriftMonitor | None]:
    def monitor() -> DriftMonitor | None:
        return (cascade.for_task(task) if task is not None else cascade).drift

    return monitor


def _le(bound: float | None) -> str:
    return "+Inf" if bound is None else repr(float(bound))


class TaskCollector(Collector):
    """The per-task metrics of ``GET /metrics``, read from a :class:`TaskStats` at each scrape."""

    def __init__(self, stats: TaskStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        snap = self.stats.snapshot()["tasks"]
        p = "semcascade_task_"
        mt = ["model", "task"]
        requests = CounterMetricFamily(p + "requests", "decided requests, by task", labels=mt)
        escalations = CounterMetricFamily(
            p + "escalations", "escalations, by the tier they reached", labels=[*mt, "tier"]
        )
        rate = GaugeMetricFamily(p + "escalation_rate", "escalation rate over the drift window", labels=mt)
        baseline = GaugeMetricFamily(
            p + "escalation_rate_baseline", "escalation rate on the calibration split (drift.baseline)", labels=mt
        )
        band = GaugeMetricFamily(
            p + "escalation_band", "baseline rate -/+ the shift the drift CUSUM detects", labels=[*mt, "bound"]
        )
        alarms = CounterMetricFamily(p + "drift_alarms", "drift alarms, by kind", labels=[*mt, "kind"])
        cost = CounterMetricFamily(p + "cost", "cost of the decided requests (the config's price unit)", labels=mt)
        strong_cost = CounterMetricFamily(
            p + "strong_tier_cost", "cost of the strong (last) tier on the requests it ran for", labels=mt
        )
        strong_runs = CounterMetricFamily(p + "strong_tier_runs", "requests the strong tier ran for", labels=mt)
        strong_only = GaugeMetricFamily(
            p + "strong_only_cost_estimate",
            "requests x the strong tier's mean measured cost: what the strong tier alone would have cost",
            labels=mt,
        )
        scores = HistogramMetricFamily(p + "first_tier_score", "first-tier decision score", labels=mt)
        st = ["model", "task", "shared"]
        stream_requests = GaugeMetricFamily(
            p + "drift_stream_requests", "requests of the drift monitor's stream (all replicas' when shared)", labels=st
        )
        stream_rate = GaugeMetricFamily(
            p + "drift_stream_escalation_rate", "escalation rate of the drift monitor's stream", labels=st
        )
        stream_alarms = GaugeMetricFamily(
            p + "drift_stream_alarms", "alarms of the drift monitor's stream, by kind", labels=[*st, "kind"]
        )
        for e in snap:
            lv = [e["model"], e["task"]]
            requests.add_metric(lv, e["requests"])
            for tier, n in e["escalations"].items():
                escalations.add_metric([*lv, tier], n)
            rate.add_metric(lv, e["escalation_rate"])
            if e["band"] is not None:
                baseline.add_metric(lv, e["baseline_rate"])
                band.add_metric([*lv, "low"], e["band"][0])
                band.add_metric([*lv, "high"], e["band"][1])
            for kind, n in e["alarms"].items():
                alarms.add_metric([*lv, kind], n)
            cost.add_metric(lv, e["cost"])
            strong_cost.add_metric(lv, e["strong_tier_cost"])
            strong_runs.add_metric(lv, e["strong_tier_runs"])
            if e["strong_only_cost_estimate"] is not None:
                strong_only.add_metric(lv, e["strong_only_cost_estimate"])
            s = e["scores"]
            cum, buckets = 0, []
            for le, n in zip(s["buckets"], s["counts"], strict=True):
                cum += n
                buckets.append((_le(le), float(cum)))
            scores.add_metric(lv, buckets, s["sum"] if math.isfinite(s["sum"]) else 0.0)
            if e["stream"] is not None:
                sv = [*lv, str(e["stream"]["shared"]).lower()]
                stream_requests.add_metric(sv, e["stream"]["requests"])
                stream_rate.add_metric(sv, e["stream"]["escalation_rate"])
                for kind, n in e["stream"]["alarms"].items():
                    stream_alarms.add_metric([*sv, kind], n)
        yield from (requests, escalations, rate, baseline, band, alarms, cost, strong_cost, strong_runs)
        yield from (strong_only, scores, stream_requests, stream_rate, stream_alarms)
