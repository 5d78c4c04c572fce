"""The one bridge from blocking code to the async API.

``Cascade.generate_sync``, ``RoutedCascade.generate_sync``, the module-level
``semcascade.generate_sync`` and the harness's ``run_eval_sync`` all run their
coroutine through :func:`run_sync`: a fresh event loop per call that ends with
the call, so whatever belongs to that loop (background strategy-learning
tasks, pooled HTTP connections) is finished or closed by the ``loop_end``
cleanup before the loop goes away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["in_running_loop", "run_sync"]

T = TypeVar("T")

logger = logging.getLogger("semcascade")


def in_running_loop() -> bool:
    """True when this thread is running an event loop (a notebook cell, an ``async def``)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(
    coro_factory: Callable[[], Awaitable[T]],
    *,
    loop_end: Callable[[], Awaitable[None]] | None = None,
    name: str = "generate_sync()",
    instead: str = "await generate()",
) -> T:
    """Run ``coro_factory()`` to completion in a new event loop and return its result.

    ``loop_end()`` runs in the same loop after it, also when it raised or was
    interrupted (then a failure of the cleanup is logged and the call's error
    raised). Refuses to run inside
    a running event loop (that loop would be blocked): there, ``instead`` is
    the way. An exception it raises carries no context its raisers suppressed
    (see :func:`_drop_suppressed_context`).
    """
    if in_running_loop():
        raise RuntimeError(f"{name} was called inside a running event loop; use '{instead}' there")

    async def call() -> T:
        try:
            result = await coro_factory()
        except BaseException:
            if loop_end is not None:
                try:
                    await loop_end()
                except Exception as exc:  # the call's own error is the one to report
                    logger.warning("cleanup at the end of %s failed: %s", name, exc)
            raise
        if loop_end is not None:
            await loop_end()
        return result

    try:
        return asyncio.run(call())
    except BaseException as exc:
        _drop_suppressed_context(exc)
        raise


def _drop_suppressed_context(exc: BaseException) -> None:
    """Forget the contexts the chain's raisers suppressed (``raise ... from None``).

    Such a context is not part of the error by its raiser's choice, but the exception still
    references it; a provider's own exception may quote the request (an API key echoed by the
    server), so an error handed to blocking code must not carry it along.
    """
    seen: set[int] = set()
    x: BaseException | None = exc
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        if x.__suppress_context__:
            x.__context__ = None
        x = x.__cause__ or x.__context__
