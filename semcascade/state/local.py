"""The single-machine state backends: ``memory`` (all in this process) and ``sqlite`` (the default).

``sqlite`` is what semcascade did before the seam existed: the run budget and the tier limits are
per process (:class:`~semcascade._budget.BudgetLedger`, :class:`~semcascade._limits.TierLimiter`),
the response cache and the strategy memory are SQLite files (as configured in ``memory.store``), and
the answer cache is one more SQLite file; the drift counters are per process. ``memory`` keeps
everything in this process (tests, short-lived runs).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semcascade._budget import BudgetLedger
from semcascade._limits import TierLimiter
from semcascade._sqlite import ThreadConnections
from semcascade.errors import StateStoreError
from semcascade.state.base import KeyValueCache, StateHealth

if TYPE_CHECKING:
    from semcascade.memory.config import MemoryConfig
    from semcascade.memory.store import StrategyStore
    from semcascade.providers.base import Completion
    from semcascade.response_cache import CachedSample, ResponseCache
    from semcascade.state.drift_counters import CusumParams, DriftCounters

__all__ = ["InMemoryResponseCache", "MemoryKV", "MemoryStateStore", "SQLiteKV", "SQLiteStateStore"]


class MemoryKV:
    """A dict with expiry times."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            if hit[0] < time.time():
                del self._data[key]
                return None
            return hit[1]

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        with self._lock:
            self._data[key] = (time.time() + ttl_s, value)


class SQLiteKV:
    """Key -> bytes with expiry in one SQLite file (WAL; safe across the processes of one machine)."""

    def __init__(self, path: Path, health: StateHealth) -> None:
        self.path = path
        self.health = health
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conns = ThreadConnections(
            path,
            busy_timeout_s=30.0,
            synchronous="NORMAL",
            on_error=lambda exc, doing: StateStoreError(f"{path}: {doing}: {exc}"),
            on_closed=lambda: StateStoreError(f"{path}: the state store is closed"),
        )
        try:
            conn = self._conns.get()
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise StateStoreError(f"{path}: cannot open the state file ({exc}); check the path") from None

    def get(self, key: str) -> bytes | None:
        try:
            row = self._conns.get().execute("SELECT value, expires_at FROM kv WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            self.health.degrade("kv", exc, str(self.path))
            return None
        if row is None or float(row[1]) < time.time():
            return None
        return bytes(row[0])

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            self._conns.get().execute(
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)", (key, value, time.time() + ttl_s)
            )
        except sqlite3.Error as exc:
            self.health.degrade("kv", exc, str(self.path))

    def close(self) -> None:
        self._conns.close()


