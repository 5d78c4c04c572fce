"""Strategy stores: the ``StrategyStore`` seam, its entries, an in-memory store and the registry.

A store holds (query embedding, strategy text, provenance) entries. It owns
the two rules that must hold atomically with an insert: near-duplicate
strategies are skipped (cosine of the *strategy* embeddings >=
``dedup_similarity``, or the same query hash), and the store never holds more
than ``max_entries`` (the excess is evicted: least recently retrieved first
for ``"lru"``, first stored first for ``"oldest"``). Retrieval is by cosine
similarity of *query* embeddings (rows are L2-normalised, so a dot product).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from semcascade.errors import MemoryStoreError
from semcascade.registry import Registry

__all__ = [
    "BUILTIN_STORES",
    "STRATEGY_STORES",
    "AddResult",
    "Eviction",
    "InMemoryStrategyStore",
    "MemoryStoreError",
    "StrategyEntry",
    "StrategyMatch",
    "StrategyStore",
    "available_stores",
    "create_store",
    "query_hash",
    "register_store",
]

FloatArray = npt.NDArray[np.float32]
Eviction = Literal["lru", "oldest"]


def query_hash(query: str) -> str:
    """SHA-256 of the whitespace- and case-normalised query (provenance without storing the text)."""
    return hashlib.sha256(" ".join(query.lower().split()).encode("utf-8")).hexdigest()


def as_unit_vector(vec: Any, what: str) -> FloatArray:
    """``vec`` as a finite, L2-normalised 1-D float32 array; raises :class:`MemoryStoreError` otherwise."""
    arr = np.asarray(vec, dtype=np.float32)
    if arr.ndim != 1 or arr.size == 0:
        raise MemoryStoreError(f"{what} must be a non-empty 1-D vector, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise MemoryStoreError(f"{what} contains NaN or infinite values; check the embedding model")
    norm = float(np.linalg.norm(arr))
    if norm == 0.0:
        raise MemoryStoreError(f"{what} is the zero vector; check the embedding model")
    out: FloatArray = (arr / norm).astype(np.float32)
    return out


@dataclass(frozen=True)
class StrategyEntry:
    """One learned strategy and where it came from."""

    query_embedding: FloatArray = field(repr=False)
    strategy_embedding: FloatArray = field(repr=False)
    strategy: str
    source_model: str
    source_tier: str
    agreement: float | None
    query_hash: str
    created_at: float = field(default_factory=time.time)
    last_used_at: float | None = None
    uses: int = 0
    id: int | None = None


@dataclass(frozen=True)
class StrategyMatch:
    """A retrieved strategy and its query similarity."""

    entry: StrategyEntry
    similarity: float


@dataclass(frozen=True)
class AddResult:
    """What :meth:`StrategyStore.add` did: ``added`` with the new id, or skipped as a duplicate of ``id``."""

    added: bool
    id: int | None
    reason: str
    evicted: int = 0


@runtime_checkable
class StrategyStore(Protocol):
    """Where strategies live. Implementations must be safe to call from several threads."""

    def add(self, entry: StrategyEntry) -> AddResult:
        """Store ``entry`` unless it duplicates a stored one; evict beyond the cap."""
        ...

    def search(self, query_embedding: FloatArray, *, top_k: int, min_similarity: float) -> list[StrategyMatch]:
        """The ``top_k`` entries whose query similarity is >= ``min_similarity``, best first."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def check_store_options(dedup_similarity: float, max_entries: int, eviction: str) -> None:
    if not -1.0 <= dedup_similarity <= 1.0:
        raise MemoryStoreError(f"dedup_similarity must be in [-1, 1], got {dedup_similarity!r}")
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
        raise MemoryStoreError(f"max_entries must be a positive integer, got {max_entries!r}")
    if eviction not in ("lru", "oldest"):
        raise MemoryStoreError(f"eviction must be 'lru' or 'oldest', got {eviction!r}")


def check_search_options(top_k: int, min_similarity: float) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise MemoryStoreError(f"top_k must be a positive integer, got {top_k!r}")
    if not -1.0 <= min_similarity <= 1.0:
        raise MemoryStoreError(f"min_similarity must be in [-1, 1], got {min_similarity!r}")


def top_matches(matrix: FloatArray, query: FloatArray, *, top_k: int, min_similarity: float) -> list[tuple[int, float]]:
    """(row, similarity) of the best ``top_k`` rows of ``matrix`` with similarity >= ``min_similarity``."""
    if matrix.shape[0] == 0:
        return []
    sims = matrix @ query
    order = np.argsort(-sims, kind="stable")[:top_k]
    return [(int(i), float(sims[i])) for i in order if float(sims[i]) >= min_similarity]


