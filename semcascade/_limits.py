"""Per-tier concurrency and rate limits (asyncio-throttle + a semaphore).

asyncio primitives bind to the event loop that first waits on them, and the
sync API runs each call in a fresh loop, so the semaphore is made per loop.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from asyncio_throttle.throttler import Throttler

__all__ = ["PerLoopSemaphore", "TierLimiter"]


class PerLoopSemaphore:
    """An ``asyncio.Semaphore(value)`` per running event loop (they cannot be shared across loops)."""

    def __init__(self, value: int) -> None:
        self.value = value
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._by_loop.get(loop)
        if sem is None:
            sem = self._by_loop[loop] = asyncio.Semaphore(self.value)
        return sem


class TierLimiter:
    """At most ``max_concurrency`` calls in flight and ``requests_per_second`` starts per second."""

    def __init__(self, max_concurrency: int, requests_per_second: float | None = None) -> None:
        self.max_concurrency = max_concurrency
        self.requests_per_second = requests_per_second
        self._throttler: Throttler | None = None
        if requests_per_second is not None:
            burst = max(1, math.floor(requests_per_second))
            self._throttler = Throttler(rate_limit=burst, period=burst / requests_per_second)
        self._semaphore = PerLoopSemaphore(max_concurrency)
        self.in_flight = 0
        self.peak_in_flight = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._semaphore.get():
            if self._throttler is not None:
                await self._throttler.acquire()  # type: ignore[no-untyped-call]
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                yield
            finally:
                self.in_flight -= 1
