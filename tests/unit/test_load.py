"""Load: 2,000 generate() calls, 200 concurrent, 20% of provider calls faulty, over HTTP.

Asserts the invariants only (no speed figures: benchmarks/load_test.py records those):
every call answers or raises a typed SemcascadeError, none ends past its
deadline (plus scheduling slack), the in-flight requests per tier never exceed
the tier's max_concurrency (measured by a probe independent of the limiter),
and no task or socket outlives the run.
"""

from __future__ import annotations

import pytest

from semcascade.testing import FaultServer
from semcascade.testing.load import load_answer, run_load

#: both providers, each checked to be the one that sent the calls
PROVIDERS = pytest.mark.parametrize(
    ("provider", "sent_by"), [("openai", "OpenAICompatibleProvider"), ("litellm", "LiteLLMProvider")]
)


@PROVIDERS
@pytest.mark.load
async def test_load_with_faults_keeps_every_invariant(provider: str, sent_by: str) -> None:
    with FaultServer(seed=11, answer=load_answer, retry_after="1") as server:
        report = await run_load(
            server, calls=2000, concurrency=200, fault_rate=0.2, deadline_s=20.0, timeout_s=2.0, provider=provider
        )
    assert report.extra["providers"] == [sent_by]

    # every call ended with an answer or a typed error, before its deadline
    assert report.untyped_errors == [] and "untyped" not in report.outcomes
    assert sum(report.outcomes.values()) == 2000
    assert report.over_deadline == 0
    # the faults really happened, and were retried / escalated around
    assert report.server_faults and sum(report.server_faults.values()) > 0.1 * report.server_requests
    assert report.retries_by_tier.get("cheap", 0) > 0
    assert report.outcomes["answered"] > 1800
    # concurrency limits held, as measured outside the limiter
    for tier, limit in report.limits.items():
        assert 0 < report.peak_in_flight_measured[tier] <= limit
        assert report.peak_in_flight_limiter[tier] <= limit
    # nothing leaked: no pending tasks of ours; pooled connections bounded, all gone once clients close
    assert report.leaked_tasks == []
    client_after_run, _ = report.sockets_after_run
    assert client_after_run <= sum(report.limits.values())
    assert report.sockets_after_close == report.sockets_before


@PROVIDERS
async def test_small_load_run_smoke(provider: str, sent_by: str) -> None:
    """A quick version of the load run, so the invariants are also exercised in the fast suite."""
    with FaultServer(seed=5, answer=load_answer, retry_after="1") as server:
        report = await run_load(
            server, calls=60, concurrency=30, fault_rate=0.3, deadline_s=20.0, timeout_s=1.0, provider=provider
        )
    assert report.extra["providers"] == [sent_by]
    assert report.untyped_errors == [] and sum(report.outcomes.values()) == 60 and report.over_deadline == 0
    assert sum(report.server_faults.values()) > 0
    for tier, limit in report.limits.items():
        assert report.peak_in_flight_measured.get(tier, 0) <= limit
    assert report.leaked_tasks == [] and report.sockets_after_close == report.sockets_before
