"""Exceptions -> OpenAI-style error responses: ``{"error": {"message", "type", "param", "code"}}``.

===  =======================  ==============================================================
400  invalid_request_error    malformed JSON, a wrong schema, an unsupported or unknown field,
                              an empty prompt, a prompt too long for every tier
401  authentication_error     no or a wrong bearer key (``invalid_api_key``)
404  invalid_request_error    an unknown model (``model_not_found``) or path
413  invalid_request_error    a body over ``serve.max_body_bytes`` (``request_too_large``)
429  insufficient_quota       the cascade's run budget is spent (``budget_exceeded``)
502  upstream_error           every tier failed: errors, garbage or refusals from the providers
503  upstream_error /         providers rate-limited or unavailable (``upstream_unavailable``), the
     server_error             shared state store (Redis) lost, so budgets and limits fail closed
                              (``state_unavailable``), or the server saturated / shutting down;
                              always with ``Retry-After``
504  timeout_error            the deadline passed (``deadline_exceeded``), or providers timed out
500  server_error             a bug (logged with the request id; the body never has a traceback)
===  =======================  ==============================================================
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from semcascade.errors import (
    BudgetExceededError,
    CascadeFailedError,
    ContentRefusedError,
    DeadlineExceededError,
    PromptError,
    PromptTooLongError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    RequestRejectedError,
    StateUnavailableError,
)

__all__ = ["error_body", "from_exception", "provider_error_kind"]


def error_body(err: RequestRejectedError) -> bytes:
    return json.dumps({"error": {"message": str(err), "type": err.kind, "param": err.param, "code": err.code}}).encode()


def provider_error_kind(exc: BaseException) -> str:
    """A short label of a provider failure (a metric label)."""
    if isinstance(exc, ProviderTimeoutError):
        return "timeout"
    if isinstance(exc, RateLimitError):
        return "rate_limit"
    if isinstance(exc, ProviderUnavailableError):  # a 5xx answer, or no answer at all
        text = str(exc)
        return "server_error" if "server error 5" in text and "server error 503" not in text else "unavailable"
    if isinstance(exc, ContentRefusedError):
        return "refused"
    name = type(exc).__name__
    return {"MalformedResponseError": "malformed", "BadRequestError": "bad_request"}.get(name, "other")


def _upstream(exc: CascadeFailedError, seen: Sequence[str], retry_after: int) -> RequestRejectedError:
    """Every tier failed: 504 when the providers timed out, 503 when they were rate-limited or
    unavailable, else 502 (errors, garbage, refusals)."""
    kinds = set(seen)
    for t in exc.trace:  # timeouts enforced above the provider (the tier's deadline) are seen only here
        kinds.update("timeout" for e in t.errors if "timed out" in e)
    text = " ".join(" ".join(exc.args).split())
    if len(text) > 600:
        text = text[:600] + " ..."
    if kinds and kinds <= {"timeout"}:
        return RequestRejectedError(504, text, code="upstream_timeout", kind="timeout_error")
    if kinds and kinds <= {"rate_limit", "unavailable", "timeout"}:
        return RequestRejectedError(
            503, text, code="upstream_unavailable", kind="upstream_error", retry_after=retry_after
        )
    return RequestRejectedError(502, text, code="upstream_error", kind="upstream_error")


def from_exception(exc: BaseException, *, provider_errors: Sequence[str], retry_after: int) -> RequestRejectedError:
    """The HTTP error a failed cascade call is answered with (``provider_errors``: the kinds seen)."""
    if isinstance(exc, RequestRejectedError):
        return exc
    if isinstance(exc, PromptTooLongError):
        return RequestRejectedError(400, str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, PromptError):
        return RequestRejectedError(400, str(exc), code="invalid_prompt", param="messages")
    if isinstance(exc, DeadlineExceededError):
        return RequestRejectedError(504, str(exc), code="deadline_exceeded", kind="timeout_error")
    if isinstance(exc, BudgetExceededError):
        return RequestRejectedError(429, str(exc), code="budget_exceeded", kind="insufficient_quota")
    if isinstance(exc, CascadeFailedError):
        return _upstream(exc, provider_errors, retry_after)
    if isinstance(exc, StateUnavailableError):  # budgets and limits fail closed: nothing was sent unmetered
        return RequestRejectedError(
            503, str(exc), code="state_unavailable", kind="server_error", retry_after=retry_after
        )
    if isinstance(exc, ProviderError):  # a configuration error of the served cascade (bad key, unknown model)
        return RequestRejectedError(
            502,
            f"the served cascade's provider rejected the call: {exc}",
            code="upstream_config",
            kind="upstream_error",
        )
    return RequestRejectedError(
        500, "internal server error (see the server log)", code="internal_error", kind="server_error"
    )
