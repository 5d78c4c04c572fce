"""The exception hierarchy of semcascade.

Every error a user can trigger derives from :class:`SemcascadeError`; each
message names the problem *and* the fix, and never contains a secret. Every
exception class of the package is defined here (the modules that raise one
re-export it under its old import path); ``tests/unit/test_errors_module.py``
keeps it that way.

    SemcascadeError
    ├── ConfigError                 config file missing, malformed or invalid
    │   └── MissingAPIKeyError      the env var named by ``api_key_env`` is unset
    ├── PromptError                 the request itself is unusable
    │   ├── EmptyPromptError
    │   └── PromptTooLongError
    ├── ProviderError               a model provider failed
    │   ├── UnknownModelError
    │   ├── AuthenticationError
    │   ├── QuotaExceededError      the account behind the key is out of quota or credit (not retried)
    │   ├── ProviderTimeoutError
    │   ├── RateLimitError
    │   ├── ProviderUnavailableError  5xx or connection failure (transient)
    │   ├── MalformedResponseError
    │   ├── BadRequestError         the provider rejected the request as malformed (names the parameter)
    │   └── ContentRefusedError     the provider's content policy refused the prompt or the answer
    ├── ScorerError                 an agreement scorer could not be built or run
    │   └── ConfidenceError         a deferral-confidence model is missing, malformed or lacks evidence
    ├── LocalServerError            the managed llama-server could not be set up
    │   └── ArchiveMemberError      a model packed in a split zip is missing from or damaged in its chunks
    ├── CalibrationError            eval results unusable, or a calibration target cannot be met
    ├── RouterError                 a router cannot be trained or used
    │   └── RouterArtifactError     a router artifact is missing, unreadable or inconsistent
    ├── MemoryStoreError            a strategy store cannot be used
    ├── CacheError                  the response cache file cannot be used
    ├── StateStoreError             the shared state backend (state:) cannot be used
    │   └── StateUnavailableError   the backend (e.g. Redis) is unreachable: at start, or lost mid-run
    ├── BatchInputError             a batch input file is unusable (names the line)
    ├── DatasetNotInstalledError    the package that ships an eval dataset is not installed
    ├── ServeError                  `semcascade serve` cannot start (auth keys, host, served models)
    │   └── RequestRejectedError    a served request is answered with an OpenAI-style HTTP error
    └── CascadeFailedError          no tier produced an answer (carries the trace)
        ├── DeadlineExceededError   the call's deadline passed before any answer
        └── BudgetExceededError     the budget allowed no tier that could answer
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from semcascade.result import TierTrace

__all__ = [
    "CostMapDeferredError",
    "UnsafeExpressionError",
    "AuthenticationError",
    "QuotaExceededError",
    "CacheError",
    "StateStoreError",
    "StateUnavailableError",
    "BatchInputError",
    "BadRequestError",
    "CalibrationError",
    "BudgetExceededError",
    "CascadeFailedError",
    "ConfidenceError",
    "ConfigError",
    "DatasetNotInstalledError",
    "ContentRefusedError",
    "DeadlineExceededError",
    "EmptyPromptError",
    "LocalServerError",
    "ArchiveMemberError",
    "MalformedResponseError",
    "MemoryStoreError",
    "MissingAPIKeyError",
    "PromptError",
    "PromptTooLongError",
    "ProviderError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RateLimitError",
    "RouterArtifactError",
    "RouterError",
    "ScorerError",
    "SemcascadeError",
    "ServeError",
    "RequestRejectedError",
    "UnknownModelError",
]


class SemcascadeError(Exception):
    """Base class of every error semcascade raises on purpose."""


class ConfigError(SemcascadeError, ValueError):
    """A cascade configuration is missing, malformed or semantically wrong."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class MissingAPIKeyError(ConfigError):
    """A tier names an environment variable for its API key that is not set."""

    def __init__(self, env_var: str, tier: str) -> None:
        self.env_var = env_var
        self.tier = tier
        super().__init__(
            f"tier {tier!r} reads its API key from ${env_var}, which is not set; "
            f"export {env_var}=... or change 'api_key_env' in the config"
        )


class PromptError(SemcascadeError, ValueError):
    """The prompt cannot be sent as given."""


class EmptyPromptError(PromptError):
    """The prompt (or every message's content) is empty or whitespace."""


class PromptTooLongError(PromptError):
    """The prompt does not fit a tier's context window."""

    def __init__(self, tier: str, prompt_tokens: int, context_window: int, *, detail: str | None = None) -> None:
        self.tier = tier
        self.prompt_tokens = prompt_tokens
        self.context_window = context_window
        if detail is not None:  # the provider said so; we did not know the sizes up front
            super().__init__(
                f"the prompt does not fit tier {tier!r}'s context window (provider: {detail}); "
                "shorten the prompt, lower max_tokens, or use a model with a larger context"
            )
            return
        super().__init__(
            f"prompt is ~{prompt_tokens} tokens but tier {tier!r} has a context window of "
            f"{context_window} (including max_tokens); shorten the prompt or raise the "
            "tier's 'context_window'"
        )


class ProviderError(SemcascadeError):
    """A model provider call failed after the configured handling."""

    def __init__(
        self, message: str, *, model: str | None = None, tier: str | None = None, retry_after: float | None = None
    ) -> None:
        self.model = model
        self.tier = tier
        #: seconds the provider asked us to wait (its ``Retry-After`` header), if it said
        self.retry_after = retry_after
        where = ", ".join(p for p in (f"tier {tier!r}" if tier else "", f"model {model!r}" if model else "") if p)
        super().__init__(f"{where}: {message}" if where else message)


