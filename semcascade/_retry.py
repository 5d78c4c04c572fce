"""Moved to :mod:`semcascade.providers.retry`; this module re-exports it for existing imports."""

from semcascade.providers.retry import (
    RETRYABLE_ERRORS,
    RetryConfig,
    RetryingProvider,
    backoff_delay,
    count_retries,
    parse_retry_after,
)

__all__ = [
    "RETRYABLE_ERRORS",
    "RetryConfig",
    "RetryingProvider",
    "backoff_delay",
    "count_retries",
    "parse_retry_after",
]
