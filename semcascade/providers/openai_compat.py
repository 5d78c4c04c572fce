"""A native provider for OpenAI-compatible chat-completions endpoints, on httpx (litellm is not imported).

OpenAI itself, vLLM, llama-server (the managed ``local/`` server), LM Studio,
any ``/v1/chat/completions`` server. The same status mapping
(:mod:`~semcascade.providers.http_errors`) and answer parser
(:mod:`~semcascade.providers.parsing`) as the litellm path, so the same answer
gives the same :class:`Completion` (``n``, logprobs, per-choice token counts)
or the same typed error either way. One attempt per request: retries are the
:class:`~semcascade.providers.retry.RetryingProvider`'s.

Clients: one ``httpx.AsyncClient`` per event loop, owned by the provider (a
keep-alive pool of ``pool_size`` connections), closed by :meth:`aclose`.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from semcascade.errors import (
    MalformedResponseError,
    PromptTooLongError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from semcascade.providers.base import OPENAI_STYLE_PREFIXES, Completion, CompletionRequest, StreamChunk
from semcascade.providers.clients import LoopClients
from semcascade.providers.http_errors import error_fields, error_for_status, first_line, parse_retry_after, redact
from semcascade.providers.parsing import parse_completion

__all__ = ["DEFAULT_API_BASE", "OPENAI_STYLE_PREFIXES", "OpenAICompatibleProvider", "wire_model"]

#: where requests without an ``api_base`` go
DEFAULT_API_BASE = "https://api.openai.com/v1"
#: litellm keyword arguments with no meaning in an OpenAI request body (``litellm_params`` may hold them)
_NOT_BODY = frozenset(
    {"timeout", "num_retries", "max_retries", "api_version", "drop_params", "custom_llm_provider", "client"}
    | {"api_key", "api_base", "base_url", "extra_headers", "headers", "extra_body"}
)
#: default keep-alive connections per loop when no pool size is given
_DEFAULT_POOL = 20


def wire_model(model: str) -> str:
    """The model name as the endpoint knows it (``openai/gpt-4o-mini`` -> ``gpt-4o-mini``)."""
    for prefix in OPENAI_STYLE_PREFIXES:
        if model.startswith(prefix):
            return model.removeprefix(prefix)
    return model


class OpenAICompatibleProvider:
    """POSTs each request to ``{api_base}/chat/completions`` with httpx.

    ``pool_size``: keep-alive connections kept per event loop (the provider
    stack sizes it from the tiers' ``max_concurrency``); connections beyond
    it are opened as needed and closed after use. ``api_base``: the endpoint
    of requests that name none (default OpenAI's). ``headers``: sent with
    every request. ``transport``: an ``httpx`` transport for every client
    (e.g. ``httpx.MockTransport`` in tests).

    The key is the request's ``api_key``; for OpenAI's own endpoint, without
    one, ``$OPENAI_API_KEY`` (never sent to any other endpoint).
    """

    def __init__(
        self,
        *,
        pool_size: int | None = None,
        api_base: str | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if pool_size is not None and pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        self.pool_size = pool_size
        self.api_base = (api_base or DEFAULT_API_BASE).rstrip("/")
        self._headers = dict(headers or {})
        self._transport = transport
        self._clients: LoopClients[httpx.AsyncClient] = LoopClients(self._new_client)

    def __repr__(self) -> str:
        return f"OpenAICompatibleProvider(api_base={self.api_base!r}, pool_size={self.pool_size})"

    def _new_client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=self.pool_size or _DEFAULT_POOL)
        return httpx.AsyncClient(limits=limits, transport=self._transport, headers=self._headers)

    async def aclose(self) -> None:
        """Close this provider's HTTP client of the running event loop (later calls open a new one)."""
        await self._clients.aclose()

    # ------------------------------------------------------------------ requests

    def _prepare(
        self, request: CompletionRequest, *, stream: bool = False
    ) -> tuple[str, dict[str, Any], dict[str, str]]:
        base = (request.api_base or self.api_base).rstrip("/")
        body: dict[str, Any] = {
            "model": wire_model(request.model),
            "messages": [dict(m) for m in request.messages],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if request.n != 1:
            body["n"] = request.n
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = list(request.stop)
        if request.logprobs:
            body["logprobs"] = True
            if request.top_logprobs:
                body["top_logprobs"] = request.top_logprobs
        extra = dict(request.extra)
        headers: dict[str, str] = {}
        for name in ("headers", "extra_headers"):
            headers.update({str(k): str(v) for k, v in dict(extra.get(name) or {}).items()})
        body.update(dict(extra.get("extra_body") or {}))
        body.update({k: v for k, v in extra.items() if k not in _NOT_BODY})
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        key = request.api_key or (os.environ.get("OPENAI_API_KEY") if base == DEFAULT_API_BASE else None)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return f"{base}/chat/completions", body, headers

    async def complete(self, request: CompletionRequest) -> Completion:
        url, body, headers = self._prepare(request)
        client = self._clients.get()
        try:
            response = await client.post(url, json=body, headers=headers, timeout=request.timeout)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, request) from None
        if response.status_code >= 400:
            raise _status_error(response, request)
        try:
            payload = response.json()
        except ValueError:
            raise MalformedResponseError(
                f"the provider's answer is not valid JSON: {first_line(redact(response.text, request.api_key))}",
                model=request.model,
                tier=request.tier,
            ) from None
        return parse_completion(payload, request)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        """The completion as it is generated: text deltas per choice, then one ``done`` chunk with the usage.

        Server-sent events (``stream: true``, with ``stream_options.include_usage``);
        without a usage event the completion tokens are counted from the deltas
        (one a chunk, ``tokens_estimated``). Errors are the typed ones of
        :meth:`complete`; a stream that breaks off is a :class:`ProviderUnavailableError`.
        """
        url, body, headers = self._prepare(request, stream=True)
        client = self._clients.get()
        counted: dict[int, int] = {}
        usage: Mapping[str, Any] | None = None
        try:
            async with client.stream("POST", url, json=body, headers=headers, timeout=request.timeout) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _status_error(response, request)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = _event(data, request)
                    if isinstance(event.get("usage"), Mapping):
                        usage = event["usage"]
                    for ch in event.get("choices") or ():
                        delta = ch.get("delta") or {}
                        text = delta.get("content") or ""
                        index = int(ch.get("index") or 0)
                        finish = ch.get("finish_reason")
                        if text:
                            counted[index] = counted.get(index, 0) + 1
                        if text or finish:
                            yield StreamChunk(text=text, index=index, finish_reason=finish)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, request) from None
        completion_tokens = int(usage.get("completion_tokens") or 0) if usage is not None else sum(counted.values())
        yield StreamChunk(
            done=True,
            prompt_tokens=int(usage.get("prompt_tokens") or 0) if usage is not None else None,
            completion_tokens=completion_tokens,
            tokens_estimated=usage is None,
        )


def _event(data: str, request: CompletionRequest) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        raise MalformedResponseError(
            f"the provider's stream sent an event that is not a JSON object: {first_line(data)}",
            model=request.model,
            tier=request.tier,
        )
    if event.get("error"):
        fields = error_fields(event)
        raise error_for_status(500, request, message=str(fields.get("message") or data))
    return event


def _status_error(response: httpx.Response, request: CompletionRequest) -> ProviderError | PromptTooLongError:
    try:
        fields = error_fields(response.json())
    except ValueError:
        fields = {}
    message = fields.get("message") or response.text or response.reason_phrase
    return error_for_status(
        response.status_code,
        request,
        message=str(message),
        param=fields.get("param"),
        code=fields.get("code"),
        kind=fields.get("type"),
        retry_after=parse_retry_after(response.headers),
    )


def _transport_error(exc: httpx.HTTPError, request: CompletionRequest) -> ProviderError:
    what = first_line(redact(str(exc), request.api_key)) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeoutError(
            f"timed out after {request.timeout:g}s ({type(exc).__name__}); raise the tier's 'timeout' or check "
            "the provider",
            model=request.model,
            tier=request.tier,
        )
    if isinstance(exc, httpx.TransportError):  # refused, reset, dropped mid-answer: transient
        return ProviderUnavailableError(
            f"cannot reach the provider: {type(exc).__name__}: {what}; check 'api_base' and the network",
            model=request.model,
            tier=request.tier,
        )
    return ProviderError(f"{type(exc).__name__}: {what}", model=request.model, tier=request.tier)
