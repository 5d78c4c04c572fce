"""Routers: predict each tier's chance of answering a query correctly, before any generation.

A :class:`Router` has one method, :meth:`Router.predict` (queries -> an
``(n, n_tiers)`` array of P(correct)), in the spirit of RouteLLM's
``calculate_strong_win_rate``. Routers are looked up by name in
:data:`ROUTERS`. :class:`RoutedCascade` uses one two ways:

* ``mode="route"``: call only the chosen tier (the reference's pre-generation
  router: no cheap-tier cost on queries sent straight to a stronger tier);
* ``mode="skip"``: start the ordinary cascade at the chosen tier (P(IK) as an
  extra deferral signal: a query is escalated when either P(IK) or the
  samples' agreement is low).

The chosen tier is the first one (cheapest first) whose predicted P(correct)
reaches its threshold; the last tier when none does.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

from semcascade._sync import run_sync
from semcascade.cascade import Cascade
from semcascade.memory.config import MemoryConfig
from semcascade.messages import PromptLike, normalize_messages, question_of
from semcascade.policy import threshold_accepts
from semcascade.registry import Registry
from semcascade.result import CascadeResult
from semcascade.routing.features import DEFAULT_EMBEDDING_MODEL, Embedder, FloatArray, default_embedder, query_features
from semcascade.routing.pik import PIKModel, RouterError

__all__ = [
    "ROUTERS",
    "ConstantRouter",
    "PIKRouter",
    "RouteDecision",
    "RoutedCascade",
    "RoutedCascadeResult",
    "Router",
    "available_routers",
    "choose_tier",
    "create_router",
    "register_router",
]

RouteMode = Literal["route", "skip"]


@runtime_checkable
class Router(Protocol):
    """Predicts, per query and tier, the probability that the tier answers correctly."""

    def predict(self, queries: Sequence[str]) -> FloatArray:
        """An array of shape ``(len(queries), n_tiers)`` with values in [0, 1]."""
        ...


ROUTERS: Registry[Router] = Registry("router", RouterError)


def register_router(name: str) -> Callable[[Callable[..., Router]], Callable[..., Router]]:
    return ROUTERS.register(name)


def available_routers() -> list[str]:
    return ROUTERS.names()


def create_router(name: str, **options: Any) -> Router:
    """Build the router registered under ``name`` (``pik``: ``path=``; ``constant``: ``probabilities=``)."""
    return ROUTERS.create(name, **options)


class PIKRouter:
    """The learned black-box P(IK) predictor of :mod:`semcascade.routing.pik` as a router."""

    def __init__(self, model: PIKModel, *, embedder: Embedder | None = None) -> None:
        if embedder is None and model.embedding_model != DEFAULT_EMBEDDING_MODEL:
            raise RouterError(
                f"the router was trained on embedding model {model.embedding_model!r}; pass embedder= with that model"
            )
        self.model = model
        self._embedder = embedder

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, embedder: Embedder | None = None) -> PIKRouter:
        return cls(PIKModel.load(path), embedder=embedder)

    def __repr__(self) -> str:
        return f"PIKRouter(tiers={self.model.tier_names})"

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = default_embedder()
        return self._embedder

    def predict(self, queries: Sequence[str]) -> FloatArray:
        x = query_features(list(queries), self.embedder, max_chars=self.model.max_chars)
        if len(x) and x.shape[1] != len(self.model.tiers[0].weights):
            raise RouterError(
                f"the embedder gives {x.shape[1] - len(self.model.cheap_features)}-dimensional vectors, "
                f"the router expects {self.model.embedding_dimension}; use the embedding model it was trained on"
            )
        return self.model.predict_features(x)


@register_router("pik")
def _pik_router(path: str, embedder: Embedder | None = None) -> Router:
    return PIKRouter.load(path, embedder=embedder)


@register_router("constant")
class ConstantRouter:
    """The same P(correct) per tier for every query (a baseline, and a test double)."""

    def __init__(self, probabilities: Sequence[float]) -> None:
        probs = [float(p) for p in probabilities]
        if not probs or not all(0.0 <= p <= 1.0 for p in probs):
            raise RouterError(f"probabilities must be a non-empty list of values in [0, 1], got {probabilities!r}")
        self.probabilities = probs

    def predict(self, queries: Sequence[str]) -> FloatArray:
        return np.tile(np.asarray(self.probabilities, dtype=np.float64), (len(queries), 1))


def choose_tier(probabilities: Sequence[float], thresholds: Sequence[float]) -> int:
    """The first tier whose P(correct) >= its threshold (cheapest first); the last tier when none does."""
    last = len(probabilities) - 1
    for i in range(last):
        if threshold_accepts([probabilities[i]], thresholds[i], [True])[0]:  # the cascade's one threshold rule
            return i
    return last


class RouteDecision(BaseModel):
    """Which tier the router chose, and why."""

    model_config = ConfigDict(frozen=True)

    tier_index: int
    tier: str
    probabilities: list[float]
    thresholds: list[float]
    mode: RouteMode
    latency_s: float
    reason: str


class RoutedCascadeResult(CascadeResult):
    """A :class:`CascadeResult` (tier_index counts the full cascade's tiers) with the routing decision."""

    route: RouteDecision


class RoutedCascade:
    """Route each request to a tier before generating (see the module doc).

    ``threshold``: one value for every non-final tier, or one per non-final
    tier. The wrapped cascade's provider, scorer and local server are shared.
    """

    def __init__(
        self,
        cascade: Cascade,
        router: Router,
        *,
        threshold: float | Sequence[float] = 0.5,
        mode: RouteMode = "route",
    ) -> None:
        n = len(cascade.config.tiers)
        th = [float(threshold)] * (n - 1) if isinstance(threshold, int | float) else [float(t) for t in threshold]
        if len(th) != n - 1 or not all(0.0 <= t <= 1.0 for t in th):
            raise RouterError(f"threshold must be one value or {n - 1} values (one per non-final tier), all in [0, 1]")
        if mode not in ("route", "skip"):
            raise RouterError(f"mode must be 'route' or 'skip', got {mode!r}")
        self.cascade = cascade
        self.router = router
        self.thresholds = th
        self.mode: RouteMode = mode
        self._subs: dict[int, Cascade] = {}

    def route(self, queries: Sequence[str]) -> list[tuple[int, list[float]]]:
        """(chosen tier, P(correct) per tier) for each query."""
        probs = np.asarray(self.router.predict(list(queries)), dtype=np.float64)
        n = len(self.cascade.config.tiers)
        if probs.shape != (len(queries), n):
            raise RouterError(
                f"the router predicts {probs.shape[-1] if probs.ndim == 2 else '?'} tiers, the cascade has {n}; "
                "train the router on an eval run of this cascade"
            )
        return [(choose_tier(list(row), self.thresholds), [float(p) for p in row]) for row in probs]

    def _cascade_from(self, index: int) -> Cascade:
        if self.mode == "skip" and index == 0:
            return self.cascade
        if index not in self._subs:
            cfg = self.cascade.config
            tiers = cfg.tiers[index:] if self.mode == "skip" else [cfg.tiers[index]]
            sub_cfg = cfg.model_copy(update={"tiers": tiers, "memory": MemoryConfig()})
            base = self.cascade
            self._subs[index] = Cascade(
                sub_cfg, provider=base.provider, scorer=base.scorer, policy=base.policy, local_server=base.local_server
            )
        return self._subs[index]

    async def generate(self, prompt: PromptLike) -> RoutedCascadeResult:
        t0 = time.perf_counter()
        question = question_of(normalize_messages(prompt))
        ((index, probs),) = await asyncio.to_thread(self.route, [question])
        latency = time.perf_counter() - t0
        names = [t.name for t in self.cascade.config.tiers]
        passed = index < len(names) - 1
        reason = (
            f"P({names[index]} correct) {probs[index]:.3f} >= {self.thresholds[index]:g}"
            if passed
            else "no earlier tier reached its threshold: last tier"
        )
        decision = RouteDecision(
            tier_index=index, tier=names[index], probabilities=probs, thresholds=self.thresholds,
            mode=self.mode, latency_s=latency, reason=reason,
        )  # fmt: skip
        sub = await asyncio.to_thread(self._cascade_from, index)
        result = await sub.generate(prompt)
        return RoutedCascadeResult(
            **{
                **dict(result),
                "tier_index": index + result.tier_index,
                "latency_s": result.latency_s + latency,
                "route": decision,
            }
        )

    def generate_sync(self, prompt: PromptLike) -> RoutedCascadeResult:
        """Blocking twin of :meth:`generate` (not inside a running event loop); like
        :meth:`Cascade.generate_sync`, its event loop ends with the call, after the wrapped
        cascade's end-of-loop cleanup (background learning finished, clients closed)."""
        return run_sync(lambda: self.generate(prompt), loop_end=self.cascade._end_of_loop)

    async def aclose(self) -> None:
        """Close the per-tier cascades this router made, then the wrapped cascade (see :meth:`Cascade.aclose`)."""
        for sub in self._subs.values():
            await sub.aclose()
        await self.cascade.aclose()

    def close(self) -> None:
        """Blocking twin of :meth:`aclose` (see :meth:`Cascade.close`)."""
        for sub in self._subs.values():
            sub.close()
        self.cascade.close()

    def __enter__(self) -> RoutedCascade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> RoutedCascade:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
