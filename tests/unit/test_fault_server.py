"""Each fault type alone, through the real LiteLLMProvider and HTTP, against the loopback fault server.

Retries run without backoff waits (the waits RetryingProvider *would* make are
recorded by an injected sleep), so these tests are fast and assert behaviour,
not timing.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import pytest
from fault_fixtures import FAST_RETRY, KEY_ENV, cascade_config, fault_server_fixture, fault_server_session, tier  # noqa: F401

from semcascade import (
    AuthenticationError,
    BadRequestError,
    Cascade,
    CascadeFailedError,
    ContentRefusedError,
    MalformedResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    QuotaExceededError,
    RateLimitError,
    RetryConfig,
    RetryingProvider,
    UnknownModelError,
)
from semcascade.providers import CompletionRequest, LiteLLMProvider
from semcascade.testing import FaultServer, http_date


def request(
    server: FaultServer, *, n: int = 1, timeout: float = 5.0, model: str = "openai/fault-model"
) -> CompletionRequest:
    return CompletionRequest(
        model=model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        n=n,
        max_tokens=8,
        api_base=server.base_url,
        api_key=os.environ[KEY_ENV],
        timeout=timeout,
        tier="t",
    )


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def retrying(policy: RetryConfig | None = None) -> tuple[RetryingProvider, RecordingSleep]:
    sleep = RecordingSleep()
    return RetryingProvider(LiteLLMProvider(), policy or RetryConfig(**FAST_RETRY), sleep=sleep), sleep


async def test_server_answers_like_openai(fault_server: FaultServer) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(
            fault_server.base_url + "/chat/completions",
            json={"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]},
        )
    body = r.json()
    assert r.status_code == 200 and [c["message"]["content"] for c in body["choices"]] == ["Paris", "Paris"]
    assert body["usage"]["completion_tokens"] == 2


async def test_fault_is_chosen_per_request_by_header(fault_server: FaultServer) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(
            fault_server.base_url + "/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"X-Fault": "503"},
        )
    assert r.status_code == 503 and r.headers["Retry-After"] == "0"
    assert fault_server.stats.by_fault == {"503": 1}


def test_fault_fraction_is_respected() -> None:
    server = FaultServer(fault_rate=0.2, fault_mix={"500": 1.0}, seed=7)
    picks = [server._pick(None, "openai/m") for _ in range(5000)]
    share = picks.count("500") / len(picks)
    assert 0.17 < share < 0.23 and set(picks) == {"ok", "500"}


def test_unknown_fault_kinds_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fault kinds"):
        FaultServer(fault_mix={"teapot": 1.0})
    with pytest.raises(ValueError, match="unknown fault kinds"):
        FaultServer().script("teapot")


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("429", RateLimitError),
        ("500", ProviderUnavailableError),
        ("503", ProviderUnavailableError),
        ("drop", ProviderUnavailableError),
    ],
)
async def test_transient_fault_is_retried_then_succeeds(
    fault_server: FaultServer, fault: str, error: type[Exception]
) -> None:
    provider, sleep = retrying()
    fault_server.script(fault)
    c = await provider.complete(request(fault_server))
    assert c.choices[0].text == "Paris"
    assert fault_server.stats.requests == 2 and fault_server.stats.by_fault == {fault: 1, "ok": 1}
    assert provider.stats["retries"] == 1 and provider.stats[f"error:{error.__name__}"] == 1
    assert len(sleep.delays) == 1


@pytest.mark.parametrize("fault", ["429", "500", "503", "drop"])
async def test_transient_fault_every_time_raises_typed_after_max_attempts(
    fault_server: FaultServer, fault: str
) -> None:
    provider, _ = retrying()
    with pytest.raises((RateLimitError, ProviderUnavailableError)):
        await provider.complete(request(fault_server, model=f"openai/fault-{fault}"))
    assert fault_server.stats.requests == 3 == provider.stats["attempts"]


@pytest.mark.parametrize(("retry_after", "low", "high"), [("3", 3.0, 3.0), ("2.5", 2.5, 2.5), ("date", 2.5, 4.0)])
async def test_retry_after_is_honoured(fault_server: FaultServer, retry_after: str, low: float, high: float) -> None:
    fault_server.retry_after = http_date(4) if retry_after == "date" else retry_after
    provider, sleep = retrying(RetryConfig(max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.01))
    fault_server.script("429")
    await provider.complete(request(fault_server))
    assert len(sleep.delays) == 1 and low <= sleep.delays[0] <= high


async def test_retry_after_is_capped(fault_server: FaultServer) -> None:
    fault_server.retry_after = "3600"
    provider, sleep = retrying(RetryConfig(max_attempts=2, backoff_base_s=0.0, backoff_max_s=0.0, retry_after_max_s=5))
    fault_server.script("503")
    await provider.complete(request(fault_server))
    assert sleep.delays == [5.0]


async def test_hang_past_the_timeout_is_a_timeout_then_retried(fault_server: FaultServer) -> None:
    provider, _ = retrying()
    fault_server.script("hang")
    c = await provider.complete(request(fault_server, timeout=0.5))
    assert c.choices[0].text == "Paris"
    assert provider.stats["error:ProviderTimeoutError"] == 1 and provider.stats["retries"] == 1


async def test_hang_every_time_raises_provider_timeout(fault_server: FaultServer) -> None:
    provider, _ = retrying(RetryConfig(max_attempts=2, backoff_base_s=0.0, backoff_max_s=0.0))
    with pytest.raises(ProviderTimeoutError, match=r"timed out after 0\.3s"):
        await provider.complete(request(fault_server, timeout=0.3, model="openai/fault-hang"))
    assert provider.stats["attempts"] == 2


async def test_latency_within_the_timeout_succeeds_without_retry(fault_server: FaultServer) -> None:
    provider, _ = retrying()
    fault_server.script("latency")
    c = await provider.complete(request(fault_server))
    assert c.choices[0].text == "Paris" and provider.stats["retries"] == 0


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        ("malformed", MalformedResponseError, "not valid JSON"),
        ("empty", MalformedResponseError, "no choices"),
        ("401", AuthenticationError, "authentication failed"),
        ("quota", QuotaExceededError, "out of quota or credit"),
        ("404", UnknownModelError, "does not know this model"),
        ("400", BadRequestError, "rejected the request.*parameter 'temperature'"),
        ("refusal", ContentRefusedError, "refused.*safety system"),
        ("content_filter", ContentRefusedError, "content filter"),
    ],
)
async def test_non_transient_fault_is_not_retried(
    fault_server: FaultServer, fault: str, error: type[Exception], match: str
) -> None:
    provider, sleep = retrying()
    fault_server.script(fault)
    with pytest.raises(error, match=match):
        await provider.complete(request(fault_server))
    assert fault_server.stats.requests == 1 and sleep.delays == []


async def test_bad_request_names_the_parameter(fault_server: FaultServer) -> None:
    provider, _ = retrying()
    fault_server.script("400")
    with pytest.raises(BadRequestError) as info:
        await provider.complete(request(fault_server))
    assert info.value.param == "temperature" and info.value.tier == "t"


async def test_wrong_n_returns_the_choices_that_came(fault_server: FaultServer) -> None:
    provider, _ = retrying()
    fault_server.script("wrong_n")
    c = await provider.complete(request(fault_server, n=3))
    assert len(c.choices) == 2


# --------------------------------------------------------------------------- through the cascade


def run(cfg: dict[str, Any], **kw: Any) -> Any:
    return Cascade(cfg).generate("What is the capital of France?", **kw)


async def test_cascade_retries_a_429_and_records_it(fault_server: FaultServer) -> None:
    fault_server.script("429")
    r = await run(cascade_config(tier(fault_server, "cheap", native_n=True), tier(fault_server, "strong", k=1)))
    assert r.tier == "cheap" and r.text == "Paris" and r.trace[0].retries == 1 and r.trace[0].errors == []


async def test_cascade_tier_that_always_fails_escalates_with_reason(fault_server: FaultServer) -> None:
    r = await run(cascade_config(tier(fault_server, "cheap", fault="500"), tier(fault_server, "strong", k=1)))
    cheap = r.trace[0]
    assert r.tier == "strong" and r.text == "Paris"
    assert cheap.decision == "escalate" and "no samples arrived" in cheap.reason
    assert len(cheap.errors) == 3 and all("server error 500" in e for e in cheap.errors)
    assert cheap.retries == 3 * 2  # k=3 single requests, 2 retries each


async def test_cascade_every_tier_failing_raises_with_trace(fault_server: FaultServer) -> None:
    cfg = cascade_config(tier(fault_server, "cheap", fault="429"), tier(fault_server, "strong", fault="drop", k=1))
    with pytest.raises(CascadeFailedError, match="no tier produced an answer") as info:
        await run(cfg)
    assert [t.tier for t in info.value.trace] == ["cheap", "strong"]
    assert [t.decision for t in info.value.trace] == ["escalate", "failed"]
    assert info.value.trace[1].retries == 2 and info.value.partial_answers == []


async def test_cascade_wrong_n_scores_the_samples_that_arrived(fault_server: FaultServer) -> None:
    fault_server.script("wrong_n")
    r = await run(cascade_config(tier(fault_server, "cheap", native_n=True, k=3), tier(fault_server, "strong", k=1)))
    assert r.tier == "cheap" and "(only 2/3 samples arrived)" in r.trace[0].reason


async def test_cascade_one_sample_of_two_escalates(fault_server: FaultServer) -> None:
    fault_server.script("wrong_n")
    r = await run(cascade_config(tier(fault_server, "cheap", native_n=True, k=2), tier(fault_server, "strong", k=1)))
    assert r.tier == "strong" and r.trace[0].decision == "escalate" and "only 1 sample" in r.trace[0].reason


@pytest.mark.parametrize(
    ("fault", "error"), [("401", AuthenticationError), ("quota", QuotaExceededError), ("404", UnknownModelError)]
)
async def test_cascade_config_errors_raise_at_once(
    fault_server: FaultServer, fault: str, error: type[Exception]
) -> None:
    with pytest.raises(error, match="tier 'cheap'"):
        await run(cascade_config(tier(fault_server, "cheap", fault=fault), tier(fault_server, "strong", k=1)))
    assert fault_server.stats.by_fault == {fault: 3}  # k requests, no retries, strong tier never called


async def test_cascade_malformed_and_empty_answers_escalate(fault_server: FaultServer) -> None:
    fault_server.script("malformed", "empty", "malformed")
    r = await run(cascade_config(tier(fault_server, "cheap"), tier(fault_server, "strong", k=1)))
    assert r.tier == "strong" and len(r.trace[0].errors) == 3 and r.trace[0].retries == 0


async def test_cascade_hang_with_deadline_raises_deadline_exceeded(fault_server: FaultServer) -> None:
    from semcascade import DeadlineExceededError

    cfg = cascade_config(tier(fault_server, "only", fault="hang", k=2, timeout=30.0))
    with pytest.raises(DeadlineExceededError, match="raise deadline_s") as info:
        await run(cfg, deadline_s=0.5)
    assert info.value.trace[0].decision == "failed"
    assert all("deadline" in e for e in info.value.trace[0].errors)
    await asyncio.sleep(0)


async def test_cascade_bad_litellm_params_raise_before_the_strong_tier_is_paid(fault_server: FaultServer) -> None:
    cfg = cascade_config(
        tier(fault_server, "cheap", litellm_params={"bogus_param": 1}), tier(fault_server, "strong", k=1)
    )
    with pytest.raises(BadRequestError, match=r"tier 'cheap'.*parameter 'bogus_param'") as info:
        await run(cfg)
    assert info.value.param == "bogus_param"
    assert fault_server.stats.requests == 3  # k requests, no retries, strong tier never called


async def test_cascade_refusal_is_recorded_and_escalates(fault_server: FaultServer) -> None:
    fault_server.script("refusal", "refusal", "refusal")
    r = await run(cascade_config(tier(fault_server, "cheap"), tier(fault_server, "strong", k=1)))
    cheap = r.trace[0]
    assert r.tier == "strong" and r.text == "Paris" and cheap.decision == "escalate"
    assert len(cheap.errors) == 3 and all("content refused" in e for e in cheap.errors)
    assert cheap.retries == 0 and fault_server.stats.requests == 4


async def test_cascade_content_filtered_choices_are_not_answers(fault_server: FaultServer) -> None:
    # A 200 whose choices were all emptied by the provider's filter: k empty "answers" agree
    # perfectly, but they are refusals, not an answer; the tier records them and escalates.
    fault_server.script("content_filter")
    r = await run(cascade_config(tier(fault_server, "cheap", native_n=True), tier(fault_server, "strong", k=1)))
    cheap = r.trace[0]
    assert r.tier == "strong" and r.text == "Paris" and cheap.samples == []
    assert cheap.errors and "content refused" in cheap.errors[0]
