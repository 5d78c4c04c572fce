"""LiteLLMProvider: response parsing, token accounting and error mapping (litellm patched, no network)."""

from __future__ import annotations

from typing import Any

import httpx
import litellm
import litellm.exceptions as lx
import pytest

from semcascade._retry import RetryConfig, RetryingProvider
from semcascade.errors import (
    AuthenticationError,
    MalformedResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    UnknownModelError,
)
from semcascade.providers import CompletionRequest, LiteLLMProvider

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
            lx.AuthenticationError("bad key sk-secret-abcdef123456", llm_provider="openai", model="m"),
            AuthenticationError,
            "authentication failed",
        ),
    ],
)
async def test_errors_are_typed_and_redacted(
    monkeypatch: pytest.MonkeyPatch, exc: Exception, typ: type, text: str
) -> None:
    patch(monkeypatch, exc)
    with pytest.raises(typ, match=text) as info:
        await LiteLLMProvider().complete(REQ)
    assert "sk-secret-abcdef123456" not in str(info.value)
    assert "tier 't'" in str(info.value)
