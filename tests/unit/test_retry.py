"""RetryingProvider against MockProvider: what is retried, how long it waits, when it gives up."""

from __future__ import annotations

import asyncio
import email.utils
import random
from typing import Any

import pytest

from semcascade import (
    AuthenticationError,
    Cascade,
    ConfigError,
    MalformedResponseError,
    MockProvider,
    PromptTooLongError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    RetryConfig,
    RetryingProvider,
    UnknownModelError,
)
from semcascade._deadline import deadline_scope
from semcascade.providers import Completion, CompletionRequest
from semcascade.providers.retry import backoff_delay, count_retries, parse_retry_after

REQ = CompletionRequest(model="m", messages=[{"role": "user", "content": "q"}], tier="cheap", timeout=5.0)
OK = MockProvider.texts("m", ["fine"])


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def failing(*outcomes: BaseException | Completion) -> MockProvider:
    queue = list(outcomes)

    def handler(req: CompletionRequest) -> Completion:
        out = queue.pop(0) if queue else OK
        if isinstance(out, BaseException):
            raise out
        return out

    return MockProvider(handler)


def wrap(inner: MockProvider, policy: RetryConfig | None = None, **kw: Any) -> tuple[RetryingProvider, RecordingSleep]:
    sleep = RecordingSleep()
    return RetryingProvider(inner, policy or RetryConfig(), sleep=sleep, rng=random.Random(0), **kw), sleep


# --------------------------------------------------------------------------- backoff arithmetic


def test_full_jitter_delays_lie_within_the_doubling_cap() -> None:
    policy = RetryConfig(backoff_base_s=0.5, backoff_max_s=3.0)
    rng = random.Random(1)
    for retry, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        delays = [backoff_delay(policy, retry, rng=rng) for _ in range(300)]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > 0.8 * cap and min(delays) < 0.2 * cap  # spread over the whole range


def test_without_jitter_the_delay_is_the_cap() -> None:
    policy = RetryConfig(backoff_base_s=0.25, backoff_max_s=1.0, jitter=False)
    assert [backoff_delay(policy, r) for r in (1, 2, 3, 4)] == [0.25, 0.5, 1.0, 1.0]


def test_retry_after_is_a_floor_capped_by_its_max() -> None:
    policy = RetryConfig(backoff_base_s=0.1, backoff_max_s=0.1, retry_after_max_s=10.0)
    assert backoff_delay(policy, 1, retry_after=4.0) == 4.0
    assert backoff_delay(policy, 1, retry_after=60.0) == 10.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"Retry-After": email.utils.formatdate(1_000_030, usegmt=True)}, 30.0),
        ({"Retry-After": email.utils.formatdate(999_000, usegmt=True)}, 0.0),  # in the past
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "-3"}, 0.0),
        ({}, None),
        (None, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str] | None, expected: float | None) -> None:
    assert parse_retry_after(headers, now=1_000_000) == expected


def test_bad_retry_config_is_a_config_error() -> None:
    cfg = {"tiers": [{"name": "t", "model": "m", "retry": {"backoff_base_s": 5, "backoff_max_s": 1}}]}
    with pytest.raises(ConfigError, match=r"tiers\[0\]\.retry: backoff_base_s must not exceed backoff_max_s"):
        Cascade(cfg)
    with pytest.raises(ConfigError, match=r"tiers\[0\]\.retry\.max_attempts"):
        Cascade({"tiers": [{"name": "t", "model": "m", "retry": {"max_attempts": 0}}]})


# --------------------------------------------------------------------------- what is retried


@pytest.mark.parametrize(
    "error",
    [
        RateLimitError("busy", model="m"),
        ProviderUnavailableError("server error 502", model="m"),
        ProviderTimeoutError("timed out", model="m"),
    ],
)
async def test_transient_errors_are_retried_then_succeed(error: ProviderError) -> None:
    inner = failing(error, error)
    provider, sleep = wrap(inner)
    assert (await provider.complete(REQ)).choices[0].text == "fine"
    assert len(inner.calls) == 3 and len(sleep.delays) == 2
    assert provider.stats["retries"] == 2 and provider.stats["attempts"] == 3


@pytest.mark.parametrize(
    "error",
    [
        UnknownModelError("no such model", model="m"),
        AuthenticationError("bad key", model="m"),
        MalformedResponseError("garbage", model="m"),
        ProviderError("something else", model="m"),
        PromptTooLongError("cheap", 9000, 4096),
    ],
)
async def test_config_and_other_errors_are_not_retried(error: Exception) -> None:
    inner = failing(error)
    provider, sleep = wrap(inner)
    with pytest.raises(type(error)):
        await provider.complete(REQ)
    assert len(inner.calls) == 1 and sleep.delays == []


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    inner = failing(*[RateLimitError(f"busy {i}", model="m") for i in range(10)])
    provider, sleep = wrap(inner, RetryConfig(max_attempts=4))
    with pytest.raises(RateLimitError, match="busy 3"):
        await provider.complete(REQ)
    assert len(inner.calls) == 4 and len(sleep.delays) == 3


