"""The litellm provider: any litellm model string (Anthropic, Gemini, Bedrock, ...).

litellm is imported when a :class:`LiteLLMProvider` is built (a tier uses it),
never with :mod:`semcascade`.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Mapping
from typing import Any

from semcascade.errors import (
    ContentRefusedError,
    MalformedResponseError,
    PromptTooLongError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    UnknownModelError,
)
from semcascade.providers.base import Completion, CompletionRequest, register_provider
from semcascade.providers.http_errors import error_for_status, first_line, parse_retry_after, redact
from semcascade.providers.parsing import parse_completion

__all__ = ["LiteLLMProvider", "close_loop_clients"]


def _prepare_litellm_env() -> None:
    # Offline by default: never fetch the model cost map from the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@register_provider("litellm")
class LiteLLMProvider:
    """Real provider: ``litellm.acompletion`` for any litellm model string.

    One attempt per request: transient failures are raised as typed errors
    (:class:`RateLimitError` with ``retry_after``, :class:`ProviderUnavailableError`,
    :class:`ProviderTimeoutError`) for :class:`~semcascade.providers.retry.RetryingProvider`
    to retry; the cascade wraps its provider in one.
    """

    def __init__(self) -> None:
        _prepare_litellm_env()
        import litellm

        litellm.suppress_debug_info = True
        litellm.drop_params = True  # e.g. 'seed' or 'logprobs' for providers without them
        self._litellm = litellm

    async def complete(self, request: CompletionRequest) -> Completion:
        litellm = self._litellm
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": [dict(m) for m in request.messages],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "timeout": request.timeout,
            "num_retries": 0,
        }
        if request.n != 1:
            kwargs["n"] = request.n
        if request.api_base:
            kwargs["api_base"] = request.api_base
        if request.api_key:
            kwargs["api_key"] = request.api_key
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if request.logprobs:
            kwargs["logprobs"] = True
            if request.top_logprobs:
                kwargs["top_logprobs"] = request.top_logprobs
        kwargs.update(request.extra)
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as exc:  # mapped to the typed hierarchy below
            raise _map_litellm_error(exc, request) from None
        return parse_completion(response, request)


async def close_loop_clients() -> None:
    """Close the HTTP clients litellm cached for the running event loop.

    litellm keeps one client (and its keep-alive connections) per event loop and
    never closes it; a loop that is about to end (``asyncio.run`` in
    :meth:`Cascade.generate_sync`) must close them or leak their sockets.
    Clients of other loops (other threads) are left alone.
    """
    import sys

    litellm = sys.modules.get("litellm")
    cache = getattr(litellm, "in_memory_llm_clients_cache", None) if litellm is not None else None
    entries = getattr(cache, "cache_dict", None)
    if not isinstance(entries, dict):
        return
    suffix = f"-{id(asyncio.get_running_loop())}"  # litellm's cache keys end with the loop's id
    for key in [k for k in list(entries) if isinstance(k, str) and k.endswith(suffix)]:
        client = entries.pop(key, None)
        ttl = getattr(cache, "ttl_dict", None)
        if isinstance(ttl, dict):
            ttl.pop(key, None)
        close = getattr(client, "close", None) or getattr(client, "aclose", None)
        if close is None:
            continue
        try:
            result = close()
            if inspect.isawaitable(result):
                await result
        except Exception:  # closing is best effort; the loop is ending anyway
            continue


def _map_litellm_error(exc: Exception, request: CompletionRequest) -> ProviderError | PromptTooLongError:
    import litellm.exceptions as lx

    model, tier = request.model, request.tier
    text = redact(str(exc), request.api_key)
    first = first_line(text) or type(exc).__name__
    if isinstance(exc, lx.ContextWindowExceededError):
        return PromptTooLongError(tier or model, -1, -1, detail=first)
    if isinstance(exc, lx.Timeout):
        return ProviderTimeoutError(
            f"timed out after {request.timeout:g}s; raise the tier's 'timeout' or check the provider",
            model=model,
            tier=tier,
        )
    if isinstance(exc, lx.ContentPolicyViolationError):
        return ContentRefusedError(
            f"content refused by the provider's content policy ({first})", model=model, tier=tier
        )
    if isinstance(exc, lx.BadRequestError) and "LLM Provider NOT provided" in text:
        return UnknownModelError(
            "litellm cannot tell the provider from this model string; write it as 'provider/model' "
            "(e.g. openai/gpt-4o-mini) or 'local/NAME' for the embedded server",
            model=model,
            tier=tier,
        )
    if _in_chain(exc, ("JSONDecodeError",)):
        return MalformedResponseError(f"the provider's answer is not valid JSON: {first}", model=model, tier=tier)
    status = getattr(exc, "status_code", None)
    if isinstance(exc, lx.APIConnectionError) or _is_connection_drop(exc):
        # Includes a pooled keep-alive connection closed by the server as it was
        # reused (litellm reports it as a 500 "Connection error."): transient.
        return ProviderUnavailableError(
            f"cannot reach the provider: {first}; check 'api_base' and the network", model=model, tier=tier
        )
    if isinstance(exc, lx.RateLimitError):
        status = 429
    elif isinstance(exc, lx.NotFoundError):
        status = 404
    elif isinstance(exc, lx.AuthenticationError):
        status = 401
    elif isinstance(exc, lx.BadRequestError) and not isinstance(status, int):
        status = 400
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        error = {}
    if not isinstance(status, int):
        return ProviderError(f"{type(exc).__name__}: {first}", model=model, tier=tier)
    message = error.get("message")
    return error_for_status(
        status,
        request,
        message=str(message) if message and status in (400, 413, 422) else text,
        param=error.get("param"),
        code=error.get("code"),
        kind=error.get("type"),
        retry_after=_retry_after(exc),
    )


def _chain(exc: BaseException) -> list[BaseException]:
    seen: set[int] = set()
    out: list[BaseException] = []
    x: BaseException | None = exc
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        out.append(x)
        x = x.__cause__ or x.__context__
    return out


def _in_chain(exc: BaseException, names: tuple[str, ...]) -> bool:
    return any(type(x).__name__ in names for x in _chain(exc))


def _is_connection_drop(exc: BaseException) -> bool:
    """True when the chain shows the connection failed (litellm wraps it as a 500)."""
    return any(
        type(x).__name__ in ("ServerDisconnectedError", "ReadError", "RemoteProtocolError", "ConnectError")
        or "Connection error" in str(x)
        or "Server disconnected" in str(x)
        for x in _chain(exc)
    )


def _retry_after(exc: BaseException) -> float | None:
    """The provider's ``Retry-After`` from a litellm exception (its raw response headers)."""
    raw = getattr(exc, "response", None)
    for source in (getattr(exc, "litellm_response_headers", None), getattr(raw, "headers", None)):
        if source is None:
            continue
        try:
            seconds = parse_retry_after(dict(source.items()))
        except (AttributeError, TypeError):
            continue
        if seconds is not None:
            return seconds
    return None
