"""Retries with exponential backoff and full jitter, as a composable Provider wrapper.

``RetryingProvider(inner, policy)`` wraps any :class:`~semcascade.providers.Provider`
(in the spirit of httpx transports): transient failures (rate limits, 5xx,
connection failures, timeouts) are retried up to ``max_attempts`` times with a
delay drawn uniformly from ``[0, min(backoff_max_s, backoff_base_s * 2**retry)]``
("full jitter"), and never shorter than the provider's ``Retry-After``
(itself capped by ``retry_after_max_s``). Configuration errors (unknown model,
bad key, prompt too long) and malformed answers are never retried.

Each attempt is bounded by the request's ``timeout`` even if the inner
provider ignores it, and by the call's deadline (:mod:`semcascade._deadline`):
no attempt starts, and no backoff sleeps, past it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from semcascade import _deadline
from semcascade.config import RetryConfig
from semcascade.errors import (
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from semcascade.providers.base import Completion, CompletionRequest, Provider
from semcascade.providers.http_errors import parse_retry_after

__all__ = [
    "RETRYABLE_ERRORS",
    "RetryConfig",
    "RetryingProvider",
    "backoff_delay",
    "count_retries",
    "parse_retry_after",
]

#: Transient provider failures worth another attempt.
RETRYABLE_ERRORS: tuple[type[ProviderError], ...] = (RateLimitError, ProviderUnavailableError, ProviderTimeoutError)


def backoff_delay(
    policy: RetryConfig, retry: int, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number ``retry`` (1 = the first retry)."""
    cap = min(policy.backoff_max_s, policy.backoff_base_s * 2.0 ** (retry - 1))
    delay = (rng or random).uniform(0.0, cap) if policy.jitter else cap
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, policy.retry_after_max_s))
    return delay


# --------------------------------------------------------------------------- per-call retry counts

_COUNTS: ContextVar[collections.Counter[str] | None] = ContextVar("semcascade_retry_counts", default=None)


@contextmanager
def count_retries() -> Iterator[collections.Counter[str]]:
    """Count, per tier, the retries made by :class:`RetryingProvider` inside the block."""
    counts: collections.Counter[str] = collections.Counter()
    token = _COUNTS.set(counts)
    try:
        yield counts
    finally:
        _COUNTS.reset(token)


class RetryingProvider:
    """A provider that retries ``inner``'s transient failures.

    ``policy``: one :class:`RetryConfig` for every request, or a mapping from
    tier name (``CompletionRequest.tier``) to its config; tiers missing from
    the mapping use ``default``. ``sleep`` and ``rng`` are injectable for tests.
    """

    def __init__(
        self,
        inner: Provider,
        policy: RetryConfig | Mapping[str, RetryConfig] | None = None,
        *,
        default: RetryConfig | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.inner = inner
        self._sleep = sleep or asyncio.sleep
        self._default = default or (policy if isinstance(policy, RetryConfig) else RetryConfig())
        self._by_tier: dict[str, RetryConfig] = dict(policy) if isinstance(policy, Mapping) else {}
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        #: totals over this provider's life: "attempts", "retries", and per error type
        self.stats: collections.Counter[str] = collections.Counter()

    def policy_for(self, tier: str | None) -> RetryConfig:
        return self._by_tier.get(tier, self._default) if tier is not None else self._default

    def _count(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self.stats[k] += 1

    async def complete(self, request: CompletionRequest) -> Completion:
        policy = self.policy_for(request.tier)
        attempt = 0
        while True:
            attempt += 1
            left = _deadline.remaining()
            if left is not None and left <= 0:
                raise ProviderTimeoutError(
                    "the call's deadline passed before this request could be sent; raise deadline_s",
                    model=request.model,
                    tier=request.tier,
                )
            budget = request.timeout if left is None else min(request.timeout, left)
            by_deadline = left is not None and left < request.timeout
            self._count("attempts")
            try:
                return await self._attempt(request, budget, by_deadline)
            except RETRYABLE_ERRORS as exc:
                error: ProviderError = exc
            self._count(f"error:{type(error).__name__}")
            if attempt >= policy.max_attempts:
                raise error
            delay = backoff_delay(policy, attempt, error.retry_after, self._rng)
            left = _deadline.remaining()
            if left is not None and delay >= left:
                raise error  # sleeping would pass the deadline: give up now
            self._count("retries")
            counts = _COUNTS.get()
            if counts is not None:
                counts[request.tier or request.model] += 1
            await self._sleep(delay)

    async def _attempt(self, request: CompletionRequest, budget: float, by_deadline: bool) -> Completion:
        inner_request = dataclasses.replace(request, timeout=budget) if budget != request.timeout else request
        cm = asyncio.timeout(budget)
        try:
            async with cm:
                return await self.inner.complete(inner_request)
        except TimeoutError:
            if not cm.expired():
                raise
            what = "the call's deadline was reached" if by_deadline else f"timed out after {budget:g}s"
            fix = "raise deadline_s" if by_deadline else "raise the tier's 'timeout' or check the provider"
            raise ProviderTimeoutError(f"{what}; {fix}", model=request.model, tier=request.tier) from None