async def test_max_attempts_one_never_retries() -> None:
    inner = failing(RateLimitError("busy", model="m"))
    provider, sleep = wrap(inner, RetryConfig(max_attempts=1))
    with pytest.raises(RateLimitError):
        await provider.complete(REQ)
    assert len(inner.calls) == 1 and sleep.delays == []


async def test_retry_after_from_the_error_sets_the_wait() -> None:
    inner = failing(RateLimitError("busy", model="m", retry_after=2.5))
    provider, sleep = wrap(inner, RetryConfig(backoff_base_s=0.01, backoff_max_s=0.01))
    await provider.complete(REQ)
    assert sleep.delays == [2.5]


async def test_policy_is_per_tier() -> None:
    strict = RetryConfig(max_attempts=1)
    inner = failing(RateLimitError("busy", model="m"), RateLimitError("busy", model="m"))
    provider = RetryingProvider(inner, {"cheap": strict}, default=RetryConfig(), sleep=RecordingSleep())
    assert provider.policy_for("cheap") is strict and provider.policy_for("other").max_attempts == 3
    with pytest.raises(RateLimitError):
        await provider.complete(REQ)  # tier 'cheap': one attempt
    other = CompletionRequest(model="m", messages=REQ.messages, tier="other")
    assert (await provider.complete(other)).choices[0].text == "fine"  # default policy retried once


async def test_retries_are_counted_per_tier_in_the_call_scope() -> None:
    inner = failing(RateLimitError("busy", model="m"))
    provider, _ = wrap(inner)
    with count_retries() as counts:
        await provider.complete(REQ)
        await provider.complete(CompletionRequest(model="m", messages=REQ.messages, tier="strong"))
    assert counts == {"cheap": 1}


# --------------------------------------------------------------------------- timeouts and deadlines


async def hang_forever(req: CompletionRequest) -> Completion:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def test_timeout_is_enforced_even_if_the_provider_ignores_it() -> None:
    inner = MockProvider(hang_forever)
    provider, sleep = wrap(inner, RetryConfig(max_attempts=2))
    req = CompletionRequest(model="m", messages=REQ.messages, tier="cheap", timeout=0.05)
    with pytest.raises(ProviderTimeoutError, match=r"timed out after 0\.05s"):
        await provider.complete(req)
    assert len(inner.calls) == 2 and len(sleep.delays) == 1


async def test_requests_get_the_remaining_deadline_as_their_timeout() -> None:
    inner = failing()
    provider, _ = wrap(inner)
    with deadline_scope(2.0):
        await provider.complete(REQ)  # REQ.timeout is 5 s
    assert 0 < inner.calls[0].timeout <= 2.0


async def test_no_backoff_sleep_past_the_deadline() -> None:
    inner = failing(RateLimitError("busy", model="m", retry_after=30.0))
    provider, sleep = wrap(inner)
    with deadline_scope(1.0), pytest.raises(RateLimitError):
        await provider.complete(REQ)
    assert sleep.delays == [] and len(inner.calls) == 1


async def test_no_attempt_after_the_deadline() -> None:
    inner = failing()
    provider, _ = wrap(inner)
    with deadline_scope(0.0), pytest.raises(ProviderTimeoutError, match="deadline passed before this request"):
        await provider.complete(REQ)
    assert inner.calls == []


async def test_hang_is_cut_at_the_deadline_not_the_timeout() -> None:
    inner = MockProvider(hang_forever)
    provider, _ = wrap(inner)
    with deadline_scope(0.1), pytest.raises(ProviderTimeoutError, match="deadline was reached"):
        await provider.complete(REQ)
    assert len(inner.calls) == 1  # no retry: no time left


async def test_cascade_wraps_its_provider_once_with_each_tiers_policy() -> None:
    cfg = {
        "tiers": [
            {"name": "cheap", "model": "m", "retry": {"max_attempts": 5}},
            {"name": "strong", "model": "s", "k": 1},
        ]
    }
    given = failing()
    cascade = Cascade(cfg, provider=given)
    stack = cascade.stack
    assert stack.caller is stack.retrying and stack.retrying.inner is given is cascade.provider
    assert (
        stack.retrying.policy_for("cheap").max_attempts == 5 and stack.retrying.policy_for("strong").max_attempts == 3
    )
    own = RetryingProvider(failing())
    c2 = Cascade(cfg, provider=own)
    assert c2.stack.caller is own and c2.stack.retrying is own  # an already-retrying provider is not wrapped twice
