"""The ``StateStore`` seam: what budgets, limits, caches and strategy memory are built from.

A store hands out the objects the cascade already uses, backed by it:

* :meth:`StateStore.ledger` - the run budget ledger (reserve the worst case, settle what was billed);
* :meth:`StateStore.limiter` - a tier's concurrency and rate limit;
* :meth:`StateStore.kv` - a key -> bytes cache with a TTL (the answer cache);
* :meth:`StateStore.response_cache` - the response cache (every sampled choice);
* :meth:`StateStore.strategy_store` - the strategy memory's store;
* :meth:`StateStore.drift_counters` - a task's drift-monitor counters (one stream per task).

Failure semantics (a shared backend lost mid-run): budgets and limits **fail closed** - a reservation
or slot that cannot be taken raises :class:`~semcascade.errors.StateUnavailableError`, so nothing is
spent that the shared ledger did not grant; caches and strategy memory **degrade to misses** with a
``RuntimeWarning`` and a count in :attr:`StateStore.health` (read by the metrics layer), and so does
drift monitoring (a request the counters could not record is not counted). A reservation
whose settlement cannot be written stays reserved and is charged in full when its lease expires.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from semcascade.errors import StateStoreError
from semcascade.registry import Registry

if TYPE_CHECKING:
    from semcascade._budget import BudgetLedger
    from semcascade._limits import TierLimiter
    from semcascade.config import CascadeConfig
    from semcascade.memory.config import MemoryConfig
    from semcascade.memory.store import StrategyStore
    from semcascade.response_cache import ResponseCache
    from semcascade.state.drift_counters import CusumParams, DriftCounters

__all__ = [
    "STATE_STORES",
    "KeyValueCache",
    "StateHealth",
    "StateStore",
    "config_hash",
    "create_state_store",
    "register_state_store",
]


class StateHealth:
    """Counters of a store's degraded operations (thread-safe), for the metrics layer.

    ``degraded[kind]``: cache/memory operations that became a miss or a skipped write because the
    backend failed; ``failed_closed[kind]``: budget/limit operations refused for the same reason.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.degraded: Counter[str] = Counter()
        self.failed_closed: Counter[str] = Counter()

    def degrade(self, kind: str, exc: BaseException, where: str) -> None:
        with self._lock:
            self.degraded[kind] += 1
        warnings.warn(f"state store {where}: {kind} degraded to a miss ({exc})", RuntimeWarning, stacklevel=3)

    def fail_closed(self, kind: str) -> None:
        with self._lock:
            self.failed_closed[kind] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {"degraded": dict(self.degraded), "failed_closed": dict(self.failed_closed)}


@runtime_checkable
class KeyValueCache(Protocol):
    """Bytes by key with a time to live; a backend failure is a miss (``get``) or a skipped write (``put``)."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes, ttl_s: float) -> None: ...


@runtime_checkable
class StateStore(Protocol):
    """Where a cascade's budgets, limits, caches and strategy memory live."""

    #: the backend's registry name, and where it is (a URL or path; no secret)
    name: str
    url: str
    #: the key prefix of this store's data (processes that share it share the data)
    namespace: str
    health: StateHealth

    def ledger(self, name: str, max_cost: float | None, max_tokens: int | None, *, scope: str) -> BudgetLedger:
        """The budget ledger ``name`` (one per run), with its caps."""
        ...

    def limiter(self, tier: str, max_concurrency: int, requests_per_second: float | None) -> TierLimiter:
        """Tier ``tier``'s concurrency and rate limit."""
        ...

    def kv(self, kind: str) -> KeyValueCache:
        """A key-value cache for ``kind`` (e.g. ``answers``)."""
        ...

    def response_cache(self) -> ResponseCache:
        """The response cache (the object a :class:`~semcascade.response_cache.CachingProvider` reads)."""
        ...

    def strategy_store(self, memory: MemoryConfig) -> StrategyStore:
        """The strategy memory's store for ``memory``."""
        ...

    def drift_counters(self, key: str, cusum: CusumParams, *, rate_window: int, window: int) -> DriftCounters:
        """The drift monitor's counters of stream ``key`` (a task): shared by the processes that share the store."""
        ...

    def close(self) -> None: ...


#: name -> "module:factory" of the backends semcascade ships (imported on first use)
BUILTIN_STATE_STORES = {
    "memory": "semcascade.state.local:MemoryStateStore",
    "sqlite": "semcascade.state.local:SQLiteStateStore",
    "redis": "semcascade.state.redis_store:RedisStateStore",
}

STATE_STORES: Registry[StateStore] = Registry("state store", StateStoreError, builtins=BUILTIN_STATE_STORES)


def register_state_store(name: str) -> Callable[[Callable[..., StateStore]], Callable[..., StateStore]]:
    """Decorator: make a state backend constructible by name (``state.name`` in a config)."""
    return STATE_STORES.register(name)


def config_hash(config: CascadeConfig) -> str:
    """16 hex chars naming what a config computes (everything but its ``state:`` section)."""
    text = config.model_dump_json(exclude={"state"})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def create_state_store(config: CascadeConfig, **overrides: Any) -> StateStore:
    """The state backend ``config.state`` names, namespaced by ``state.namespace`` or the config hash."""
    state = config.state
    namespace = state.namespace or config_hash(config)
    options = {**state.options, **overrides}
    return STATE_STORES.create(state.name, namespace=namespace, lease_s=state.lease_s, **options)
