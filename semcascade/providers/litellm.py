"""The litellm provider: any litellm model string (Anthropic, Gemini, Bedrock, ...).

litellm is imported when a :class:`LiteLLMProvider` is built (a tier uses it),
never with :mod:`semcascade`.

HTTP clients: for the models litellm sends through the openai SDK (``openai/...``,
any OpenAI-compatible ``api_base``), the provider hands litellm an SDK client
over an HTTP client of its own, one per event loop, through litellm's public
``client=`` argument, and closes it in :meth:`LiteLLMProvider.aclose`; no
litellm cache is touched. Other litellm backends keep clients that litellm
manages itself.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any

from semcascade._litellm_env import prepare_litellm_env
from semcascade.errors import (
    ContentRefusedError,
    MalformedResponseError,
    PromptTooLongError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    UnknownModelError,
)
from semcascade.providers.base import Completion, CompletionRequest, StreamChunk
from semcascade.providers.clients import LoopClients
from semcascade.providers.http_errors import error_for_status, first_line, parse_retry_after, redact
from semcascade.providers.parsing import _get, parse_completion

__all__ = ["LiteLLMProvider"]

#: litellm providers that litellm sends through the openai SDK (which takes a ``client=`` of ours)
_OPENAI_SDK_ROUTES = ("openai", "custom_openai")


_prepare_litellm_env = prepare_litellm_env  # the name other modules and tests import


class LiteLLMProvider:
    """Real provider: ``litellm.acompletion`` for any litellm model string.

    One attempt per request: transient failures are raised as typed errors
    (:class:`RateLimitError` with ``retry_after``, :class:`ProviderUnavailableError`,
    :class:`ProviderTimeoutError`) for :class:`~semcascade.providers.retry.RetryingProvider`
    to retry; the cascade wraps its provider in one.

    ``pool_size``: keep-alive connections kept per event loop (the stack sizes
    it from the tiers' ``max_concurrency``; default: the openai SDK's).
    :meth:`aclose` closes the running loop's clients.
    """

    def __init__(self, *, pool_size: int | None = None) -> None:
        _prepare_litellm_env()
        import litellm

        litellm.suppress_debug_info = True
        litellm.drop_params = True  # e.g. 'seed' or 'logprobs' for providers without them
        self._litellm = litellm
        self.pool_size = pool_size
        self._clients: LoopClients[_LoopClients] = LoopClients(self._new_clients)
        self._routes: dict[tuple[str, str | None], str | None] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LiteLLMProvider(pool_size={self.pool_size})"

    def _new_clients(self) -> _LoopClients:
        import openai

        kwargs: dict[str, Any] = {}
        if self.pool_size is not None:
            limits = _http_module(openai.DefaultAsyncHttpxClient).Limits
            kwargs["limits"] = limits(max_connections=None, max_keepalive_connections=self.pool_size)
        return _LoopClients(openai.DefaultAsyncHttpxClient(**kwargs))

    def _route(self, request: CompletionRequest) -> str | None:
        """litellm's provider for the request's model (its public ``get_llm_provider``), memoised."""
        key = (request.model, request.api_base)
        with self._lock:
            if key in self._routes:
                return self._routes[key]
        try:
            route: str | None = str(self._litellm.get_llm_provider(model=request.model, api_base=request.api_base)[1])
        except Exception:  # litellm cannot tell: let acompletion say so (and map its error)
            route = None
        with self._lock:
            self._routes[key] = route
        return route

    def _sdk_client(self, request: CompletionRequest) -> Any | None:
        """An openai SDK client over this provider's HTTP client of the running loop, when litellm would use one."""
        if self._route(request) not in _OPENAI_SDK_ROUTES:
            return None
        key = request.api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            return None  # litellm raises its authentication error, mapped as usual
        clients = self._clients.get()
        ident = (request.api_base, hashlib.sha256(key.encode()).hexdigest())
        client = clients.sdk.get(ident)
        if client is None:
            import openai

            client = clients.sdk[ident] = openai.AsyncOpenAI(
                api_key=key, base_url=request.api_base, http_client=clients.http, max_retries=0
            )
        return client

    async def aclose(self) -> None:
        """Close this provider's HTTP client of the running event loop (later calls open a new one)."""
        await self._clients.aclose()

    def _kwargs(self, request: CompletionRequest) -> dict[str, Any]:
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
        client = self._sdk_client(request) if "client" not in kwargs else None
        if client is not None:
            kwargs["client"] = client
        return kwargs

    async def complete(self, request: CompletionRequest) -> Completion:
        kwargs = self._kwargs(request)
        try:
            response = await self._litellm.acompletion(**kwargs)
        except Exception as exc:  # mapped to the typed hierarchy below
            raise _map_litellm_error(exc, request) from None
        return parse_completion(response, request)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        """The completion as it is generated (litellm's ``stream=True``): text deltas, then a ``done`` chunk
        with the usage (counted from the deltas, ``tokens_estimated``, when the provider sent none)."""
        kwargs = {**self._kwargs(request), "stream": True, "stream_options": {"include_usage": True}}
        counted: dict[int, int] = {}
        usage: Any = None
        try:
            response = await self._litellm.acompletion(**kwargs)
            async for chunk in response:
                usage = _get(chunk, "usage") or usage
                for ch in _get(chunk, "choices") or ():
                    text = _get(_get(ch, "delta"), "content") or ""
                    index = int(_get(ch, "index") or 0)
                    finish = _get(ch, "finish_reason")
                    if text:
                        counted[index] = counted.get(index, 0) + 1
                    if text or finish:
                        yield StreamChunk(text=text, index=index, finish_reason=finish)
        except Exception as exc:
            raise _map_litellm_error(exc, request) from None
        yield StreamChunk(
            done=True,
            prompt_tokens=int(_get(usage, "prompt_tokens") or 0) if usage else None,
            completion_tokens=int(_get(usage, "completion_tokens") or 0) if usage else sum(counted.values()),
            tokens_estimated=not usage,
        )


class _LoopClients:
    """A :class:`LiteLLMProvider`'s clients in one event loop: one HTTP client, SDK clients over it per endpoint."""

    def __init__(self, http: Any) -> None:
        self.http = http
        self.sdk: dict[tuple[str | None, str], Any] = {}

    async def aclose(self) -> None:
        self.sdk.clear()
        await self.http.aclose()


def _http_module(client_class: type) -> Any:
    """The httpx flavour (``httpx``, or ``httpx2`` for newer openai SDKs) ``client_class`` is built on."""
    for cls in client_class.__mro__:
        if cls.__name__ == "AsyncClient":
            return importlib.import_module(cls.__module__.split(".")[0])
    return importlib.import_module("httpx")


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
        message=str(message) if message else text,
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
