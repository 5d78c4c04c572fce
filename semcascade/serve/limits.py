"""Admission control: ``max_in_flight`` cascade calls at once, ``max_queue`` waiting; past that a 503."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from semcascade.errors import RequestRejectedError

__all__ = ["Admission"]


class Admission:
    """A bounded queue in front of the cascade; ``draining`` refuses new requests (shutdown)."""

    def __init__(self, max_in_flight: int, max_queue: int, retry_after_s: int) -> None:
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self._slots = asyncio.Semaphore(max_in_flight)
        #: admitted requests (running or waiting for a slot)
        self.admitted = 0
        self.draining = False

    def _refuse(self, why: str, code: str) -> RequestRejectedError:
        return RequestRejectedError(503, why, code=code, kind="server_error", retry_after=self.retry_after_s)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.draining:
            raise self._refuse("the server is shutting down; retry on another instance", "shutting_down")
        if self.admitted >= self.max_in_flight + self.max_queue:
            raise self._refuse(
                f"the server is saturated ({self.max_in_flight} requests running, {self.max_queue} queued); "
                f"retry after {self.retry_after_s}s",
                "server_overloaded",
            )
        self.admitted += 1
        try:
            async with self._slots:
                yield
        finally:
            self.admitted -= 1
