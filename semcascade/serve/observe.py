"""The bottom of the served cascade's provider stack: records each provider failure of the current request.

Every attempt passes through it (it sits under the retries), so a request's failures are known by
type: the metrics count them, and the HTTP status of a request whose every tier failed follows them
(timeouts -> 504, rate limits/unavailable -> 503, the rest -> 502).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar

from semcascade.errors import ProviderError
from semcascade.providers.base import Completion, CompletionRequest, Provider, StreamChunk, StreamingProvider
from semcascade.providers.clients import close_loop_clients

__all__ = ["ObservedProvider", "request_errors"]

#: the provider-error kinds of the current request (a list the request's tasks share)
_ERRORS: ContextVar[list[str] | None] = ContextVar("semcascade_serve_errors", default=None)


def request_errors() -> list[str]:
    """A fresh list collecting the current request's provider-error kinds (call in the request's task)."""
    seen: list[str] = []
    _ERRORS.set(seen)
    return seen


class ObservedProvider:
    """Sends to ``inner`` (the per-tier providers); records the kind of each :class:`ProviderError`."""

    def __init__(self, inner: Provider, kind: Callable[[BaseException], str]) -> None:
        self.base = inner
        self._kind = kind

    def _record(self, exc: BaseException) -> None:
        seen = _ERRORS.get()
        if seen is not None:
            seen.append(self._kind(exc))

    async def complete(self, request: CompletionRequest) -> Completion:
        try:
            return await self.base.complete(request)
        except ProviderError as exc:
            self._record(exc)
            raise

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        route = getattr(self.base, "for_request", None)
        target = route(request) if route is not None else self.base
        if not isinstance(target, StreamingProvider):
            raise ProviderError("this provider cannot stream", model=request.model, tier=request.tier)
        try:
            async for chunk in target.stream(request):
                yield chunk
        except ProviderError as exc:
            self._record(exc)
            raise

    async def aclose(self) -> None:
        await close_loop_clients(self.base)
