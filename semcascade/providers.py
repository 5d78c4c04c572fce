"""The provider seam: how a completion request reaches a model.

:class:`LiteLLMProvider` is the real backend (any litellm model string);
:class:`MockProvider` answers from a Python function, for unit and fault
tests, in the spirit of ``httpx.MockTransport``. Providers are looked up by
name in a registry so configs and tests can swap them without if/elif chains.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from semcascade.errors import (
    AuthenticationError,
    BadRequestError,
    ContentRefusedError,
    MalformedResponseError,
    PromptTooLongError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    UnknownModelError,
)
from semcascade.registry import Registry

__all__ = [
    "Choice",
    "Completion",
    "CompletionRequest",
    "LiteLLMProvider",
    "MockProvider",
    "PROVIDERS",
    "Provider",
    "REFUSED_FINISH_REASONS",
    "TokenLogprob",
    "available_providers",
    "create_provider",
    "error_for_status",
    "register_provider",
]

Message = Mapping[str, Any]

#: ``finish_reason`` of a choice the provider withheld (content filter) or refused (OpenAI's ``refusal``)
REFUSED_FINISH_REASONS = ("content_filter", "refusal")


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """One chat-completion call (``n`` choices) as semcascade sends it."""

    model: str
    messages: Sequence[Message]
    n: int = 1
    temperature: float = 0.7
    max_tokens: int = 256
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0
    seed: int | None = None
    stop: Sequence[str] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: names the tier in errors; not sent to the provider
    tier: str | None = None
    #: index of this request's first sample among the tier's k; not sent to the provider. It keeps
    #: otherwise identical single-sample calls (a backend without native ``n``) apart in caches.
    sample_offset: int = 0


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    #: alternatives at this position (token -> logprob), if requested
    top: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Choice:
    text: str
    completion_tokens: int
    finish_reason: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    #: True when ``completion_tokens`` had to be estimated (no per-choice usage)
    tokens_estimated: bool = False


@dataclass(frozen=True, slots=True)
class Completion:
    """What a provider returned for one request."""

    model: str
    choices: tuple[Choice, ...]
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)


@runtime_checkable
class Provider(Protocol):
    """Sends one :class:`CompletionRequest`; raises :class:`ProviderError` subclasses."""

    async def complete(self, request: CompletionRequest) -> Completion: ...


# --------------------------------------------------------------------------- registry

PROVIDERS: Registry[Provider] = Registry("provider", ProviderError)


def register_provider(name: str) -> Callable[[Callable[..., Provider]], Callable[..., Provider]]:
    return PROVIDERS.register(name)


def available_providers() -> list[str]:
    return PROVIDERS.names()


def create_provider(name: str = "litellm", **options: Any) -> Provider:
    return PROVIDERS.create(name, **options)


# --------------------------------------------------------------------------- mock


Handler = Callable[[CompletionRequest], "Completion | Awaitable[Completion]"]


@register_provider("mock")
class MockProvider:
    """A provider that answers from ``handler(request)`` (sync or async).

    For tests only: the handler may also raise any :class:`ProviderError` to
    simulate faults. ``calls`` records every request received.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.calls: list[CompletionRequest] = []

    async def complete(self, request: CompletionRequest) -> Completion:
        self.calls.append(request)
        out = self._handler(request)
        if inspect.isawaitable(out):
            out = await out
        assert isinstance(out, Completion)
        return out

    @staticmethod
    def texts(model: str, texts: Sequence[str], prompt_tokens: int = 10) -> Completion:
        """Build a Completion whose choices are ``texts`` (one token per word)."""
        return Completion(
            model=model,
            choices=tuple(
                Choice(text=t, completion_tokens=max(1, len(t.split())), finish_reason="stop") for t in texts
            ),
            prompt_tokens=prompt_tokens,
        )


# --------------------------------------------------------------------------- litellm


def _prepare_litellm_env() -> None:
    # Offline by default: never fetch the model cost map from the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@register_provider("litellm")
