"""Strategy memory in Redis: entries and vectors in Redis, searched in a local copy per process.

Each process keeps a copy of the entries (and their query-embedding matrix) and refreshes it when the
store's version key changed; search is brute force over the copy (fine at the store's cap). An add
is an optimistic transaction (``WATCH`` the version, check duplicates against a fresh copy, insert,
evict beyond the cap, bump the version): dedup and the cap hold across processes. When Redis is
lost, search and count are misses and an add is skipped (warned, counted in the store's health).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from semcascade.memory.store import (
    AddResult,
    Eviction,
    FloatArray,
    StrategyEntry,
    StrategyMatch,
    as_unit_vector,
    check_search_options,
    check_store_options,
    eviction_key,
    top_matches,
)

if TYPE_CHECKING:
    from semcascade.state.redis_store import RedisStateStore

__all__ = ["RedisStrategyStore"]


def _vec(raw: str) -> FloatArray:
    return np.frombuffer(base64.b64decode(raw), dtype="<f4").astype(np.float32)


def _b64(vec: FloatArray) -> str:
    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode()


def _dump(e: StrategyEntry) -> bytes:
    return json.dumps(
        {
            "q": _b64(e.query_embedding),
            "s": _b64(e.strategy_embedding),
            "strategy": e.strategy,
            "source_model": e.source_model,
            "source_tier": e.source_tier,
            "agreement": e.agreement,
            "query_hash": e.query_hash,
            "created_at": e.created_at,
        }
    ).encode()


def _load(eid: int, raw: bytes, used: float | None, uses: int) -> StrategyEntry:
    d = json.loads(raw)
    return StrategyEntry(
        query_embedding=_vec(d["q"]), strategy_embedding=_vec(d["s"]), strategy=d["strategy"],
        source_model=d["source_model"], source_tier=d["source_tier"], agreement=d["agreement"],
        query_hash=d["query_hash"], created_at=float(d["created_at"]), last_used_at=used, uses=uses, id=eid,
    )  # fmt: skip


class RedisStrategyStore:
    """A :class:`~semcascade.memory.store.StrategyStore` shared by every process of a Redis namespace."""

    def __init__(
        self, store: RedisStateStore, *, dedup_similarity: float = 0.92, max_entries: int = 1000,
        eviction: Eviction = "lru",
    ) -> None:  # fmt: skip
        check_store_options(dedup_similarity, max_entries, eviction)
        self.store = store
        self.dedup_similarity = dedup_similarity
        self.max_entries = max_entries
        self.eviction: Eviction = eviction
        self._keys = {k: store.key("memory", k) for k in ("entries", "used", "uses", "version", "next_id")}
        self._lock = threading.Lock()
        self._version = -1
        self._entries: dict[int, StrategyEntry] = {}
        self._matrix: FloatArray | None = None
        self._ids: list[int] = []

    def __repr__(self) -> str:
        return f"RedisStrategyStore({self.store.url!r}, entries={len(self._entries)}, max_entries={self.max_entries})"

    # -- the local copy

    def _install(self, version: int, raw: dict[bytes, bytes], used: dict[bytes, bytes]) -> None:
        entries = {}
        for k, v in raw.items():
            eid = int(k)
            u = used.get(k)
            entries[eid] = _load(eid, v, float(u) if u is not None else None, 0)
        self._entries = entries
        self._ids = sorted(entries)
        self._matrix = np.stack([entries[i].query_embedding for i in self._ids]) if entries else None
        self._version = version

    def _refresh(self) -> None:
        """Bring the local copy up to date if Redis says the store changed (one GET when it did not)."""
        k = self._keys
        version = int(self.store.client.get(k["version"]) or 0)
        if version == self._version:
            return
        pipe = self.store.client.pipeline(transaction=True)
        pipe.get(k["version"])
        pipe.hgetall(k["entries"])
        pipe.hgetall(k["used"])
        v, raw, used = pipe.execute()
        self._install(int(v or 0), raw, used)

    # -- the StrategyStore surface

    def add(self, entry: StrategyEntry) -> AddResult:
        from semcascade.errors import MemoryStoreError

        q = as_unit_vector(entry.query_embedding, "query embedding")
        s = as_unit_vector(entry.strategy_embedding, "strategy embedding")
        if not entry.strategy.strip():
            raise MemoryStoreError("a strategy must not be empty")
        redis = self.store._redis
        k = self._keys
        with self._lock:
            try:
                for _ in range(50):
                    with self.store.client.pipeline(transaction=True) as pipe:
                        try:
                            pipe.watch(k["version"])
                            result = self._add_watched(pipe, replace(entry, query_embedding=q, strategy_embedding=s))
                        except redis.WatchError:
                            continue
                    return result
            except self.store.errors as exc:
                self.store.health.degrade("memory", exc, self.store.url)
                return AddResult(False, None, f"not stored: the state store is unavailable ({exc})")
        return AddResult(False, None, "not stored: the store kept changing under 50 attempts")

    def _add_watched(self, pipe: Any, entry: StrategyEntry) -> AddResult:
        k = self._keys
        version = int(pipe.get(k["version"]) or 0)
        if version != self._version:
            self._install(version, pipe.hgetall(k["entries"]), pipe.hgetall(k["used"]))
        for e in self._entries.values():
            if e.query_embedding.shape != entry.query_embedding.shape:
                from semcascade.errors import MemoryStoreError

                raise MemoryStoreError(
                    f"embedding size {entry.query_embedding.shape[0]} differs from the store's "
                    f"{e.query_embedding.shape[0]}; use the same embedding model as the stored strategies"
                )
            if e.query_hash == entry.query_hash:
                return AddResult(False, e.id, f"the same query already has strategy #{e.id}")
            sim = float(np.dot(e.strategy_embedding, entry.strategy_embedding))
            if sim >= self.dedup_similarity:
                return AddResult(False, e.id, f"near-duplicate of strategy #{e.id} (cosine {sim:.3f})")
        new_id = int(pipe.incr(k["next_id"]))
        new = replace(entry, id=new_id)
        keep = {**self._entries, new_id: new}
        victims: list[int] = []
        while len(keep) > self.max_entries:
            victim = min(keep.values(), key=lambda e: eviction_key(e, self.eviction))
            assert victim.id is not None
            victims.append(victim.id)
            del keep[victim.id]
        pipe.multi()
        pipe.hset(k["entries"], str(new_id), _dump(new))
        if victims:
            names = [str(v) for v in victims]
            pipe.hdel(k["entries"], *names)
            pipe.hdel(k["used"], *names)
            pipe.hdel(k["uses"], *names)
        pipe.incr(k["version"])
        pipe.execute()
        return AddResult(True, new_id, "added", len(victims))

    def search(self, query_embedding: FloatArray, *, top_k: int, min_similarity: float) -> list[StrategyMatch]:
        check_search_options(top_k, min_similarity)
        q = as_unit_vector(query_embedding, "query embedding")
        with self._lock:
            try:
                self._refresh()
            except self.store.errors as exc:
                self.store.health.degrade("memory", exc, self.store.url)
                return []
            if self._matrix is None:
                return []
            if self._matrix.shape[1] != q.shape[0]:
                from semcascade.errors import MemoryStoreError

                raise MemoryStoreError(
                    f"embedding size {q.shape[0]} differs from the store's {self._matrix.shape[1]}; "
                    "use the same embedding model as the stored strategies or another store"
                )
            hits = top_matches(self._matrix, q, top_k=top_k, min_similarity=min_similarity)
            now = time.time()
            out = []
            for row, sim in hits:
                e = self._entries[self._ids[row]]
                used = replace(e, last_used_at=now, uses=e.uses + 1)
                self._entries[self._ids[row]] = used
                out.append(StrategyMatch(used, sim))
        if out:
            try:
                pipe = self.store.client.pipeline(transaction=False)
                for m in out:
                    pipe.hset(self._keys["used"], str(m.entry.id), repr(now))
                    pipe.hincrby(self._keys["uses"], str(m.entry.id), 1)
                pipe.execute()
            except self.store.errors as exc:
                self.store.health.degrade("memory", exc, self.store.url)
        return out

    def count(self) -> int:
        with self._lock:
            try:
                self._refresh()
            except self.store.errors as exc:
                self.store.health.degrade("memory", exc, self.store.url)
                return 0
            return len(self._entries)

    def entries(self) -> list[StrategyEntry]:
        """Every stored entry, by id (refreshed)."""
        with self._lock:
            self._refresh()
            return [self._entries[i] for i in self._ids]

    def close(self) -> None:
        """The state store owns the connection."""
