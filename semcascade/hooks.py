"""The one seam optional features attach to: strategy memory, drift monitoring, metrics.

A :class:`Hook` sees each request: :meth:`Hook.start` opens a per-request
:class:`HookSession`, which may rewrite a tier's messages before it is called
(:meth:`HookSession.augment`, e.g. strategy memory's retrieved strategies) and
sees, and may annotate, the result (:meth:`HookSession.finish`, e.g. learning a
strategy, recording the escalation for drift). A session may also answer the
request before any tier is called (an optional ``async lookup()`` returning a
result or ``None``, :class:`ShortCircuitSession`, e.g. the answer cache): the
first hit is the result and no tier runs. The cascade's loop calls the
hooks it was given and nothing else: features live here, not inline in the core.

    cascade = Cascade(config, hooks=[DriftMonitor(...), my_metrics_hook])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from semcascade._budget import CallBudget
    from semcascade.memory.hooks import MemorySession, StrategyMemory
    from semcascade.providers import Provider
    from semcascade.result import CascadeResult
    from semcascade.sampling import ResolvedTier

__all__ = [
    "FinishContext",
    "Hook",
    "HookRequest",
    "HookSession",
    "MemoryHook",
    "ShortCircuitSession",
    "run_augment",
    "run_finish",
    "run_lookup",
    "start_sessions",
]

Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class HookRequest:
    """What a hook knows about a request when it starts."""

    question: str
    messages: Messages
    #: the config's task name, when the cascade serves a named task
    task: str | None = None


@dataclass(frozen=True)
class FinishContext:
    """What the cascade hands a session with the result of a decided request."""

    #: the tier that answered, as resolved (models, limiter)
    tier: ResolvedTier
    #: the provider stack the cascade calls through (retries included)
    caller: Provider
    is_last: bool
    #: the call's budget (money/token caps per call and per run)
    budget: CallBudget


@runtime_checkable
class HookSession(Protocol):
    """One request's view of a hook."""

    def augment(self, tier_index: int, messages: Messages, tier_name: str) -> Messages:
        """The messages tier ``tier_index`` is called with (return them unchanged to do nothing)."""
        ...

    async def finish(self, result: CascadeResult, ctx: FinishContext) -> CascadeResult:
        """The result, seen (and possibly annotated) by the hook."""
        ...


@runtime_checkable
class ShortCircuitSession(Protocol):
    """A session that may answer a request before any tier is called (optional on a :class:`HookSession`)."""

    async def lookup(self) -> CascadeResult | None:
        """The request's result without calling a tier, or ``None`` to let the cascade run."""
        ...


@runtime_checkable
class Hook(Protocol):
    """A feature attached to a cascade."""

    async def start(self, request: HookRequest) -> HookSession | None:
        """A session for this request, or ``None`` when the hook has nothing to do with it."""
        ...

    async def aclose(self) -> None:
        """Finish background work (the cascade's ``aclose``/``close`` call it)."""
        ...


class _MemorySession:
    def __init__(self, session: MemorySession) -> None:
        self._session = session

    def augment(self, tier_index: int, messages: Messages, tier_name: str) -> Messages:
        return self._session.augment(tier_index, messages, tier_name)

    async def finish(self, result: CascadeResult, ctx: FinishContext) -> CascadeResult:
        return await self._session.learn(result, ctx.tier, ctx.caller, is_last=ctx.is_last, budget=ctx.budget)


class MemoryHook:
    """Inter-Cascade strategy memory as a hook: strategies into the first tier's prompt, learning after escalations."""

    def __init__(self, memory: StrategyMemory) -> None:
        self.memory = memory

    async def start(self, request: HookRequest) -> HookSession | None:
        return _MemorySession(await self.memory.session(request.question))

    async def aclose(self) -> None:
        await self.memory.wait_learning()


def run_augment(sessions: Sequence[HookSession], tier_index: int, messages: Messages, tier_name: str) -> Messages:
    """``messages`` passed through every session's :meth:`HookSession.augment`, in order."""
    for s in sessions:
        messages = s.augment(tier_index, messages, tier_name)
    return messages


async def run_finish(sessions: Sequence[HookSession], result: CascadeResult, ctx: FinishContext) -> CascadeResult:
    """``result`` passed through every session's :meth:`HookSession.finish`, in order."""
    for s in sessions:
        result = await s.finish(result, ctx)
    return result


async def run_lookup(sessions: Sequence[HookSession]) -> CascadeResult | None:
    """The first result a :class:`ShortCircuitSession` gives, or ``None`` (then the tiers run)."""
    for s in sessions:
        if isinstance(s, ShortCircuitSession):
            hit = await s.lookup()
            if hit is not None:
                return hit
    return None


async def start_sessions(hooks: Sequence[Hook], request: HookRequest) -> tuple[list[HookSession], CascadeResult | None]:
    """Start each hook's session in order; a :class:`ShortCircuitSession` is asked at once, and its hit
    (returned with the sessions started so far) means no later hook starts and no tier runs."""
    sessions: list[HookSession] = []
    for h in hooks:
        s = await h.start(request)
        if s is None:
            continue
        sessions.append(s)
        if isinstance(s, ShortCircuitSession):
            hit = await s.lookup()
            if hit is not None:
                return sessions, hit
    return sessions, None
