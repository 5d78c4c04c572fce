"""Keep calls to the managed llama-server working when its process dies mid-run.

:class:`LocalServerGuard` wraps a :class:`~semcascade.providers.Provider`.
Requests addressed to the managed server pass through unchanged; when one
fails with a :class:`~semcascade.errors.ProviderError` *and* the server process
is gone (killed, crashed, out of memory), the server is restarted once (on the
same port if it is still free, else on a new one: later requests are
readdressed) and the call is retried once. Concurrent calls that fail together
share one restart. If the restart fails, or the server dies again, a
:class:`~semcascade.errors.LocalServerError` names the crash log and the fix.
Errors while the process is alive (timeouts, 5xx) are not the guard's business
and propagate unchanged; requests to other providers are never touched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Callable

from semcascade.errors import (
    AuthenticationError,
    BadRequestError,
    ContentRefusedError,
    LocalServerError,
    ProviderError,
    RateLimitError,
    UnknownModelError,
)
from semcascade.local.server import LocalServer
from semcascade.providers.base import Completion, CompletionRequest, Provider

__all__ = ["MAX_RESTARTS", "LocalServerGuard"]

_log = logging.getLogger("semcascade.local")

#: Errors only a live server can give (it answered): never a sign that it died.
_ANSWERED = (BadRequestError, ContentRefusedError, UnknownModelError, AuthenticationError, RateLimitError)

#: Restarts one guard allows over its lifetime; a server that keeps dying needs a fix, not restarts.
MAX_RESTARTS = 3

_FIX = (
    "check that log for the cause (out of memory is the usual one: lower local_server.models_max, "
    "ctx_size or parallel), then run again"
)


class LocalServerGuard:
    """A provider wrapper that restarts a dead managed server once and retries the call once.

    ``server`` is the :class:`LocalServer` (or a function returning it, or
    ``None`` while there is none) whose requests are guarded.
    """

    def __init__(
        self,
        inner: Provider,
        server: LocalServer | Callable[[], LocalServer | None],
        *,
        max_restarts: int = MAX_RESTARTS,
    ) -> None:
        self.inner = inner
        self._server = server
        self.max_restarts = max_restarts
        #: how many times this guard restarted the server
        self.restarts = 0
        self._bases: set[str] = set()  # every base URL the server had (old ones are readdressed)
        self._generation = 0
        self._lock = threading.Lock()  # not asyncio.Lock: generate_sync() runs each call in a new loop
        if isinstance(server, LocalServer):
            self._current_base(server)

    def __repr__(self) -> str:
        return f"LocalServerGuard({self.inner!r}, restarts={self.restarts})"

    @property
    def server(self) -> LocalServer | None:
        return self._server if isinstance(self._server, LocalServer) else self._server()

    def _current_base(self, server: LocalServer) -> str | None:
        if not server.started:
            return None
        base = server.base_url
        self._bases.add(base)
        return base

    async def complete(self, request: CompletionRequest) -> Completion:
        server = self.server
        base = self._current_base(server) if server is not None else None
        if server is None or base is None or request.api_base not in self._bases:
            return await self.inner.complete(request)
        if request.api_base != base:  # the server moved to another port after a restart
            request = dataclasses.replace(request, api_base=base)
        generation = self._generation
        try:
            return await self.inner.complete(request)
        except _ANSWERED:
            raise  # the server answered (and so is alive): not the guard's business
        except ProviderError as exc:
            # Not a death unless the process is gone, or a concurrent call is restarting it (lock held)
            # or has restarted it (generation moved on; checked last: it moves before the lock is released).
            if not await _died(server) and not self._lock.locked() and self._generation == generation:
                raise
            cause = str(exc)
        new_base = await asyncio.to_thread(self._restart, server, generation, cause)
        try:
            return await self.inner.complete(dataclasses.replace(request, api_base=new_base))
        except ProviderError as exc:
            if not await _died(server):
                raise
            raise LocalServerError(
                f"the local llama-server died again right after a restart ({exc}); its log is {server.log_path}; {_FIX}"
            ) from None

    def _restart(self, server: LocalServer, generation: int, cause: str) -> str:
        """Restart the dead server (once for all calls that saw it die); return its base URL."""
        with self._lock:
            if self._generation != generation and server.process_alive():
                return server.base_url  # another call restarted it already
            if server.process_alive():
                return server.base_url
            log = server.log_path
            if self.restarts >= self.max_restarts:
                raise LocalServerError(
                    f"the local llama-server died {self.restarts + 1} times in this run (last call: {cause}); "
                    f"it is not restarted again. Its log is {log}; {_FIX}"
                )
            _log.warning("the local llama-server (log %s) died; restarting it (%s)", log, cause)
            try:
                server.restart()
            except LocalServerError as exc:
                raise LocalServerError(
                    f"the local llama-server died (log {server.crash_log or log}) and could not be restarted: {exc}"
                ) from None
            self.restarts += 1
            self._generation += 1
            base = server.base_url
            self._bases.add(base)
            _log.warning(
                "restarted the local llama-server at %s; the dead server's log is %s", base, server.crash_log or log
            )
            return base


async def _died(server: LocalServer, settle_s: float = 0.3) -> bool:
    """True if the server process is gone, allowing a moment for a killed process to finish exiting."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle_s
    while server.process_alive():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True
