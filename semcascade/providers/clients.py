"""HTTP clients owned by the providers: one per event loop, closed when that loop's work ends.

An ``httpx.AsyncClient`` (and its keep-alive connections) belongs to the event
loop it was first used in, and cannot be closed from another. So a provider
keeps one client per running loop in a :class:`LoopClients`, creating it on
first use there; :func:`close_loop_clients` closes the running loop's clients
(of given owners, or of every provider for a loop about to end), so their
sockets do not outlive it. Nothing here reaches into a dependency's caches:
semcascade makes these clients and closes them.

The convention :func:`close_loop_clients` relies on: a provider that holds
clients defines ``async aclose()`` (close the running loop's clients; later
calls in a loop open new ones), and a wrapper exposes what it wraps as
``inner`` (an object that calls a provider, like the LLM-judge scorer, as
``provider``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["LoopClients", "close_loop_clients"]


class _AsyncClosable(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=_AsyncClosable)

#: every live pool, so a loop about to end can close all of its clients
_POOLS: weakref.WeakSet[LoopClients[Any]] = weakref.WeakSet()
_POOLS_LOCK = threading.Lock()


class LoopClients(Generic[C]):
    """One client per running event loop: ``factory()`` on first use in a loop, closed by :meth:`aclose` in it.

    Each client is also closed when its loop ends without :meth:`aclose`:
    next to it sits a started async generator whose ``finally`` closes it, and
    asyncio closes a loop's open async generators before the loop itself
    (``loop.shutdown_asyncgens()``, as ``asyncio.run`` does), or when the
    generator is collected (this pool dropped with its provider) while its
    loop still runs. Loops are held weakly.
    """

    def __init__(self, factory: Callable[[], C]) -> None:
        self._factory = factory
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Entry[C]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        with _POOLS_LOCK:
            _POOLS.add(self)

    def get(self) -> C:
        """The running loop's client (created now if this loop has none)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._clients.get(loop)
            if entry is None:
                entry = self._clients[loop] = _Entry(self._factory())
            return entry.client

    def open_loops(self) -> int:
        """How many loops have a client open (for tests)."""
        with self._lock:
            return len(self._clients)

    async def aclose(self) -> None:
        """Close the running loop's client, if it has one (a later :meth:`get` opens a new one)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._clients.pop(loop, None)
        if entry is not None:
            await entry.closer.aclose()


class _Entry(Generic[C]):
    """A client and the started async generator that closes it when its loop shuts its generators down."""

    def __init__(self, client: C) -> None:
        self.client = client
        self.closer = _close_at_loop_end(client)
        step: Any = self.closer.asend(None)  # run to its yield now: the loop registers it (firstiter hook)
        with contextlib.suppress(StopIteration):
            step.send(None)


async def _close_at_loop_end(client: _AsyncClosable) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


async def close_loop_clients(*owners: object) -> None:
    """Close the HTTP clients held for the running event loop.

    With ``owners`` (providers, provider stacks, scorers): the clients reachable
    from them, through ``aclose()`` and the ``inner``/``provider`` attributes of
    wrappers; other users of the loop keep theirs. Without: the clients of
    every semcascade provider in this loop, for a loop about to end (as at the
    end of :meth:`Cascade.generate_sync`). Closing is best effort: a client
    that fails to close is skipped.
    """
    if not owners:
        with _POOLS_LOCK:
            pools = list(_POOLS)
        for pool in pools:
            try:
                await pool.aclose()
            except Exception:
                continue
        return
    seen: set[int] = set()
    todo: list[object] = list(owners)
    while todo:
        obj = todo.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        close = getattr(type(obj), "aclose", None)  # the class's method: never a property's side effect
        if callable(close):
            try:
                result = close(obj)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                pass
        todo.extend(vars(obj).get(name) for name in ("inner", "provider") if hasattr(obj, "__dict__"))