def eviction_key(entry: StrategyEntry, eviction: Eviction) -> tuple[float, int]:
    """Sort key: the smallest is evicted first."""
    if eviction == "lru":
        used = entry.last_used_at if entry.last_used_at is not None else entry.created_at
        return (used, entry.id or 0)
    return (entry.created_at, entry.id or 0)


class InMemoryStrategyStore:
    """A store in this process's memory (tests, short-lived runs)."""

    def __init__(self, dedup_similarity: float = 0.92, max_entries: int = 1000, eviction: Eviction = "lru") -> None:
        check_store_options(dedup_similarity, max_entries, eviction)
        self.dedup_similarity = dedup_similarity
        self.max_entries = max_entries
        self.eviction: Eviction = eviction
        self._entries: dict[int, StrategyEntry] = {}
        self._next_id = 1
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"InMemoryStrategyStore(entries={len(self._entries)}, max_entries={self.max_entries})"

    def _check_dimension(self, vec: FloatArray) -> None:
        for e in self._entries.values():
            if e.query_embedding.shape != vec.shape:
                raise MemoryStoreError(
                    f"embedding size {vec.shape[0]} differs from the store's {e.query_embedding.shape[0]}; "
                    "use the same embedding model as the stored strategies or another store"
                )
            return

    def add(self, entry: StrategyEntry) -> AddResult:
        q = as_unit_vector(entry.query_embedding, "query embedding")
        s = as_unit_vector(entry.strategy_embedding, "strategy embedding")
        if not entry.strategy.strip():
            raise MemoryStoreError("a strategy must not be empty")
        with self._lock:
            self._check_dimension(q)
            for e in self._entries.values():
                if e.query_hash == entry.query_hash:
                    return AddResult(False, e.id, f"the same query already has strategy #{e.id}")
                sim = float(np.dot(e.strategy_embedding, s))
                if sim >= self.dedup_similarity:
                    return AddResult(False, e.id, f"near-duplicate of strategy #{e.id} (cosine {sim:.3f})")
            new = replace(entry, query_embedding=q, strategy_embedding=s, id=self._next_id)
            self._entries[self._next_id] = new
            self._next_id += 1
            evicted = 0
            while len(self._entries) > self.max_entries:
                victim = min(self._entries.values(), key=lambda e: eviction_key(e, self.eviction))
                assert victim.id is not None
                del self._entries[victim.id]
                evicted += 1
            return AddResult(True, new.id, "added", evicted)

    def search(self, query_embedding: FloatArray, *, top_k: int, min_similarity: float) -> list[StrategyMatch]:
        check_search_options(top_k, min_similarity)
        q = as_unit_vector(query_embedding, "query embedding")
        with self._lock:
            if not self._entries:
                return []
            self._check_dimension(q)
            entries = list(self._entries.values())
            matrix = np.stack([e.query_embedding for e in entries])
            now = time.time()
            out = []
            for row, sim in top_matches(matrix, q, top_k=top_k, min_similarity=min_similarity):
                e = entries[row]
                assert e.id is not None
                used = replace(e, last_used_at=now, uses=e.uses + 1)
                self._entries[e.id] = used
                out.append(StrategyMatch(used, sim))
            return out

    def count(self) -> int:
        with self._lock:
            return len(self._entries)

    def entries(self) -> list[StrategyEntry]:
        """Every stored entry, by id."""
        with self._lock:
            return [self._entries[i] for i in sorted(self._entries)]

    def close(self) -> None:
        """Nothing to release."""


# --------------------------------------------------------------------------- registry


#: name -> "module:factory" of the stores semcascade ships (imported on first use)
BUILTIN_STORES = {
    "memory": "semcascade.memory.store:_memory_store",
    "sqlite": "semcascade.memory.sqlite_store:_sqlite_store",
}

STRATEGY_STORES: Registry[StrategyStore] = Registry("strategy store", MemoryStoreError, builtins=BUILTIN_STORES)


def register_store(name: str) -> Callable[[Callable[..., StrategyStore]], Callable[..., StrategyStore]]:
    """Decorator: make a store factory constructible by name (``memory.store`` in a config)."""
    return STRATEGY_STORES.register(name)


def available_stores() -> list[str]:
    return STRATEGY_STORES.names()


def create_store(name: str = "sqlite", **options: Any) -> StrategyStore:
    """Build the store registered under ``name``.

    Options of the built-ins: ``dedup_similarity``, ``max_entries``,
    ``eviction`` and, for ``sqlite``, ``path`` (default: the cache dir).
    """
    return STRATEGY_STORES.create(name, **options)


def _memory_store(
    path: str | None = None, dedup_similarity: float = 0.92, max_entries: int = 1000, eviction: Eviction = "lru"
) -> StrategyStore:
    del path  # an in-memory store has no file
    return InMemoryStrategyStore(dedup_similarity=dedup_similarity, max_entries=max_entries, eviction=eviction)