class LiteLLMProvider:
    """Real provider: ``litellm.acompletion`` for any litellm model string.

    One attempt per request: transient failures are raised as typed errors
    (:class:`RateLimitError` with ``retry_after``, :class:`ProviderUnavailableError`,
    :class:`ProviderTimeoutError`) for :class:`~semcascade._retry.RetryingProvider`
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
        return _parse_response(response, request)


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
    text = _redact(str(exc), request.api_key)
    first = _first_line(text) or type(exc).__name__
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


# --------------------------------------------------------------------------- status -> typed error (shared)

_CONTEXT_HINTS = ("context size", "context length", "context window", "maximum context", "too many tokens")
_REFUSAL_CODES = ("content_policy_violation", "content_filter", "content_policy", "safety")
_REFUSAL_HINTS = ("content policy", "content management policy", "safety system", "content filter")
#: how providers name the offending parameter in a 400's message
_PARAM_PATTERNS = (
    re.compile(r"(?:argument|parameter|param|field)s?(?: supplied)?\s*:?\s*['\"`]?([A-Za-z_][\w.\[\]-]*)", re.I),
    re.compile(r"(?:invalid|unsupported|unknown|unexpected) value for ['\"`]?([A-Za-z_][\w.\[\]-]*)", re.I),
    re.compile(r"'loc':\s*[(\[]'body',\s*'([A-Za-z_][\w-]*)'"),
)


def error_for_status(
    status: int,
    request: CompletionRequest,
    *,
    message: str,
    param: Any = None,
    code: Any = None,
    kind: Any = None,
    retry_after: float | None = None,
) -> ProviderError | PromptTooLongError:
    """The typed error for an HTTP error answer (``status``, the body's error fields), key redacted.

    Shared by every provider, so the same answer means the same error whichever
    client received it.
    """
    model, tier = request.model, request.tier
    text = _redact(message, request.api_key)
    first = _first_line(text) or f"HTTP {status}"
    low = text.lower()
    codes = f"{code or ''} {kind or ''}".lower()
    if status == 413 or any(h in low for h in _CONTEXT_HINTS) or "context_length_exceeded" in codes:
        return PromptTooLongError(tier or model, -1, -1, detail=first)
    if status in (401, 403):
        return AuthenticationError(
            "authentication failed; check the key in the tier's 'api_key_env' variable", model=model, tier=tier
        )
    if status == 404 or (
        status in (400, 422)
        and ("model_not_found" in codes or ("model" in low and "not" in low and ("found" in low or "exist" in low)))
    ):
        return UnknownModelError(
            f"the provider does not know this model ({first}); check the model name", model=model, tier=tier
        )
    if status == 429:
        return RateLimitError(
            f"rate-limited: {first}; lower 'requests_per_second' or retry later",
            model=model,
            tier=tier,
            retry_after=retry_after,
        )
    if status in (400, 422):
        if any(c in codes for c in _REFUSAL_CODES) or any(h in low for h in _REFUSAL_HINTS):
            return ContentRefusedError(
                f"content refused by the provider's content policy ({first}); not retried", model=model, tier=tier
            )
        name = str(param) if isinstance(param, str) and param else _named_param(text, request)
        which = f"parameter {name!r}" if name else "it did not say which parameter"
        return BadRequestError(
            f"the provider rejected the request as malformed ({which}: {first}); fix the tier's settings "
            "or its 'litellm_params'",
            model=model,
            tier=tier,
            param=name,
        )
    if status == 408:
        return ProviderTimeoutError(
            f"the provider timed out the request ({first}); transient, retried", model=model, tier=tier
        )
    if 500 <= status <= 599:
        return ProviderUnavailableError(
            f"server error {status}: {first}; transient, retried", model=model, tier=tier, retry_after=retry_after
        )
    return ProviderError(f"HTTP {status}: {first}", model=model, tier=tier)


def _named_param(text: str, request: CompletionRequest) -> str | None:
    """The request parameter a 400's message names: one of the tier's extra parameters, else a pattern match."""
    for name in request.extra:
        if re.search(rf"\b{re.escape(name)}\b", text):
            return name
    for pattern in _PARAM_PATTERNS:
        m = pattern.search(text)
        if m:
            return m.group(1).strip(".")
    return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""


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
    from semcascade._retry import parse_retry_after

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


#: key-shaped strings (OpenAI/Anthropic/Groq/Google keys, bearer tokens), redacted from every error
_KEYLIKE = re.compile(r"(?:sk-|sk_|gsk_|xai-|AIza)[A-Za-z0-9_\-]{8,}|(?<=Bearer )[A-Za-z0-9._~+/\-]{8,}")


def _redact(text: str, key: str | None) -> str:
    """``text`` with ``key`` (the request's API key) and anything key-shaped replaced by ``***``."""
    if key and len(key) >= 4:
        text = text.replace(key, "***")
    return _KEYLIKE.sub("***", text)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _parse_logprobs(raw: Any) -> tuple[TokenLogprob, ...] | None:
    content = _get(raw, "content") if raw is not None else None
    if not content:
        return None
    out = []
    for item in content:
        top = {str(_get(t, "token")): float(_get(t, "logprob")) for t in (_get(item, "top_logprobs") or [])}
        out.append(TokenLogprob(token=str(_get(item, "token")), logprob=float(_get(item, "logprob")), top=top))
    return tuple(out)


def _parse_response(response: Any, request: CompletionRequest) -> Completion:
    raw_choices = _get(response, "choices")
    if not raw_choices:
        raise MalformedResponseError("the provider returned no choices", model=request.model, tier=request.tier)
    usage = _get(response, "usage")
    prompt_tokens = int(_get(usage, "prompt_tokens", 0) or 0)
    usage_completion = int(_get(usage, "completion_tokens", 0) or 0)
    choices: list[Choice] = []
    for rc in raw_choices:
        message = _get(rc, "message")
        text = _get(message, "content") if message is not None else None
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise MalformedResponseError("a choice's content is not text", model=request.model, tier=request.tier)
        lps = _parse_logprobs(_get(rc, "logprobs"))
        finish = _get(rc, "finish_reason")
        refusal = _get(message, "refusal") if message is not None else None
        if not text and isinstance(refusal, str) and refusal:
            finish = "refusal"  # OpenAI's structured refusal: no content, the reason in 'refusal'
        choices.append(Choice(text=text, completion_tokens=0, finish_reason=finish, logprobs=lps))
    if all(c.finish_reason in REFUSED_FINISH_REASONS for c in choices):
        raise ContentRefusedError(
            f"content refused: the provider's content filter withheld every choice "
            f"(finish_reason {choices[0].finish_reason!r}); not retried",
            model=request.model,
            tier=request.tier,
        )
    # Token accounting. With n>1 llama-server reports one choice's tokens only,
    # so count per choice from logprobs when present; else split usage by length.
    counted: list[Choice] = []
    total_chars = sum(len(c.text) for c in choices) or 1
    for c in choices:
        if c.logprobs is not None:
            counted.append(_with_tokens(c, len(c.logprobs), estimated=False))
        elif len(choices) == 1:
            counted.append(_with_tokens(c, usage_completion, estimated=False))
        else:
            share = (
                round(usage_completion * len(c.text) / total_chars) if usage_completion else max(1, len(c.text) // 4)
            )
            counted.append(_with_tokens(c, share, estimated=True))
    return Completion(
        model=str(_get(response, "model") or request.model), choices=tuple(counted), prompt_tokens=prompt_tokens
    )


def _with_tokens(c: Choice, n: int, *, estimated: bool) -> Choice:
    return Choice(
        text=c.text, completion_tokens=n, finish_reason=c.finish_reason, logprobs=c.logprobs, tokens_estimated=estimated
    )