class InMemoryResponseCache:
    """The :class:`~semcascade.response_cache.ResponseCache` surface over a dict (the ``memory`` backend)."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[int, CachedSample]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, n: int) -> list[CachedSample]:
        with self._lock:
            rows = self._rows.get(key, {})
            return [rows[i] for i in sorted(rows) if i < n]

    def count(self, key: str | None = None) -> int:
        with self._lock:
            if key is not None:
                return len(self._rows.get(key, {}))
            return sum(len(r) for r in self._rows.values())

    def keys(self) -> dict[str, int]:
        with self._lock:
            return {k: len(v) for k, v in self._rows.items()}

    def recorded_latency(self, key: str, n: int = 1) -> float | None:
        samples = self.get(key, n)
        return max(s.latency_s for s in samples) if n >= 1 and len(samples) >= n else None

    def put(
        self, key: str, indices: Any, completion: Completion, latency_s: float, *, read_n: int | None = None
    ) -> list[CachedSample]:
        from semcascade.response_cache import CachedSample

        now = time.time()
        with self._lock:
            rows = self._rows.setdefault(key, {})
            for idx, c in zip(indices, completion.choices[: len(indices)], strict=False):
                rows.setdefault(
                    int(idx),
                    CachedSample(int(idx), c, completion.model, completion.prompt_tokens, latency_s, len(indices), now),
                )
        upto = read_n if read_n is not None else (max(indices) + 1 if len(indices) else 0)
        return self.get(key, upto)

    def close(self) -> None:
        """Nothing to release."""


class MemoryStateStore:
    """Everything in this process: nothing is shared with another process."""

    name = "memory"

    def __init__(self, namespace: str = "default", lease_s: float = 600.0) -> None:
        self.namespace = namespace
        self.lease_s = lease_s
        self.url = "memory://"
        self.health = StateHealth()
        self._kv: dict[str, MemoryKV] = {}
        self._responses: InMemoryResponseCache | None = None

    def __repr__(self) -> str:
        return f"MemoryStateStore(namespace={self.namespace!r})"

    def ledger(self, name: str, max_cost: float | None, max_tokens: int | None, *, scope: str) -> BudgetLedger:
        return BudgetLedger(max_cost, max_tokens, scope=scope)

    def limiter(self, tier: str, max_concurrency: int, requests_per_second: float | None) -> TierLimiter:
        return TierLimiter(max_concurrency, requests_per_second)

    def kv(self, kind: str) -> KeyValueCache:
        return self._kv.setdefault(kind, MemoryKV())

    def response_cache(self) -> ResponseCache:
        if self._responses is None:
            self._responses = InMemoryResponseCache()
        return self._responses  # type: ignore[return-value]  # the ResponseCache surface CachingProvider reads

    def strategy_store(self, memory: MemoryConfig) -> StrategyStore:
        from semcascade.memory.store import InMemoryStrategyStore

        opts = memory.store_options()
        return InMemoryStrategyStore(opts["dedup_similarity"], opts["max_entries"], opts["eviction"])

    def drift_counters(self, key: str, cusum: CusumParams, *, rate_window: int, window: int) -> DriftCounters:
        from semcascade.state.drift_counters import LocalDriftCounters

        return LocalDriftCounters(cusum, rate_window=rate_window, window=window)

    def close(self) -> None:
        """Nothing to release."""


class SQLiteStateStore(MemoryStateStore):
    """One machine (the default): budgets and limits per process, caches and strategy memory in SQLite files.

    ``path``: the directory of the answer and response cache files (default: the cache dir,
    ``$SEMCASCADE_CACHE``).
    """

    name = "sqlite"

    def __init__(self, namespace: str = "default", lease_s: float = 600.0, path: str | None = None) -> None:
        super().__init__(namespace, lease_s)
        if path is None:
            from semcascade.local.paths import cache_dir

            self.directory = cache_dir()
        else:
            self.directory = Path(path).expanduser()
        self.url = f"sqlite://{self.directory}"
        self._files: dict[str, SQLiteKV] = {}
        self._sqlite_responses: ResponseCache | None = None

    def __repr__(self) -> str:
        return f"SQLiteStateStore({str(self.directory)!r}, namespace={self.namespace!r})"

    def kv(self, kind: str) -> KeyValueCache:
        if kind not in self._files:
            self._files[kind] = SQLiteKV(self.directory / f"{kind}.sqlite", self.health)
        return _Namespaced(self._files[kind], self.namespace)

    def response_cache(self) -> ResponseCache:
        if self._sqlite_responses is None:
            from semcascade.response_cache import ResponseCache

            self._sqlite_responses = ResponseCache(self.directory / "responses.sqlite")
        return self._sqlite_responses

    def strategy_store(self, memory: MemoryConfig) -> StrategyStore:
        from semcascade.memory.store import create_store

        return create_store(memory.store.name, **memory.store_options())

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        if self._sqlite_responses is not None:
            self._sqlite_responses.close()


class _Namespaced:
    """A key-value cache whose keys carry the store's namespace."""

    def __init__(self, inner: SQLiteKV, namespace: str) -> None:
        self.inner = inner
        self.namespace = namespace

    def get(self, key: str) -> bytes | None:
        return self.inner.get(f"{self.namespace}:{key}")

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self.inner.put(f"{self.namespace}:{key}", value, ttl_s)