class UnknownModelError(ProviderError):
    """The provider does not know the configured model."""


class AuthenticationError(ProviderError):
    """The provider rejected the API key."""


class QuotaExceededError(ProviderError):
    """The provider refused the call because the account behind the key has no quota or credit left.

    OpenAI answers it as HTTP 429 ``insufficient_quota``: a rate limit in form, but waiting does not
    help, so it is not retried and, like a bad key, it propagates instead of escalating."""


class ProviderTimeoutError(ProviderError):
    """A provider call did not finish within its timeout."""


class RateLimitError(ProviderError):
    """The provider rate-limited the call."""


class ProviderUnavailableError(ProviderError):
    """A transient provider failure: an HTTP 5xx answer or a failed/dropped connection."""


class MalformedResponseError(ProviderError):
    """The provider answered with something that is not a usable completion."""


class BadRequestError(ProviderError):
    """The provider rejected the request as malformed (HTTP 400/422): a parameter it does not accept.

    ``param`` names the offending request parameter when the provider said (or
    the message names one). A configuration problem: never retried, and it
    propagates out of the cascade before another tier is paid for.
    """

    def __init__(
        self, message: str, *, model: str | None = None, tier: str | None = None, param: str | None = None
    ) -> None:
        self.param = param
        super().__init__(message, model=model, tier=tier)


class ContentRefusedError(ProviderError):
    """The provider's content policy refused the prompt (an HTTP 400 ``content_policy_violation``)
    or filtered every choice of its answer (``finish_reason: content_filter``).

    Not retried (the same prompt is refused again); the tier records it in its
    trace and the cascade escalates, like any failed tier.
    """


class ScorerError(SemcascadeError):
    """An agreement scorer could not be constructed or failed while scoring."""


class ConfidenceError(ScorerError):
    """A deferral-confidence model is missing, malformed, or needs evidence the provider did not return."""


class LocalServerError(SemcascadeError):
    """The managed local model server could not be built, started or reached."""


class ArchiveMemberError(LocalServerError):
    """A model file packed inside a (byte-split) zip could not be read: missing chunk, bad header, CRC or size."""


class CalibrationError(SemcascadeError, ValueError):
    """Eval results cannot be loaded or used (missing file, unknown signal), or no thresholds meet a target."""


class RouterError(SemcascadeError, ValueError):
    """A router cannot be trained or used (unusable eval logs, bad options, wrong number of tiers)."""


class RouterArtifactError(RouterError):
    """A router artifact file is missing, not JSON, of another format/version, or inconsistent."""


class MemoryStoreError(SemcascadeError):
    """A strategy store cannot be used (bad options, foreign or corrupt file, wrong embedding size)."""


class CacheError(SemcascadeError):
    """The response cache file cannot be used (not a cache, wrong version, corrupt, locked, closed)."""

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"response cache {str(path)!r}: {message}" if path is not None else message)


class StateStoreError(SemcascadeError):
    """The shared state backend (``state:`` in the config) cannot be built or used."""


class StateUnavailableError(StateStoreError):
    """The state backend is unreachable (at start, or lost mid-run): budgets and limits fail closed.

    ``url`` names the backend (its password, if any, is never included).
    """

    def __init__(self, message: str, *, url: str) -> None:
        self.url = url
        super().__init__(f"state store {url}: {message}")


class BatchInputError(SemcascadeError, ValueError):
    """A batch input (or output) file cannot be used; the message names the file and the line."""


class DatasetNotInstalledError(SemcascadeError):
    """The package that ships a dataset is not installed (the message says how to install it)."""


class ServeError(SemcascadeError, ValueError):
    """The server cannot start as configured (no API keys, auth off on a non-loopback host, a model name twice)."""


class RequestRejectedError(ServeError):
    """A request to ``semcascade serve`` that is answered with an HTTP error in OpenAI's shape.

    ``status``: the HTTP status; ``code``/``kind``: OpenAI's ``error.code``/``error.type``;
    ``param``: the request field at fault; ``retry_after``: seconds for a ``Retry-After`` header.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.kind = kind
        self.param = param
        self.retry_after = retry_after
        super().__init__(message)


class CascadeFailedError(SemcascadeError):
    """No tier produced a usable answer.

    ``trace`` holds what every tier did (including partial samples), so nothing
    that was paid for is lost.
    """

    def __init__(self, message: str, trace: list[TierTrace], partial_answers: list[Any] | None = None) -> None:
        self.trace = trace
        self.partial_answers = partial_answers or []
        super().__init__(message)


class DeadlineExceededError(CascadeFailedError):
    """The call's deadline (``deadline_s``) passed before any tier produced an answer."""


class BudgetExceededError(CascadeFailedError):
    """The call or run budget left no affordable tier that could produce an answer."""


class UnsafeExpressionError(SemcascadeError, ValueError):
    """A model's arithmetic is not a bounded expression over numeric literals (``semcascade.numeric``)."""


class CostMapDeferredError(SemcascadeError):
    """Internal to ``semcascade.costs``: the bundled cost map alone cannot say what litellm would charge
    for this model, so litellm is asked (never raised to callers)."""
