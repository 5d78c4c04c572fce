"""One contract, both providers: the native OpenAI-compatible client and litellm, over real HTTP, against the
loopback fault server.

Every test runs once per provider. The same server answer must give the same
Completion (n, logprobs, per-choice usage) or the same typed error, be retried
or not in the same way, never show the key, and leave no socket open once the
provider's clients are closed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from fault_fixtures import FAST_RETRY, KEY_ENV, cascade_config, fault_server_fixture, fault_server_session, tier  # noqa: F401

from semcascade import (
    AuthenticationError,
    BadRequestError,
    Cascade,
    CascadeFailedError,
    ContentRefusedError,
    MalformedResponseError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    QuotaExceededError,
    RateLimitError,
    RetryConfig,
    RetryingProvider,
    UnknownModelError,
)
from semcascade._budget import prompt_token_bound, tier_upper_bound
from semcascade.providers import CompletionRequest, Provider, StreamChunk, close_loop_clients, create_provider
from semcascade.sampling import PROBE_MESSAGES, clear_native_n_probes
from semcascade.testing import FaultServer
from semcascade.testing.load import open_tcp_sockets

PROVIDER_NAMES = ("openai", "litellm")

#: a key with no well-known shape: only the exact-key redaction can hide it
PLANTED_KEY = "planted0key0" + "7f3a9c2e5b8d1"


@pytest.fixture(params=PROVIDER_NAMES)
def provider_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def provider(provider_name: str) -> Iterator[Provider]:
    yield create_provider(provider_name)


def retrying(base: Provider, **policy: Any) -> tuple[RetryingProvider, RecordingSleep]:
    sleep = RecordingSleep()
    return RetryingProvider(base, RetryConfig(**{**FAST_RETRY, **policy}), sleep=sleep), sleep


def request(server: FaultServer, *, model: str = "openai/contract-model", **over: Any) -> CompletionRequest:
    fields: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 8,
        "api_base": server.base_url,
        "api_key": os.environ[KEY_ENV],
        "timeout": 5.0,
        "tier": "t",
    }
    fields.update(over)
    return CompletionRequest(**fields)


def three_word_answer(model: str, prompt: str, index: int, rng: Any) -> str:
    return " ".join(["Paris"] * (index + 1))  # choice i has i+1 tokens


# --------------------------------------------------------------------------- answers


async def test_n_choices(fault_server: FaultServer, provider: Provider) -> None:
    c = await provider.complete(request(fault_server, n=3))
    assert [ch.text for ch in c.choices] == ["Paris"] * 3 and c.prompt_tokens > 0
    assert fault_server.requests_seen[-1]["n"] == 3 and fault_server.requests_seen[-1]["model"] == "contract-model"


async def test_logprobs(fault_server: FaultServer, provider: Provider) -> None:
    fault_server.answer = three_word_answer
    c = await provider.complete(request(fault_server, n=2, logprobs=True, top_logprobs=2))
    first, second = c.choices
    assert first.logprobs is not None and [t.token for t in first.logprobs] == ["Paris"]
    assert second.logprobs is not None and [t.logprob for t in second.logprobs] == pytest.approx([-0.1, -0.2])
    assert set(second.logprobs[0].top) == {"Paris", "alt0"}
    assert fault_server.requests_seen[-1]["top_logprobs"] == 2


@pytest.mark.parametrize("logprobs", [True, False])
async def test_usage_with_n_when_the_server_reports_one_choice(
    fault_server: FaultServer, provider: Provider, logprobs: bool
) -> None:
    # llama-server with n>1 reports one choice's completion tokens: count per choice from the logprobs,
    # else split what was reported by length, and say it was estimated.
    fault_server.answer = three_word_answer
    fault_server.usage = "first_choice"
    c = await provider.complete(request(fault_server, n=3, logprobs=logprobs))
    if logprobs:
        assert [ch.completion_tokens for ch in c.choices] == [1, 2, 3] and c.completion_tokens == 6
        assert not any(ch.tokens_estimated for ch in c.choices)
    else:
        assert all(ch.tokens_estimated for ch in c.choices) and c.completion_tokens == pytest.approx(1, abs=1)


# --------------------------------------------------------------------------- transient faults: retried


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("429", RateLimitError),
        ("500", ProviderUnavailableError),
        ("503", ProviderUnavailableError),
        ("drop", ProviderUnavailableError),
    ],
)
async def test_transient_fault_is_retried(
    fault_server: FaultServer, provider: Provider, fault: str, error: type
) -> None:
    wrapped, sleep = retrying(provider)
    fault_server.script(fault)
    c = await wrapped.complete(request(fault_server))
    assert c.choices[0].text == "Paris" and fault_server.stats.by_fault == {fault: 1, "ok": 1}
    assert wrapped.stats[f"error:{error.__name__}"] == 1 and len(sleep.delays) == 1


@pytest.mark.parametrize("fault", ["429", "500", "503", "drop"])
async def test_transient_fault_every_time_is_typed_after_max_attempts(
    fault_server: FaultServer, provider: Provider, fault: str
) -> None:
    wrapped, _ = retrying(provider)
    with pytest.raises((RateLimitError, ProviderUnavailableError), match="tier 't'"):
        await wrapped.complete(request(fault_server, model=f"openai/fault-{fault}"))
    assert fault_server.stats.requests == 3


async def test_retry_after_is_read_and_honoured(fault_server: FaultServer, provider: Provider) -> None:
    fault_server.retry_after = "2.5"
    with pytest.raises(RateLimitError) as info:
        await provider.complete(request(fault_server, model="openai/fault-429"))
    assert info.value.retry_after == 2.5
    wrapped, sleep = retrying(provider, max_attempts=2, retry_after_max_s=10.0)
    fault_server.script("503")
    await wrapped.complete(request(fault_server))
    assert sleep.delays == [2.5]


async def test_timeout_is_typed_and_retried(fault_server: FaultServer, provider: Provider) -> None:
    wrapped, _ = retrying(provider)
    fault_server.script("hang")
    c = await wrapped.complete(request(fault_server, timeout=0.5))
    assert c.choices[0].text == "Paris" and wrapped.stats["error:ProviderTimeoutError"] == 1
    with pytest.raises(ProviderTimeoutError, match="timed out"):
        await provider.complete(request(fault_server, model="openai/fault-hang", timeout=0.3))


# --------------------------------------------------------------------------- answered faults: typed, not retried


@pytest.mark.parametrize(
    ("fault", "error", "match"),
    [
        ("malformed", MalformedResponseError, "not valid JSON"),
        ("empty", MalformedResponseError, "no choices"),
        ("401", AuthenticationError, "authentication failed"),
        ("quota", QuotaExceededError, "out of quota or credit.*exceeded your current quota"),
        ("404", UnknownModelError, "does not know this model"),
        ("400", BadRequestError, "parameter 'temperature'"),
        ("refusal", ContentRefusedError, "content refused.*safety system"),
        ("content_filter", ContentRefusedError, "content refused.*content filter"),
    ],
)
async def test_answered_fault_is_typed_and_not_retried(
    fault_server: FaultServer, provider: Provider, fault: str, error: type, match: str
) -> None:
    wrapped, sleep = retrying(provider)
    fault_server.script(fault)
    with pytest.raises(error, match=match) as info:
        await wrapped.complete(request(fault_server))
    assert fault_server.stats.requests == 1 and sleep.delays == [] and info.value.tier == "t"
    if error is BadRequestError:
        assert info.value.param == "temperature"


async def test_bad_request_names_the_unknown_parameter(fault_server: FaultServer, provider: Provider) -> None:
    with pytest.raises(BadRequestError, match="parameter 'frobnicate'") as info:
        await provider.complete(request(fault_server, extra={"frobnicate": 3}))
    assert info.value.param == "frobnicate"


# --------------------------------------------------------------------------- keys never appear


@pytest.mark.parametrize("fault", ["echo_key", "401", "400", "refusal", "429", "500", "malformed", "404"])
async def test_the_key_never_appears_in_an_error(fault_server: FaultServer, provider: Provider, fault: str) -> None:
    with pytest.raises(ProviderError) as info:
        await provider.complete(request(fault_server, model=f"openai/fault-{fault}", api_key=PLANTED_KEY))
    if fault == "echo_key":  # the server did quote it back
        assert "for key *** (the request was sent with Authorization: Bearer ***)" in str(info.value)
    texts = [str(info.value), repr(info.value), *map(str, info.value.args)]
    assert not [t for t in texts if PLANTED_KEY in t]


async def test_the_key_never_appears_in_a_trace(
    fault_server: FaultServer, provider_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEMCASCADE_PLANTED_KEY", PLANTED_KEY)
    over = {"api_key_env": "SEMCASCADE_PLANTED_KEY", "provider": provider_name}
    cfg = cascade_config(
        tier(fault_server, "cheap", fault="echo_key", **over), tier(fault_server, "strong", fault="500", k=1, **over)
    )
    async with Cascade(cfg) as cascade:
        with pytest.raises(CascadeFailedError) as info:
            await cascade.generate("What is the capital of France?")
    dumped = [t.model_dump_json() for t in info.value.trace]
    assert info.value.trace[0].errors and "***" in info.value.trace[0].errors[0]
    assert not [d for d in [str(info.value), repr(cascade.stack), *dumped] if PLANTED_KEY in d]


# --------------------------------------------------------------------------- streaming


async def test_stream(fault_server: FaultServer, provider: Provider) -> None:
    fault_server.answer = three_word_answer
    chunks: list[StreamChunk] = [c async for c in provider.stream(request(fault_server, n=2))]  # type: ignore[attr-defined]
    *deltas, last = chunks
    text = {i: "".join(c.text for c in deltas if c.index == i) for i in (0, 1)}
    assert text == {0: "Paris", 1: "Paris Paris"}
    assert {c.finish_reason for c in deltas if c.finish_reason} == {"stop"}  # (litellm keeps one choice's)
    assert last.done and last.completion_tokens == 3 and last.prompt_tokens and not last.tokens_estimated
    assert fault_server.requests_seen[-1]["stream"] is True


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("429", RateLimitError),
        ("drop", ProviderUnavailableError),
        ("malformed", MalformedResponseError),
        ("400", BadRequestError),
    ],
)
async def test_stream_faults_are_typed(fault_server: FaultServer, provider: Provider, fault: str, error: type) -> None:
    with pytest.raises(error):
        async for _ in provider.stream(request(fault_server, model=f"openai/fault-{fault}")):  # type: ignore[attr-defined]
            pass


# --------------------------------------------------------------------------- client lifetime


async def test_no_socket_is_left_open_once_the_clients_are_closed(
    fault_server: FaultServer, provider: Provider
) -> None:
    before = open_tcp_sockets(fault_server.port)
    wrapped, _ = retrying(provider)
    fault_server.script("500", "drop", "ok", "429")
    for _ in range(4):
        await wrapped.complete(request(fault_server, n=2))
    assert open_tcp_sockets(fault_server.port)[0] > before[0]  # kept alive for reuse...
    await close_loop_clients(wrapped)
    for _ in range(100):  # ... until closed (the server side notices a moment later)
        if open_tcp_sockets(fault_server.port) == before:
            break
        await fault_server_sleep()
    assert open_tcp_sockets(fault_server.port) == before


async def fault_server_sleep() -> None:
    import asyncio

    await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- native n, probed once per endpoint


def probe_config(server: FaultServer, provider_name: str, **over: Any) -> dict[str, Any]:
    cheap = tier(server, "cheap", provider=provider_name, k=3, **{"native_n": None, **over})
    return cascade_config(cheap, tier(server, "strong", provider=provider_name, k=1))


def probes_and_ns(server: FaultServer) -> tuple[int, list[int]]:
    seen = list(server.requests_seen)
    probes = sum(r["messages"] == list(PROBE_MESSAGES) for r in seen)
    return probes, [int(r.get("n") or 1) for r in seen if r["messages"] != list(PROBE_MESSAGES)]


@pytest.mark.parametrize(("n_support", "native"), [("yes", True), ("ignore", False), ("reject", False)])
async def test_native_n_is_probed_once_per_endpoint(
    fault_server: FaultServer, provider_name: str, n_support: str, native: bool
) -> None:
    clear_native_n_probes()
    fault_server.n_support = n_support
    async with Cascade(probe_config(fault_server, provider_name)) as cascade:
        r = await cascade.generate("What is the capital of France?")
        assert r.tier == "cheap" and r.trace[0].errors == [] and len(r.trace[0].samples) == 3
        # the probe's tokens (the server counts a word a token) were paid for: they are in the tier's usage
        prompt, probe = 6, len(PROBE_MESSAGES[0]["content"].split())
        paid_probe = 0 if n_support == "reject" else probe
        assert r.trace[0].prompt_tokens == (prompt if native else 3 * prompt) + paid_probe
        assert probes_and_ns(fault_server) == (1, [3] if native else [1, 1, 1])
        fault_server.reset_stats()
        await cascade.generate("What is the capital of Italy?")
        assert probes_and_ns(fault_server) == (0, [3] if native else [1, 1, 1])  # the answer is remembered
    clear_native_n_probes()


async def test_the_budget_reservation_covers_the_n_probe(fault_server: FaultServer, provider_name: str) -> None:
    clear_native_n_probes()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    async with Cascade(probe_config(fault_server, provider_name)) as cascade:
        cheap = cascade.tiers[0]
        before = tier_upper_bound(cheap, messages)  # the endpoint is still to be probed: the probe is in the bound
        r = await cascade.generate(messages)
        billed = r.trace[0].prompt_tokens + r.trace[0].completion_tokens
        assert probes_and_ns(fault_server)[0] == 1 and billed <= before.tokens
        after = tier_upper_bound(cheap, messages)  # probed: no probe to pay for again
        assert before.tokens - after.tokens >= prompt_token_bound(list(PROBE_MESSAGES)) + 2
    clear_native_n_probes()


async def test_a_tier_that_says_native_n_is_not_probed(fault_server: FaultServer, provider_name: str) -> None:
    clear_native_n_probes()
    for native_n, ns in ((False, [1, 1, 1]), (True, [3])):
        fault_server.reset_stats()
        async with Cascade(probe_config(fault_server, provider_name, native_n=native_n)) as cascade:
            await cascade.generate("What is the capital of France?")
        assert probes_and_ns(fault_server) == (0, ns)


async def test_a_failed_probe_is_asked_again(fault_server: FaultServer, provider_name: str) -> None:
    clear_native_n_probes()
    fault_server.script("500", "500", "500")  # the probe and its retries
    async with Cascade(probe_config(fault_server, provider_name)) as cascade:
        r = await cascade.generate("What is the capital of France?")
        assert r.tier == "cheap" and probes_and_ns(fault_server) == (3, [1, 1, 1])
        fault_server.reset_stats()
        await cascade.generate("What is the capital of France?")
        assert probes_and_ns(fault_server) == (1, [3])
    clear_native_n_probes()
