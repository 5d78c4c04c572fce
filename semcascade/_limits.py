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

__all__ = ["TierLimiter"]


class TierLimiter:
    """At most ``max_concurrency`` calls in flight and ``requests_per_second`` starts per second."""

    def __init__(self, max_concurrency: int, requests_per_second: float | None = None) -> None:
        self.max_concurrency = max_concurrency
        self.requests_per_second = requests_per_second
        self._throttler: Throttler | None = None
        if requests_per_second is not None:
            burst = max(1, math.floor(requests_per_second))
            self._throttler = Throttler(rate_limit=burst, period=burst / requests_per_second)
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self.in_flight = 0
        self.peak_in_flight = 0

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self.max_concurrency)
        return sem

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._semaphore():
            if self._throttler is not None:
                await self._throttler.acquire()  # type: ignore[no-untyped-call]
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                yield
            finally:
                self.in_flight -= 1
