"""HTTP error answers -> semcascade's typed errors, shared by every provider; ``Retry-After``; key redaction.

One mapping, so the same answer from a provider means the same error whether
litellm or the native client received it: 401/403 authentication, 404 unknown
model, 408 timeout, 413 or a context-length message prompt too long, 429 rate
limit (but ``insufficient_quota`` or a credit message: out of quota, not
retried), 400/422 a content-policy refusal or a malformed request naming the
parameter, 5xx unavailable.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

from semcascade.errors import (
    AuthenticationError,
    BadRequestError,
    ContentRefusedError,
    PromptTooLongError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    QuotaExceededError,
    RateLimitError,
    UnknownModelError,
)
from semcascade.providers.base import CompletionRequest

__all__ = ["error_for_status", "error_fields", "first_line", "parse_retry_after", "redact"]

# --------------------------------------------------------------------------- status -> typed error (shared)

_CONTEXT_HINTS = ("context size", "context length", "context window", "maximum context", "too many tokens")
_QUOTA_CODES = ("insufficient_quota", "billing_hard_limit_reached", "billing_not_active")
_QUOTA_HINTS = ("exceeded your current quota", "credit balance is too low", "insufficient credit", "out of credit")
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
    text = redact(message, request.api_key)
    first = first_line(text) or f"HTTP {status}"
    low = text.lower()
    codes = f"{code or ''} {kind or ''}".lower()
    if status == 413 or any(h in low for h in _CONTEXT_HINTS) or "context_length_exceeded" in codes:
        return PromptTooLongError(tier or model, -1, -1, detail=first)
    if status in (400, 402, 403, 429) and (
        any(c in codes for c in _QUOTA_CODES) or any(h in low for h in _QUOTA_HINTS)
    ):
        return QuotaExceededError(
            f"the provider account behind the tier's key is out of quota or credit ({first}); add credit or "
            "use another key ('api_key_env'); not retried",
            model=model,
            tier=tier,
        )
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


def first_line(text: str) -> str:
    """The first line of ``text``, at most 300 characters (for quoting a provider's message)."""
    return text.strip().splitlines()[0][:300] if text.strip() else ""


#: key-shaped strings (OpenAI/Anthropic/Groq/Google keys, bearer tokens), redacted from every error
_KEYLIKE = re.compile(r"(?:sk-|sk_|gsk_|xai-|AIza)[A-Za-z0-9_\-]{8,}|(?<=Bearer )[A-Za-z0-9._~+/\-]{8,}")


def redact(text: str, key: str | None) -> str:
    """``text`` with ``key`` (the request's API key) and anything key-shaped replaced by ``***``."""
    if key and len(key) >= 4:
        text = text.replace(key, "***")
    return _KEYLIKE.sub("***", text)


def error_fields(body: Any) -> dict[str, Any]:
    """``message``, ``param``, ``code`` and ``type`` of an OpenAI-style error body (``{"error": {...}}``)."""
    error = body.get("error", body) if isinstance(body, Mapping) else None
    if isinstance(error, str):
        return {"message": error}
    if not isinstance(error, Mapping):
        return {}
    return {k: error.get(k) for k in ("message", "param", "code", "type")}


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds asked for by ``Retry-After`` (delta-seconds or an HTTP date) or ``retry-after-ms``."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None  # RFC 9110 dates are GMT; a date without a zone is not one
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)
