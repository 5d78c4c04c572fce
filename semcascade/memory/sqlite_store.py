"""The default strategy store: one SQLite file, shared safely between processes.

Like :mod:`semcascade.response_cache`: WAL journal, ``busy_timeout``, one
connection per thread (never reused across ``fork``), and every write in a
``BEGIN IMMEDIATE`` transaction so that dedup, insert and eviction are atomic
even when several processes learn at once. Embeddings are float32 blobs; the
first insert fixes the store's embedding size (a later mismatch is an error,
not a silent nonsense similarity). Searches keep the query-embedding matrix in
memory and reload it only when the ``generation`` counter (bumped by every
insert/eviction, in any process) has changed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from semcascade._sqlite import ThreadConnections, error_message, initialise_schema
from semcascade.memory.store import (
    AddResult,
    Eviction,
    FloatArray,
    MemoryStoreError,
    StrategyEntry,
    StrategyMatch,
    as_unit_vector,
    check_search_options,
    check_store_options,
    top_matches,
)

__all__ = ["DEFAULT_STORE_FILE", "STORE_FORMAT", "SQLiteStrategyStore", "default_store_path"]

STORE_FORMAT = "semcascade.strategy_store"
SCHEMA_VERSION = 1
DEFAULT_STORE_FILE = "strategies.sqlite"

_SCHEMA = """
CREATE TABLE semcascade_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE strategies (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    query_embedding    BLOB    NOT NULL,
    strategy_embedding BLOB    NOT NULL,
    strategy           TEXT    NOT NULL,
    source_model       TEXT    NOT NULL,
    source_tier        TEXT    NOT NULL,
    agreement          REAL,
    query_hash         TEXT    NOT NULL,
    created_at         REAL    NOT NULL,
    last_used_at       REAL,
    uses               INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX strategies_query_hash ON strategies (query_hash);
"""

_COLUMNS = (
    "id, query_embedding, strategy_embedding, strategy, source_model, source_tier, agreement, query_hash, "
    "created_at, last_used_at, uses"
)


def default_store_path() -> Path:
    """``<cache dir>/strategies.sqlite`` (``$SEMCASCADE_CACHE`` overrides the cache dir)."""
    from semcascade.local.paths import cache_dir

    return cache_dir() / DEFAULT_STORE_FILE


def _blob(vec: FloatArray) -> bytes:
    return np.asarray(vec, dtype="<f4").tobytes()


def _vec(raw: bytes) -> FloatArray:
    out: FloatArray = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return out


def _row_to_entry(row: tuple[Any, ...]) -> StrategyEntry:
    ident, qe, se, strategy, model, tier, agreement, qhash, created, used, uses = row
    return StrategyEntry(
        id=int(ident),
        query_embedding=_vec(qe),
        strategy_embedding=_vec(se),
        strategy=str(strategy),
        source_model=str(model),
        source_tier=str(tier),
        agreement=None if agreement is None else float(agreement),
        query_hash=str(qhash),
        created_at=float(created),
        last_used_at=None if used is None else float(used),
        uses=int(uses),
    )


class SQLiteStrategyStore:
    """Strategies in a SQLite file (default: ``<cache dir>/strategies.sqlite``)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        dedup_similarity: float = 0.92,
        max_entries: int = 1000,
        eviction: Eviction = "lru",
        busy_timeout_s: float = 30.0,
    ) -> None:
        check_store_options(dedup_similarity, max_entries, eviction)
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self.dedup_similarity = dedup_similarity
        self.max_entries = max_entries
        self.eviction: Eviction = eviction
        self.busy_timeout_s = busy_timeout_s
        self._conns = ThreadConnections(
            self.path,
            busy_timeout_s=busy_timeout_s,
            synchronous="NORMAL",
            on_error=self._fail,
            on_closed=lambda: self._error("the store is closed; open a new SQLiteStrategyStore"),
        )
        self._cache_lock = threading.Lock()
        self._cached_generation: int | None = None
        self._cached_ids: list[int] = []
        self._cached_matrix: FloatArray = np.zeros((0, 0), dtype=np.float32)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(f"cannot create its directory ({exc}); check the path and permissions") from None
        self._initialise()

    def __repr__(self) -> str:
        return f"SQLiteStrategyStore({str(self.path)!r}, max_entries={self.max_entries})"

    # -- connections

    def _error(self, message: str) -> MemoryStoreError:
        return MemoryStoreError(f"strategy store {str(self.path)!r}: {message}")

    def _fail(self, exc: BaseException, doing: str) -> MemoryStoreError:
        return self._error(
            error_message(
                exc, doing, self.busy_timeout_s, when_locked="retry later",
                when_foreign="the file is not a usable strategy store (corrupt or foreign) - "
                "delete it (and its -wal/-shm files) or set memory.path to another file",
            )
        )  # fmt: skip

    def _conn(self) -> sqlite3.Connection:
        return self._conns.get()

    def _initialise(self) -> None:
        meta = [("format", STORE_FORMAT), ("schema_version", str(SCHEMA_VERSION)), ("generation", "0"),
                ("created_at", f"{time.time():.3f}")]  # fmt: skip
        try:
            _, problem = initialise_schema(self._conn(), _SCHEMA, meta, self._check_meta)
        except MemoryStoreError:
            self.close()
            raise
        except sqlite3.Error as exc:
            self.close()
            raise self._fail(exc, "cannot open") from None
        if problem is not None:
            self.close()
            raise self._error(problem)

    @staticmethod
    def _check_meta(conn: sqlite3.Connection, tables: set[str]) -> str | None:
        fix = "delete the file (and its -wal/-shm files) or set memory.path to another file"
        if "semcascade_meta" not in tables or "strategies" not in tables:
            return f"this SQLite file is not a semcascade strategy store (tables: {sorted(tables)}); {fix}"
        meta = dict(conn.execute("SELECT key, value FROM semcascade_meta").fetchall())
        if meta.get("format") != STORE_FORMAT:
            return f"this SQLite file is not a semcascade strategy store (format={meta.get('format')!r}); {fix}"
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            return f"schema version {meta.get('schema_version')!r} is not the supported {SCHEMA_VERSION}; {fix}"
        return None

    def close(self) -> None:
        """Close every connection (from any thread). Idempotent."""
        self._conns.close()

    def __enter__(self) -> SQLiteStrategyStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- helpers

    @staticmethod
    def _meta(conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM semcascade_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _check_dimension(self, conn: sqlite3.Connection, dim: int, *, set_if_missing: bool) -> None:
        stored = self._meta(conn, "dimension")
        if stored is None:
            if set_if_missing:
                conn.execute("INSERT INTO semcascade_meta (key, value) VALUES ('dimension', ?)", (str(dim),))
            return
        if int(stored) != dim:
            raise self._error(
                f"embedding size {dim} differs from the store's {stored}; use the embedding model the "
                "strategies were stored with, or set memory.path to another file"
            )

    # -- writes

    def add(self, entry: StrategyEntry) -> AddResult:
        q = as_unit_vector(entry.query_embedding, "query embedding")
        s = as_unit_vector(entry.strategy_embedding, "strategy embedding")
        if s.shape != q.shape:
            raise self._error(f"query and strategy embeddings differ in size ({q.shape[0]} vs {s.shape[0]})")
        if not entry.strategy.strip():
            raise self._error("a strategy must not be empty")
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = self._add_locked(conn, entry, q, s)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._fail(exc, "cannot add a strategy") from None
        return result

    def _add_locked(self, conn: sqlite3.Connection, entry: StrategyEntry, q: FloatArray, s: FloatArray) -> AddResult:
        self._check_dimension(conn, int(q.shape[0]), set_if_missing=True)
        same = conn.execute("SELECT id FROM strategies WHERE query_hash = ? LIMIT 1", (entry.query_hash,)).fetchone()
        if same is not None:
            return AddResult(False, int(same[0]), f"the same query already has strategy #{same[0]}")
        rows = conn.execute("SELECT id, strategy_embedding FROM strategies").fetchall()
        if rows:
            matrix = np.stack([_vec(r[1]) for r in rows])
            sims = matrix @ s
            best = int(np.argmax(sims))
            if float(sims[best]) >= self.dedup_similarity:
                dup = int(rows[best][0])
                return AddResult(False, dup, f"near-duplicate of strategy #{dup} (cosine {float(sims[best]):.3f})")
        cur = conn.execute(
            "INSERT INTO strategies (query_embedding, strategy_embedding, strategy, source_model, source_tier, "
            "agreement, query_hash, created_at, last_used_at, uses) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _blob(q),
                _blob(s),
                entry.strategy,
                entry.source_model,
                entry.source_tier,
                entry.agreement,
                entry.query_hash,
                entry.created_at,
                entry.last_used_at,
                entry.uses,
            ),
        )
        new_id = int(cur.lastrowid or 0)
        total = int(conn.execute("SELECT count(*) FROM strategies").fetchone()[0])
        evicted = 0
        if total > self.max_entries:
            order = "coalesce(last_used_at, created_at), id" if self.eviction == "lru" else "created_at, id"
            evicted = total - self.max_entries
            conn.execute(
                f"DELETE FROM strategies WHERE id IN (SELECT id FROM strategies ORDER BY {order} LIMIT ?)",
                (evicted,),
            )
        conn.execute(
            "UPDATE semcascade_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'generation'"
        )
        return AddResult(True, new_id, "added", evicted)

    # -- reads

    def _matrix(self, conn: sqlite3.Connection) -> tuple[list[int], FloatArray]:
        generation = int(self._meta(conn, "generation") or 0)
        with self._cache_lock:
            if generation != self._cached_generation:
                rows = conn.execute("SELECT id, query_embedding FROM strategies ORDER BY id").fetchall()
                self._cached_ids = [int(r[0]) for r in rows]
                self._cached_matrix = (
                    np.stack([_vec(r[1]) for r in rows]) if rows else np.zeros((0, 0), dtype=np.float32)
                )
                self._cached_generation = generation
            return self._cached_ids, self._cached_matrix

    def search(self, query_embedding: FloatArray, *, top_k: int, min_similarity: float) -> list[StrategyMatch]:
        check_search_options(top_k, min_similarity)
        q = as_unit_vector(query_embedding, "query embedding")
        conn = self._conn()
        try:
            conn.execute("BEGIN")  # one snapshot for the generation, the matrix and the rows
            try:
                self._check_dimension(conn, int(q.shape[0]), set_if_missing=False)
                ids, matrix = self._matrix(conn)
                hits = top_matches(matrix, q, top_k=top_k, min_similarity=min_similarity)
                chosen = {ids[row]: sim for row, sim in hits}
                rows = (
                    conn.execute(
                        f"SELECT {_COLUMNS} FROM strategies WHERE id IN ({','.join('?' * len(chosen))})",
                        tuple(chosen),
                    ).fetchall()
                    if chosen
                    else []
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            matches = sorted(
                (StrategyMatch(_row_to_entry(r), chosen[int(r[0])]) for r in rows),
                key=lambda m: (-m.similarity, m.entry.id or 0),
            )
            if matches:
                # recency for LRU eviction; not a content change, so the generation stays
                marks = ",".join("?" * len(matches))
                conn.execute(
                    f"UPDATE strategies SET last_used_at = ?, uses = uses + 1 WHERE id IN ({marks})",
                    (time.time(), *(m.entry.id for m in matches)),
                )
        except sqlite3.Error as exc:
            raise self._fail(exc, "cannot search") from None
        return matches

    def count(self) -> int:
        try:
            return int(self._conn().execute("SELECT count(*) FROM strategies").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._fail(exc, "cannot count") from None

    def entries(self) -> list[StrategyEntry]:
        """Every stored entry, by id."""
        try:
            rows = self._conn().execute(f"SELECT {_COLUMNS} FROM strategies ORDER BY id").fetchall()
        except sqlite3.Error as exc:
            raise self._fail(exc, "cannot read") from None
        return [_row_to_entry(r) for r in rows]


def _sqlite_store(
    path: str | None = None, dedup_similarity: float = 0.92, max_entries: int = 1000, eviction: Eviction = "lru"
) -> SQLiteStrategyStore:
    return SQLiteStrategyStore(path, dedup_similarity=dedup_similarity, max_entries=max_entries, eviction=eviction)
