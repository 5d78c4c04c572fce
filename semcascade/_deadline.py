"""The per-call deadline of a cascade request, visible to everything the call awaits.

``Cascade.generate(..., deadline_s=...)`` opens a :func:`deadline_scope`; the
provider calls, retry sleeps and scoring under it read the deadline from a
context variable (asyncio copies it into every task the call spawns), so no
signature between the cascade and the provider has to carry it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from contextvars import ContextVar

from semcascade.errors import ProviderTimeoutError

__all__ = [
    "DeadlineReached",
    "current_deadline",
    "deadline_guard",
    "deadline_scope",
    "expired",
    "remaining",
    "request_deadline",
]

#: absolute deadline in the running loop's clock (``loop.time()``), or None
_DEADLINE: ContextVar[float | None] = ContextVar("semcascade_deadline", default=None)


class DeadlineReached(Exception):
    """Internal: the block of a :func:`deadline_guard` was stopped by the deadline."""


@contextmanager
def deadline_scope(seconds: float | None) -> Iterator[float | None]:
    """Run the block under a deadline ``seconds`` from now (``None``: keep any outer one).

    A nested scope can only shorten an outer deadline, never extend it.
    """
    current = _DEADLINE.get()
    if seconds is None:
        yield current
        return
    at = asyncio.get_running_loop().time() + max(0.0, seconds)
    if current is not None:
        at = min(at, current)
    token = _DEADLINE.set(at)
    try:
        yield at
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> float | None:
    return _DEADLINE.get()


def remaining() -> float | None:
    """Seconds left before the deadline (may be <= 0), or None without one."""
    at = _DEADLINE.get()
    if at is None:
        return None
    return at - asyncio.get_running_loop().time()


def expired() -> bool:
    left = remaining()
    return left is not None and left <= 0


@asynccontextmanager
async def deadline_guard(error: Callable[[], BaseException] = DeadlineReached) -> AsyncIterator[None]:
    """Cancel the block when the deadline passes and raise ``error()`` instead.

    Without a deadline the block runs unguarded. A ``TimeoutError`` raised by
    the block itself (not by the deadline) propagates unchanged.
    """
    at = _DEADLINE.get()
    if at is None:
        yield
        return
    cm = asyncio.timeout_at(at)
    try:
        async with cm:
            yield
    except TimeoutError:
        if cm.expired():
            raise error() from None
        raise


def request_deadline(model: str, tier: str | None) -> AbstractAsyncContextManager[None]:
    """Guard one provider request (slot wait included): past the deadline it fails as a timeout."""
    return deadline_guard(
        lambda: ProviderTimeoutError(
            "the call's deadline passed before this request finished; raise deadline_s", model=model, tier=tier
        )
    )
