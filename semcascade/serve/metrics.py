"""Prometheus metrics of the server: one :class:`~prometheus_client.CollectorRegistry` per app.

Labels are bounded: ``model`` is a served model name (``_unknown`` for anything else), ``tier`` a
tier name of the config; never a key, a prompt or a client-chosen string.
"""

from __future__ import annotations

from collections import Counter as Counter_
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from semcascade.result import CascadeResult, TierTrace

__all__ = ["ServeMetrics"]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_SCORE = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class ServeMetrics:
    """The counters and histograms ``GET /metrics`` exposes (names in the README's "Serve" section)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        p = "semcascade_"
        self.requests = Counter(
            p + "requests", "chat-completion requests by HTTP status", ["model", "status"], registry=r
        )
        self.answered = Counter(
            p + "answered", "requests answered, by the tier that answered", ["model", "tier"], registry=r
        )
        self.escalations = Counter(p + "escalations", "escalations away from a tier", ["model", "tier"], registry=r)
        self.agreement = Histogram(
            p + "agreement", "decision score of each tier that ran", ["model", "tier"], buckets=_SCORE, registry=r
        )
        self.cost = Counter(
            p + "cost", "cost of the tiers' calls (the config's price unit)", ["model", "tier"], registry=r
        )
        self.tokens = Counter(p + "tokens", "tokens billed by the tiers", ["model", "tier", "kind"], registry=r)
        self.latency = Histogram(
            p + "request_latency_seconds", "request latency", ["model", "stream"], buckets=_LATENCY, registry=r
        )
        self.tier_latency = Histogram(
            p + "tier_latency_seconds", "latency of each tier that ran", ["model", "tier"], buckets=_LATENCY, registry=r
        )
        self.ttft = Histogram(
            p + "time_to_first_token_seconds",
            "streamed requests: time to the first content chunk",
            ["model", "escalated"],
            buckets=_LATENCY,
            registry=r,
        )
        self.provider_errors = Counter(
            p + "provider_errors",
            "provider call failures by type (retried ones included)",
            ["model", "type"],
            registry=r,
        )
        self.retries = Counter(p + "retries", "retries of transient provider failures", ["model", "tier"], registry=r)
        self.in_flight = Gauge(p + "in_flight", "requests being answered", ["model"], registry=r)
        self.stream_errors = Counter(
            p + "stream_errors",
            "streams that began (status 200) and ended in an error event",
            ["model", "code"],
            registry=r,
        )
        self.rejected = Counter(
            p + "rejected",
            "requests refused before the cascade ran (auth, schema, saturation ...)",
            ["code"],
            registry=r,
        )

        self.state_degraded = Gauge(
            p + "state_degraded_operations",
            "shared-state cache/memory operations that became a miss because the backend failed, by kind",
            ["kind"],
            registry=r,
        )
        self.state_failed_closed = Gauge(
            p + "state_failed_closed_operations",
            "budget/limit operations refused because the shared-state backend failed, by kind",
            ["kind"],
            registry=r,
        )

    def state_health(self, snapshots: Iterable[Mapping[str, Mapping[str, int]]]) -> None:
        """Set the state gauges from the served cascades' ``StateHealth`` snapshots (summed)."""
        totals: dict[str, Counter_[str]] = {"degraded": Counter_(), "failed_closed": Counter_()}
        for snap in snapshots:
            for what, counts in snap.items():
                totals.setdefault(what, Counter_()).update(counts)
        for kind, n in totals["degraded"].items():
            self.state_degraded.labels(kind).set(n)
        for kind, n in totals["failed_closed"].items():
            self.state_failed_closed.labels(kind).set(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def tiers(self, model: str, trace: list[TierTrace]) -> None:
        """Per-tier counters of one call (answered or failed: what was paid for is counted)."""
        for t in trace:
            if t.decision == "escalate":
                self.escalations.labels(model, t.tier).inc()
            if t.score is not None or t.agreement is not None:
                self.agreement.labels(model, t.tier).observe(t.score if t.score is not None else t.agreement or 0.0)
            if t.cost:
                self.cost.labels(model, t.tier).inc(t.cost)
            if t.prompt_tokens:
                self.tokens.labels(model, t.tier, "prompt").inc(t.prompt_tokens)
            if t.completion_tokens:
                self.tokens.labels(model, t.tier, "completion").inc(t.completion_tokens)
            if t.retries:
                self.retries.labels(model, t.tier).inc(t.retries)
            self.tier_latency.labels(model, t.tier).observe(t.latency_s)

    def result(self, model: str, result: CascadeResult) -> None:
        self.answered.labels(model, result.tier).inc()
        self.tiers(model, result.trace)
