"""An on-disk cache of model responses, shared safely between processes.

Evaluation sweeps, reruns and interrupted runs resumed later should never pay
for the same model call twice. :class:`ResponseCache` is a small SQLite file
(WAL journal, ``busy_timeout``) holding every sampled choice; and
:class:`CachingProvider` wraps any :class:`~semcascade.providers.Provider` so
that calls are answered from it when possible.

Keys and sample indices
-----------------------
A request is keyed by the SHA-256 of a canonical JSON of everything that
shapes the *distribution* of its answers: ``model``, ``messages``,
``temperature``, ``max_tokens``, ``seed``, ``stop``, ``logprobs``,
``top_logprobs`` and ``extra``. Not part of the key: ``n``, ``api_key``,
``api_base`` (the same model behind another endpoint is the same model),
``timeout`` and ``tier``. Transport settings inside ``extra`` (``api_key``,
``api_base``, ``base_url``, ``headers``, ``extra_headers``, ``timeout``,
``num_retries``, ``max_retries``, ``n``) are left out too. No API key is
ever written to the file, hashed or otherwise.

Row ``(key, i)`` is "the i-th sample ever drawn for that key". A request with
``n=5`` uses samples 0..4; a later request with ``n=8`` reuses them and asks
the inner provider for the 3 missing ones only (``n=3``), stored as 5..7.
Temperature does not change this: at temperature 0 the ``n`` samples are
still ``n`` separate rows (usually identical texts), nothing is collapsed.

Concurrency and durability
--------------------------
* Each thread gets its own SQLite connection; :class:`CachingProvider` does all
  I/O in worker threads (``asyncio.to_thread``), so the event loop never
  blocks on the disk.
* New samples of one call are written in one ``BEGIN IMMEDIATE`` transaction
  with ``INSERT OR IGNORE``: two processes racing on a key never duplicate a
  row or fail; the first commit wins and both then return the stored rows, so
  sample ``i`` of a key is the same text for every reader.
* Within one :class:`CachingProvider`, concurrent calls for the same key are
  serialised, so the second one is served from what the first one paid for.
  Across processes a racing miss may be paid twice (only one copy is kept).
* A committed call survives ``kill -9`` of the writer (WAL,
  ``synchronous=NORMAL``). A power loss may drop the last few commits but
  never corrupts the file; pass ``synchronous="FULL"`` for power-loss
  durability at the price of an fsync per call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import os
import sqlite3
import time
import warnings
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from semcascade._sqlite import ThreadConnections, error_message, initialise_schema
from semcascade.errors import CacheError
from semcascade.providers.base import Choice, Completion, CompletionRequest, Provider, TokenLogprob

__all__ = [
    "CacheError",
    "CacheStats",
    "CachedCompletion",
    "CachedSample",
    "CachingProvider",
    "ResponseCache",
    "request_key",
]

#: identifies a semcascade response cache in its ``semcascade_meta`` table
CACHE_FORMAT = "semcascade.response_cache"
#: bump when the table layout changes (old files then raise :class:`CacheError`)
SCHEMA_VERSION = 1
#: bump when the request-key recipe changes (old rows then simply miss)
KEY_VERSION = 1

_EXTRA_NOT_KEYED = frozenset(
    {
        "api_key",
        "api_base",
        "base_url",
        "headers",
        "extra_headers",
        "timeout",
        "num_retries",
        "max_retries",
        "n",
    }
)

_SCHEMA = """
CREATE TABLE semcascade_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE choices (
    request_key       TEXT    NOT NULL,
    sample_index      INTEGER NOT NULL CHECK (sample_index >= 0),
    text              TEXT    NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason     TEXT,
    logprobs          TEXT,
    tokens_estimated  INTEGER NOT NULL,
    model             TEXT    NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    latency_s         REAL    NOT NULL,
    call_n            INTEGER NOT NULL,
    created_at        REAL    NOT NULL,
    PRIMARY KEY (request_key, sample_index)
) WITHOUT ROWID;
"""

_COLUMNS = (
    "sample_index, text, completion_tokens, finish_reason, logprobs, tokens_estimated, "
    "model, prompt_tokens, latency_s, call_n, created_at"
)


# --------------------------------------------------------------------------- keys


def _canonical(value: Any, where: str) -> Any:
    """``value`` as plain JSON types (mappings -> dicts, sequences -> lists)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CacheError(f"cannot key a request: {where} is {value!r} (not finite)")
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CacheError(f"cannot key a request: {where} has a non-string key {k!r}")
            out[k] = _canonical(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise CacheError(
        f"cannot key a request: {where} is a {type(value).__name__}, not JSON data; "
        "pass plain str/int/float/bool/None/list/dict values"
    )


def request_key(request: CompletionRequest) -> str:
    """The cache key (64 hex chars) of ``request``; independent of n, api_key, api_base, timeout and tier."""
    extra = {k: v for k, v in request.extra.items() if k not in _EXTRA_NOT_KEYED}
    payload = {
        "v": KEY_VERSION,
        "model": request.model,
        "messages": _canonical(list(request.messages), "messages"),
        "temperature": float(request.temperature),
        "max_tokens": int(request.max_tokens),
        "seed": request.seed,
        # what the provider is actually sent: an empty stop list is no stop list,
        # top_logprobs only counts when logprobs are requested
        "stop": list(request.stop) if request.stop else None,
        "logprobs": bool(request.logprobs),
        "top_logprobs": (request.top_logprobs or None) if request.logprobs else None,
        "extra": _canonical(extra, "extra"),
    }
    if request.sample_offset:  # k single-sample calls of one tier are k different samples
        payload["sample_offset"] = int(request.sample_offset)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class CachedSample:
    """One stored choice and the call that produced it."""

    index: int
    choice: Choice
    #: model name the provider reported for the producing call
    model: str
    #: prompt tokens of the producing call (the prompt is paid once per call)
    prompt_tokens: int
    #: wall time of the producing call, seconds
    latency_s: float
    #: how many samples the producing call asked for
    call_n: int
    #: unix time the row was written
    created_at: float


def _dump_logprobs(lps: tuple[TokenLogprob, ...] | None) -> str | None:
    if lps is None:
        return None
    # allow_nan: a provider may report -inf for an impossible token
    return json.dumps([[t.token, t.logprob, dict(t.top)] for t in lps], separators=(",", ":"), ensure_ascii=False)


def _load_logprobs(raw: str | None) -> tuple[TokenLogprob, ...] | None:
    if raw is None:
        return None
    return tuple(
        TokenLogprob(token=str(tok), logprob=float(lp), top={str(k): float(v) for k, v in top.items()})
        for tok, lp, top in json.loads(raw)
    )


def _row_to_sample(row: tuple[Any, ...]) -> CachedSample:
    index, text, ctoks, finish, lps, estimated, model, ptoks, latency, call_n, created = row
    return CachedSample(
        index=int(index),
        choice=Choice(
            text=str(text),
            completion_tokens=int(ctoks),
            finish_reason=None if finish is None else str(finish),
            logprobs=_load_logprobs(lps),
            tokens_estimated=bool(estimated),
        ),
        model=str(model),
        prompt_tokens=int(ptoks),
        latency_s=float(latency),
        call_n=int(call_n),
        created_at=float(created),
    )


# --------------------------------------------------------------------------- cache


class ResponseCache:
    """A SQLite file of sampled choices keyed by ``(request key, sample index)``.

    Opening validates the file: a missing or empty file becomes a new cache;
    anything else that is not a semcascade response cache of this schema
    version raises :class:`CacheError` naming the file. Thread-safe (one
    connection per thread) and process-safe (SQLite locking, WAL). Use as a
    context manager or call :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout_s: float = 30.0,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise CacheError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}", path=path)
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.synchronous = synchronous
        self._conns = ThreadConnections(
            self.path,
            busy_timeout_s=busy_timeout_s,
            synchronous=synchronous,
            on_error=self._fail,
            on_closed=lambda: CacheError("the cache is closed; open a new ResponseCache", path=self.path),
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"cannot create its directory ({exc}); check the path and permissions", path=path
            ) from None
        self.journal_mode = self._initialise()

    # -- connections

    def _fail(self, exc: BaseException, doing: str) -> CacheError:
        return CacheError(
            error_message(
                exc, doing, self.busy_timeout_s, when_locked="retry, or raise busy_timeout_s",
                when_foreign="the file is not a usable semcascade response cache (corrupt or foreign) - "
                "delete it (and its -wal/-shm files) to start a new cache",
            ),
            path=self.path,
        )  # fmt: skip

    def _conn(self) -> sqlite3.Connection:
        return self._conns.get()

    def _initialise(self) -> str:
        meta = [("format", CACHE_FORMAT), ("schema_version", str(SCHEMA_VERSION)), ("created_at", f"{time.time():.3f}")]
        try:
            mode, problem = initialise_schema(self._conn(), _SCHEMA, meta, self._check_meta)
        except CacheError:
            self.close()
            raise
        except sqlite3.Error as exc:
            self.close()
            raise self._fail(exc, "cannot open") from None
        if problem is not None:
            self.close()
            raise CacheError(problem, path=self.path)
        if mode != "wal":
            warnings.warn(
                f"response cache {str(self.path)!r}: SQLite refused WAL mode (journal_mode={mode}); "
                "concurrent readers will wait for writers",
                RuntimeWarning,
                stacklevel=3,
            )
        return mode

    @staticmethod
    def _check_meta(conn: sqlite3.Connection, tables: set[str]) -> str | None:
        fix = "delete the file (and its -wal/-shm files) or point the cache at another path"
        if "semcascade_meta" not in tables:
            return f"this SQLite file is not a semcascade response cache (tables: {sorted(tables)}); {fix}"
        meta = dict(conn.execute("SELECT key, value FROM semcascade_meta").fetchall())
        if meta.get("format") != CACHE_FORMAT:
            return f"this SQLite file is not a semcascade response cache (format={meta.get('format')!r}); {fix}"
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            return (
                f"schema version {meta.get('schema_version')!r} is not the supported version "
                f"{SCHEMA_VERSION}; {fix} (its cached responses cannot be reused)"
            )
        if "choices" not in tables:
            return f"the 'choices' table is missing (damaged cache); {fix}"
        return None

    def close(self) -> None:
        """Close every connection (from any thread). Idempotent."""
        self._conns.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

    # -- reads

    def get(self, key: str, n: int) -> list[CachedSample]:
        """The stored samples of ``key`` among indices ``0..n-1``, by index (possibly with gaps)."""
        conn = self._conn()
        try:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM choices WHERE request_key = ? AND sample_index < ? ORDER BY sample_index",
                (key, n),
            ).fetchall()
            return [_row_to_sample(r) for r in rows]
        except sqlite3.Error as exc:
            raise self._fail(exc, "cannot read") from None

    def count(self, key: str | None = None) -> int:
        """Number of stored samples (of ``key``, or in total)."""
        conn = self._conn()
        try:
            if key is None:
                row = conn.execute("SELECT count(*) FROM choices").fetchone()
            else:
                row = conn.execute("SELECT count(*) FROM choices WHERE request_key = ?", (key,)).fetchone()
            return int(row[0])
        except sqlite3.Error as exc:
            raise self._fail(exc, "cannot read") from None

    def keys(self) -> dict[str, int]:
        """Every stored request key -> its number of samples."""
        conn = self._conn()
        try:
            rows = conn.execute("SELECT request_key, count(*) FROM choices GROUP BY request_key").fetchall()
            return {str(k): int(c) for k, c in rows}
        except sqlite3.Error as exc:
            raise self._fail(exc, "cannot read") from None

    def recorded_latency(self, key: str, n: int = 1) -> float | None:
        """Latency of the original call(s) that produced samples ``0..n-1`` of ``key``.

        The slowest of the producing calls (a request whose samples came from
        several calls would have taken about that long as one call), or None
        unless all ``n`` samples are stored.
        """
        samples = self.get(key, n)
        if len(samples) < n or n < 1:
            return None
        return max(s.latency_s for s in samples)

    # -- writes

    def put(
        self,
        key: str,
        indices: Sequence[int],
        completion: Completion,
        latency_s: float,
        *,
        read_n: int | None = None,
    ) -> list[CachedSample]:
        """Store ``completion.choices[j]`` as sample ``indices[j]`` in one transaction.

        Rows that already exist are kept (``INSERT OR IGNORE``: a concurrent
        writer won). Extra choices beyond ``len(indices)`` are dropped. Returns
        the stored samples among ``0..read_n-1`` (default: up to the largest
        index written), read in the same transaction.
        """
        choices = completion.choices[: len(indices)]
        call_n = len(indices)
        now = time.time()
        rows = [
            (
                key,
                int(idx),
                c.text,
                int(c.completion_tokens),
                c.finish_reason,
                _dump_logprobs(c.logprobs),
                int(bool(c.tokens_estimated)),
                completion.model,
                int(completion.prompt_tokens),
                float(latency_s),
                call_n,
                now,
            )
            for idx, c in zip(indices, choices, strict=False)
        ]
        upto = read_n if read_n is not None else (max(indices) + 1 if len(indices) else 0)
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR IGNORE INTO choices (request_key, sample_index, text, completion_tokens, "
                    "finish_reason, logprobs, tokens_estimated, model, prompt_tokens, latency_s, call_n, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                stored = conn.execute(
                    f"SELECT {_COLUMNS} FROM choices WHERE request_key = ? AND sample_index < ? ORDER BY sample_index",
                    (key, upto),
                ).fetchall()
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._fail(exc, "cannot write") from None
        return [_row_to_sample(r) for r in stored]


# --------------------------------------------------------------------------- provider


@dataclass(slots=True)
class CacheStats:
    """Counters of one :class:`CachingProvider` (requests, not samples, unless named so)."""

    #: requests served entirely from the cache (no provider call)
    hits: int = 0
    #: requests that needed a provider call (includes partial hits)
    misses: int = 0
    #: misses where some of the n samples were already cached (a top-up)
    partial_hits: int = 0
    #: provider calls that returned a completion
    paid_calls: int = 0
    #: provider calls that raised (nothing was cached for them)
    failed_calls: int = 0
    #: samples returned from the cache / drawn from the provider
    cached_samples: int = 0
    paid_samples: int = 0
    #: paid completions that could not be written (returned anyway; see warnings)
    write_errors: int = 0


@dataclass(frozen=True, slots=True)
class CachedCompletion:
    """A completion and how it was obtained."""

    completion: Completion
    #: True when no provider call was made
    cached: bool
    #: how many of the choices came from the cache / from the provider call
    cached_samples: int
    paid_samples: int
    #: the original call's latency when cached (see ResponseCache.recorded_latency), else this call's
    latency_s: float
    key: str


class _KeyLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock_, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock_, users - 1)


class CachingProvider:
    """A :class:`~semcascade.providers.Provider` answering from ``cache`` before asking ``inner``.

    A request whose ``n`` samples are all stored is served without a provider
    call, with the original call's ``prompt_tokens`` and model name. Otherwise
    ``inner`` is asked for the missing samples only (``n`` = how many are
    missing); the returned completion then carries that call's
    ``prompt_tokens`` (what was just paid). Errors from ``inner`` propagate
    unchanged and nothing is written. If a paid completion cannot be written
    (e.g. the file stayed locked past the busy timeout) it is still returned,
    with a ``RuntimeWarning`` and ``stats.write_errors`` incremented.

    :meth:`complete_with_info` tells per call whether it was cached and its
    (recorded) latency; ``last_cached``/``last_latency_s`` hold the same for
    the most recent call and are only meaningful without concurrent calls.
    """

    def __init__(self, inner: Provider, cache: ResponseCache) -> None:
        self.inner = inner
        self.cache = cache
        self.stats = CacheStats()
        self.last_cached: bool | None = None
        self.last_latency_s: float | None = None
        self._locks = _KeyLocks()

    def __repr__(self) -> str:
        return f"CachingProvider({self.inner!r}, {self.cache!r})"

    async def complete(self, request: CompletionRequest) -> Completion:
        return (await self.complete_with_info(request)).completion

    async def recorded_latency(self, request: CompletionRequest) -> float | None:
        """The original latency of ``request`` if all its ``n`` samples are cached, else None."""
        return await asyncio.to_thread(self.cache.recorded_latency, request_key(request), request.n)

    async def complete_with_info(self, request: CompletionRequest) -> CachedCompletion:
        if request.n < 1:  # nothing to cache; let the provider decide what n<1 means
            completion = await self.inner.complete(request)
            return CachedCompletion(completion, False, 0, len(completion.choices), 0.0, "")
        key = request_key(request)
        async with self._locks.hold(key):
            info = await self._complete_locked(request, key)
        self.last_cached = info.cached
        self.last_latency_s = info.latency_s
        return info

    async def _complete_locked(self, request: CompletionRequest, key: str) -> CachedCompletion:
        n = request.n
        have = await asyncio.to_thread(self.cache.get, key, n)
        if len(have) == n:
            self.stats.hits += 1
            self.stats.cached_samples += n
            first = have[0]
            completion = Completion(
                model=first.model, choices=tuple(s.choice for s in have), prompt_tokens=first.prompt_tokens
            )
            latency = max(s.latency_s for s in have)
            return CachedCompletion(completion, True, n, 0, latency, key)

        present = {s.index for s in have}
        missing = [i for i in range(n) if i not in present]
        self.stats.misses += 1
        if have:
            self.stats.partial_hits += 1
        sub = dataclasses.replace(request, n=len(missing))
        t0 = time.perf_counter()
        try:
            fresh = await self.inner.complete(sub)
        except BaseException:
            self.stats.failed_calls += 1
            raise
        latency = time.perf_counter() - t0
        self.stats.paid_calls += 1
        paid = min(len(fresh.choices), len(missing))
        self.stats.paid_samples += paid
        try:
            stored = await asyncio.to_thread(self.cache.put, key, missing, fresh, latency, read_n=n)
        except CacheError as exc:
            self.stats.write_errors += 1
            warnings.warn(f"{exc} - returning the paid completion uncached", RuntimeWarning, stacklevel=3)
            by_index = {s.index: s.choice for s in have}
            by_index.update(zip(missing, fresh.choices[:paid], strict=False))
            stored_choices = tuple(by_index[i] for i in sorted(by_index))
        else:
            stored_choices = tuple(s.choice for s in stored)
        self.stats.cached_samples += len(have)
        completion = Completion(model=fresh.model, choices=stored_choices, prompt_tokens=fresh.prompt_tokens)
        return CachedCompletion(completion, False, len(have), paid, latency, key)
