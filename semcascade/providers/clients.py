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
import concurrent.futures
import inspect
import threading
import weakref
from collections.abc import Callable
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

    Loops are held weakly: the entry of a loop that was dropped without closing
    its client goes with it (its sockets then close when the client is
    collected; close them in time with :meth:`aclose` before the loop ends).
    A pool that is itself dropped (its provider collected) closes the clients
    of the loops still running, on those loops.
    """

    def __init__(self, factory: Callable[[], C]) -> None:
        self._factory = factory
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, C] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        with _POOLS_LOCK:
            _POOLS.add(self)
        weakref.finalize(self, _close_dropped, self._clients)

    def get(self) -> C:
        """The running loop's client (created now if this loop has none)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                client = self._clients[loop] = self._factory()
            return client

    def open_loops(self) -> int:
        """How many loops have a client open (for tests)."""
        with self._lock:
            return len(self._clients)

    async def aclose(self) -> None:
        """Close the running loop's client, if it has one (a later :meth:`get` opens a new one)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()


#: closes scheduled for dropped pools (asyncio keeps only weak references to tasks)
_CLOSING: set[concurrent.futures.Future[None]] = set()


def _close_dropped(clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]) -> None:
    """A pool was collected: close its clients on their loops (still running ones), not left to the collector."""
    for loop, client in list(clients.items()):
        if loop.is_closed() or not loop.is_running():
            continue
        try:
            future = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
        except RuntimeError:  # the loop is shutting down
            continue
        _CLOSING.add(future)
        future.add_done_callback(_CLOSING.discard)
    clients.clear()


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
