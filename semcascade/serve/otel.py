"""OpenTelemetry spans of served requests (the ``otel`` extra; ``serve.otel: true``).

One span per request (``semcascade.request``) with the decision as attributes, and a child span per
tier that ran (``semcascade.tier``: decision, score, samples, tokens, cost, retries, errors), timed
from the cascade's trace. Spans go to the global tracer provider unless one is given; configure an
exporter the usual way (``opentelemetry-sdk``, ``OTEL_*`` variables).
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from semcascade.result import CascadeResult, TierTrace

__all__ = ["RequestTracer"]


class RequestTracer:
    """Records a finished request as a span tree (``provider``: a ``TracerProvider``; default the global one)."""

    def __init__(self, provider: Any = None) -> None:
        self._tracer = trace.get_tracer("semcascade.serve", tracer_provider=provider)

    def record(
        self,
        rid: str,
        model: str,
        stream: bool,
        status: str,
        started: float,
        elapsed: float,
        result: CascadeResult | None,
        failure: BaseException | None,
    ) -> None:
        end_ns = time.time_ns()
        start_ns = end_ns - int(elapsed * 1e9)
        attrs: dict[str, Any] = {
            "semcascade.request_id": rid,
            "semcascade.model": model,
            "semcascade.stream": stream,
            "http.response.status_code": int(status),
        }
        tiers: list[TierTrace] = []
        if result is not None:
            attrs.update(
                {
                    "semcascade.tier": result.tier,
                    "semcascade.tier_index": result.tier_index,
                    "semcascade.escalated": result.escalated,
                    "semcascade.cost": result.cost,
                    "semcascade.abstained": result.abstained,
                }
            )
            if result.agreement is not None:
                attrs["semcascade.agreement"] = result.agreement
            tiers = result.trace
        elif failure is not None:
            attrs["error.type"] = type(failure).__name__
            tiers = list(getattr(failure, "trace", []) or [])
        span = self._tracer.start_span("semcascade.request", start_time=start_ns, attributes=attrs)
        if status not in ("200", "499"):
            span.set_status(Status(StatusCode.ERROR, attrs.get("error.type", status)))
        ctx = trace.set_span_in_context(span)
        at = start_ns
        for t in tiers:
            dur = int(t.latency_s * 1e9)
            child = self._tracer.start_span("semcascade.tier", context=ctx, start_time=at, attributes=_tier_attrs(t))
            if t.decision == "failed":
                child.set_status(Status(StatusCode.ERROR, t.reason[:200]))
            child.end(end_time=min(at + dur, end_ns))
            at += dur
        span.end(end_time=end_ns)


def _tier_attrs(t: TierTrace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "semcascade.tier": t.tier,
        "semcascade.models": list(t.models),
        "semcascade.decision": t.decision,
        "semcascade.samples": len(t.samples),
        "semcascade.prompt_tokens": t.prompt_tokens,
        "semcascade.completion_tokens": t.completion_tokens,
        "semcascade.cost": t.cost,
        "semcascade.retries": t.retries,
        "semcascade.provider_errors": len(t.errors),
        "semcascade.threshold": t.threshold,
    }
    if t.score is not None:
        out["semcascade.score"] = t.score
    if t.signal is not None:
        out["semcascade.signal"] = t.signal
    return out
