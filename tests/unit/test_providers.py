"""LiteLLMProvider: response parsing, token accounting and error mapping (litellm patched, no network)."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import litellm
import litellm.exceptions as lx
import pytest

from semcascade.errors import (
    AuthenticationError,
    BadRequestError,
    ContentRefusedError,
    MalformedResponseError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    UnknownModelError,
)
from semcascade.providers import CompletionRequest, LiteLLMProvider
from semcascade.providers.retry import RetryConfig, RetryingProvider

REQ = CompletionRequest(
    model="openai/m", messages=[{"role": "user", "content": "q"}], n=2, api_key="sk-secret-abcdef123456", tier="t"
)


def response(texts: list[str], *, logprobs: bool = True, completion_tokens: int = 3) -> dict[str, Any]:
    choices = []
    for i, t in enumerate(texts):
        lp = {"content": [{"token": w, "logprob": -0.5, "top_logprobs": []} for w in t.split()]} if logprobs else None
        choices.append(
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop", "logprobs": lp}
        )
    return {"model": "m", "choices": choices, "usage": {"prompt_tokens": 11, "completion_tokens": completion_tokens}}


def patch(monkeypatch: pytest.MonkeyPatch, *outcomes: Any) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    queue = list(outcomes)

    async def fake(**kwargs: Any) -> Any:
        calls.append(kwargs)
        out = queue.pop(0)
        if isinstance(out, BaseException):
            raise out
        return out

    monkeypatch.setattr(litellm, "acompletion", fake)
    return calls


async def test_tokens_counted_per_choice_from_logprobs(monkeypatch: pytest.MonkeyPatch) -> None:
    # llama-server with n>1 reports one choice's tokens in usage: count each choice itself.
    calls = patch(monkeypatch, response(["a b c", "d e"], completion_tokens=3))
    c = await LiteLLMProvider().complete(REQ)
    assert [ch.completion_tokens for ch in c.choices] == [3, 2]
    assert c.completion_tokens == 5 and c.prompt_tokens == 11
    assert calls[0]["n"] == 2 and calls[0]["api_key"] == "sk-secret-abcdef123456"


async def test_tokens_estimated_without_logprobs(monkeypatch: pytest.MonkeyPatch) -> None:
    patch(monkeypatch, response(["aaaa", "aaaaaaaaaaaa"], logprobs=False, completion_tokens=8))
    c = await LiteLLMProvider().complete(REQ)
    assert [ch.completion_tokens for ch in c.choices] == [2, 6]
    assert all(ch.tokens_estimated for ch in c.choices)


async def test_empty_choices_is_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    patch(monkeypatch, {"model": "m", "choices": [], "usage": {}})
    with pytest.raises(MalformedResponseError, match="no choices"):
        await LiteLLMProvider().complete(REQ)


async def test_connection_drop_is_transient_and_retried_by_the_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    # LiteLLMProvider makes one attempt; the retry loop lives in RetryingProvider only.
    drop = lx.InternalServerError("OpenAIException - Connection error.", llm_provider="openai", model="m")
    calls = patch(monkeypatch, drop, drop, response(["x"]))
    with pytest.raises(ProviderUnavailableError, match="cannot reach the provider"):
        await LiteLLMProvider().complete(REQ)
    assert len(calls) == 1
    fast = RetryConfig(max_attempts=3, backoff_base_s=0.0, backoff_max_s=0.0)
    c = await RetryingProvider(LiteLLMProvider(), fast).complete(REQ)
    assert len(calls) == 3 and c.choices[0].text == "x"


async def test_5xx_is_transient_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = httpx.Response(503, headers={"Retry-After": "2"}, request=httpx.Request("POST", "http://x"))
    err = lx.ServiceUnavailableError("OpenAIException - overloaded", llm_provider="openai", model="m", response=raw)
    patch(monkeypatch, err)
    with pytest.raises(ProviderUnavailableError, match="server error 503") as info:
        await LiteLLMProvider().complete(REQ)
    assert info.value.retry_after == 2.0


@pytest.mark.parametrize(
    ("exc", "typ", "text"),
    [
        (lx.Timeout("slow", model="m", llm_provider="openai"), ProviderTimeoutError, "timed out"),
        (lx.RateLimitError("too many", llm_provider="openai", model="m"), RateLimitError, "rate-limited"),
        (lx.NotFoundError("model not found", llm_provider="openai", model="m"), UnknownModelError, "does not know"),
        (
            lx.AuthenticationError("bad key", llm_provider="openai", model="m"),
            AuthenticationError,
            "authentication failed",
        ),
        (
            lx.BadRequestError("Unrecognized request argument supplied: top_k", llm_provider="openai", model="m"),
            BadRequestError,
            "parameter 'top_k'",
        ),
        (
            lx.ContentPolicyViolationError("flagged", llm_provider="openai", model="m"),
            ContentRefusedError,
            "content refused",
        ),
    ],
)
async def test_errors_are_typed(monkeypatch: pytest.MonkeyPatch, exc: Exception, typ: type, text: str) -> None:
    patch(monkeypatch, exc)
    with pytest.raises(typ, match=text) as info:
        await LiteLLMProvider().complete(REQ)
    assert "tier 't'" in str(info.value)


#: a key with no well-known prefix: only the exact-key redaction can catch it
PLAIN_KEY = "plainkey0123456789"


@pytest.mark.parametrize(
    ("make", "typ"),
    [
        (
            lambda key: lx.InternalServerError(f"upstream rejected key {key}", llm_provider="openai", model="m"),
            ProviderUnavailableError,
        ),
        (
            lambda key: lx.RateLimitError(f"quota of key {key} exhausted", llm_provider="openai", model="m"),
            RateLimitError,
        ),
        (
            lambda key: lx.BadRequestError(f"bad header Authorization: Bearer {key}", llm_provider="openai", model="m"),
            BadRequestError,
        ),
        (lambda key: lx.NotFoundError(f"no model for key {key}", llm_provider="openai", model="m"), UnknownModelError),
        (lambda key: lx.APIError(418, f"teapot for {key}", llm_provider="openai", model="m"), ProviderError),
    ],
)
@pytest.mark.parametrize("key", ["sk-secret-abcdef123456", PLAIN_KEY])
async def test_the_key_is_redacted_from_errors_that_quote_the_provider(
    monkeypatch: pytest.MonkeyPatch, make: Any, typ: type, key: str
) -> None:
    # The provider's message (which echoes the key) is quoted in the error: the key must not survive.
    exc = make(key)
    assert key in str(exc)
    patch(monkeypatch, exc)
    with pytest.raises(typ) as info:
        await LiteLLMProvider().complete(dataclasses.replace(REQ, api_key=key))
    assert key not in str(info.value) and "***" in str(info.value)
