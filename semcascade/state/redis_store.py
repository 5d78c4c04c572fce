"""The ``redis`` state backend: budgets, limits, caches, strategy memory and drift counters shared through Redis.

What must be atomic runs as one Lua script on the server: a budget reservation (reclaim expired
reservations, check the caps, reserve), its settlement, a concurrency slot, a rate-limit token.
Every key starts with ``semcascade:<namespace>:`` (the namespace defaults to the config hash).
Money is kept in integer pico-units (rounded up) so no float drift can let a reservation through.
(Decrements are written ``0 - x``, never ``-x``: Lua's ``-0`` reaches ``HINCRBY`` as ``"-0"``, which
Redis refuses as not an integer, so a free call's reservation would never settle.)

redis-py's synchronous client is used: its connection pool is thread-safe and fork-safe, and it
works from every event loop (the sync API runs each call in a fresh loop), each call one loopback
round trip. Unreachable at start -> :class:`~semcascade.errors.StateUnavailableError` naming the URL;
lost mid-run -> see :mod:`semcascade.state.base` (budgets and limits fail closed, caches degrade).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
import uuid
import warnings
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from semcascade._budget import BudgetLedger, Estimate
from semcascade._limits import TierLimiter
from semcascade.errors import StateStoreError, StateUnavailableError
from semcascade.state.base import KeyValueCache, StateHealth

if TYPE_CHECKING:
    from semcascade.memory.config import MemoryConfig
    from semcascade.memory.store import StrategyStore
    from semcascade.providers.base import Completion
    from semcascade.response_cache import CachedSample, ResponseCache
    from semcascade.state.drift_counters import CusumParams, DriftCounters

__all__ = ["RedisLedger", "RedisLimiter", "RedisStateStore", "redacted_url"]

#: money is stored in units of 1e-12 (so costs add as integers)
MONEY_UNIT = 1e-12
#: a concurrency slot's longest lease (``state.lease_s`` when shorter); its holder renews it every third of
#: the lease, a dead holder's slot frees after it
SLOT_LEASE_S = 30.0
#: ledgers and limiter keys expire this long after their last use
KEY_TTL_S = 7 * 86400

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(dead) do
  local v = redis.call('HGET', KEYS[3], id)
  if v then
    local c, k = string.match(v, '(%S+) (%S+)')
    redis.call('HINCRBY', KEYS[1], 'reserved_cost', 0 - tonumber(c))
    redis.call('HINCRBY', KEYS[1], 'reserved_tokens', 0 - tonumber(k))
    redis.call('HINCRBY', KEYS[1], 'spent_cost', tonumber(c))
    redis.call('HINCRBY', KEYS[1], 'spent_tokens', tonumber(k))
    redis.call('HINCRBY', KEYS[1], 'reclaimed', 1)
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREM', KEYS[2], id)
end
local h = redis.call('HMGET', KEYS[1], 'spent_cost', 'spent_tokens', 'reserved_cost', 'reserved_tokens')
local sc, st, rc, rt = tonumber(h[1] or 0), tonumber(h[2] or 0), tonumber(h[3] or 0), tonumber(h[4] or 0)
local cost, tokens, max_cost, max_tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if max_cost >= 0 and cost > max_cost - sc - rc then return {0, 'cost', max_cost - sc - rc} end
if max_tokens >= 0 and tokens > max_tokens - st - rt then return {0, 'tokens', max_tokens - st - rt} end
redis.call('HINCRBY', KEYS[1], 'reserved_cost', cost)
redis.call('HINCRBY', KEYS[1], 'reserved_tokens', tokens)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[6])
redis.call('HSET', KEYS[3], ARGV[6], ARGV[1] .. ' ' .. ARGV[2])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], tonumber(ARGV[7])) end
return {1, 'ok', 0}
"""

_SETTLE = """
local v = redis.call('HGET', KEYS[3], ARGV[1])
if not v then
  return 0
end
local c, k = string.match(v, '(%S+) (%S+)')
redis.call('HINCRBY', KEYS[1], 'reserved_cost', 0 - tonumber(c))
redis.call('HINCRBY', KEYS[1], 'reserved_tokens', 0 - tonumber(k))
redis.call('HINCRBY', KEYS[1], 'spent_cost', tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[1], 'spent_tokens', tonumber(ARGV[3]))
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  return 1
end
return 0
"""

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
return redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
"""

# GCRA: one start every `interval` seconds, bursts of up to `burst`; returns the wait in microseconds
_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1e6 + tonumber(t[2])
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - burst * interval
if now < allow_at then return allow_at - now end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil((tat + interval - now) / 1000) + 1000)
return 0
"""


def redacted_url(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _units(cost: float) -> int:
    return math.ceil(cost / MONEY_UNIT - 1e-6) if cost > 0 else 0


class RedisStateStore:
    """Budgets, limits, caches and strategy memory in one Redis (``url``, e.g. ``redis://127.0.0.1:6379/0``).

    ``cache_ttl_s``: how long response-cache entries live (the answer cache has its own ``ttl_s``);
    ``timeout_s``: the socket timeout of every operation (a lost server is noticed within it).
    """

    name = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "default",
        lease_s: float = 600.0,
        cache_ttl_s: float = 30 * 86400,
        timeout_s: float = 2.0,
    ) -> None:
        try:
            import redis
        except ImportError:
            raise StateStoreError(
                "state backend 'redis' needs the redis client: pip install 'semcascade[redis]'"
            ) from None
        self._redis = redis
        self.url = redacted_url(url)
        self.namespace = namespace
        self.prefix = f"semcascade:{namespace}:"
        self.lease_s = lease_s
        self.cache_ttl_s = cache_ttl_s
        self.health = StateHealth()
        try:
            #: typed Any: redis-py's stubs type replies as bytes | str | Awaitable, this client returns bytes
            self.client: Any = redis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
            )
        except ValueError as exc:
            raise StateStoreError(f"state.options.url {self.url!r} is not a Redis URL: {exc}") from None
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise StateUnavailableError(
                f"cannot reach Redis ({exc}); start redis-server or fix state.options.url", url=self.url
            ) from None
        self._reserve = self.client.register_script(_RESERVE)
        self._settle = self.client.register_script(_SETTLE)
        self._slot = self.client.register_script(_SLOT)
        self._renew = self.client.register_script(_RENEW)
        self._rate = self.client.register_script(_RATE)
        self._strategy_stores: list[StrategyStore] = []

    def __repr__(self) -> str:
        return f"RedisStateStore({self.url!r}, namespace={self.namespace!r})"

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The exceptions that mean the backend failed."""
        return (self._redis.RedisError,)

    def unavailable(self, exc: BaseException, doing: str, kind: str) -> StateUnavailableError:
        self.health.fail_closed(kind)
        return StateUnavailableError(f"lost Redis while {doing} ({exc}); refusing to go on unmetered", url=self.url)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def ledger(self, name: str, max_cost: float | None, max_tokens: int | None, *, scope: str) -> BudgetLedger:
        return RedisLedger(self, name, max_cost, max_tokens, scope=scope)

    def limiter(self, tier: str, max_concurrency: int, requests_per_second: float | None) -> TierLimiter:
        return RedisLimiter(self, tier, max_concurrency, requests_per_second)

    def kv(self, kind: str) -> KeyValueCache:
        return RedisKV(self, kind)

    def response_cache(self) -> ResponseCache:
        return RedisResponseCache(self)  # type: ignore[return-value]  # the surface CachingProvider reads

    def strategy_store(self, memory: MemoryConfig) -> StrategyStore:
        from semcascade.state.redis_strategies import RedisStrategyStore

        opts = memory.store_options()
        store = RedisStrategyStore(
            self, dedup_similarity=opts["dedup_similarity"], max_entries=opts["max_entries"], eviction=opts["eviction"]
        )
        return store

    def drift_counters(self, key: str, cusum: CusumParams, *, rate_window: int, window: int) -> DriftCounters:
        from semcascade.state.redis_drift import RedisDriftCounters

        return RedisDriftCounters(self, key, cusum, rate_window=rate_window, window=window, ttl_s=KEY_TTL_S)

    def close(self) -> None:
        with suppress(Exception):
            self.client.close()


class RedisLedger(BudgetLedger):
    """A budget ledger in Redis, shared by every process of the namespace.

    Reservations carry a lease (``state.lease_s``): one its process never settles (it was killed) is
    charged in full by the next reservation after the lease, so a dead process can neither leak the
    budget nor let it be over-spent. ``spent_cost``/``spent_tokens`` are this process's settled spend;
    :meth:`totals` is the shared ledger.
    """

    def __init__(
        self, store: RedisStateStore, name: str, max_cost: float | None, max_tokens: int | None, *, scope: str
    ) -> None:
        super().__init__(max_cost, max_tokens, scope=scope)
        self.store = store
        self.keys = [store.key("ledger", name), store.key("ledger", name, "leases"), store.key("ledger", name, "res")]
        #: open reservations by amount (equal amounts are interchangeable at settlement)
        self._open: dict[tuple[int, int], list[str]] = defaultdict(list)

    def totals(self) -> dict[str, float]:
        """The shared ledger: spent and reserved money and tokens, reservations reclaimed from dead processes."""
        try:
            raw = self.store.client.hgetall(self.keys[0])
        except self.store.errors as exc:
            raise self.store.unavailable(exc, "reading the budget ledger", "budget") from None
        vals = {k.decode(): int(v) for k, v in raw.items()}
        return {
            "spent_cost": vals.get("spent_cost", 0) * MONEY_UNIT,
            "spent_tokens": vals.get("spent_tokens", 0),
            "reserved_cost": vals.get("reserved_cost", 0) * MONEY_UNIT,
            "reserved_tokens": vals.get("reserved_tokens", 0),
            "reclaimed": vals.get("reclaimed", 0),
        }

    def remaining(self) -> Estimate:
        t = self.totals()
        cost = math.inf if self.max_cost is None else self.max_cost - t["spent_cost"] - t["reserved_cost"]
        tokens = 2**62 if self.max_tokens is None else self.max_tokens - int(t["spent_tokens"] + t["reserved_tokens"])
        return Estimate(cost=cost, tokens=tokens)

    def try_reserve(self, bound: Estimate) -> str | None:
        cost, tokens = _units(bound.cost), int(bound.tokens)
        rid = uuid.uuid4().hex
        max_cost = -1 if self.max_cost is None else math.floor(self.max_cost / MONEY_UNIT + 1e-6)
        max_tokens = -1 if self.max_tokens is None else int(self.max_tokens)
        try:
            ok, what, left = self.store._reserve(
                keys=self.keys, args=[cost, tokens, max_cost, max_tokens, self.store.lease_s, rid, KEY_TTL_S]
            )
        except self.store.errors as exc:
            raise self.store.unavailable(exc, "reserving budget", "budget") from None
        if not ok:
            if what == b"cost":
                return (
                    f"it could cost up to {bound.cost:.6g} but only {max(0.0, int(left) * MONEY_UNIT):.6g} of "
                    f"max_cost_per_{self.scope} ({self.max_cost:g}) is left (shared ledger)"
                )
            return (
                f"it could use up to {bound.tokens} tokens but only {max(0, int(left))} of "
                f"max_tokens_per_{self.scope} ({self.max_tokens}) are left (shared ledger)"
            )
        with self._lock:
            self._open[(cost, tokens)].append(rid)
        return None

    def settle(self, reserved: Estimate, actual: Estimate) -> None:
        key = (_units(reserved.cost), int(reserved.tokens))
        with self._lock:
            ids = self._open.get(key)
            rid = ids.pop() if ids else None
            if ids is not None and not ids:
                del self._open[key]
            self.spent_cost += actual.cost
            self.spent_tokens += actual.tokens
        if rid is None:
            return
        try:
            self.store._settle(keys=self.keys, args=[rid, _units(actual.cost), int(actual.tokens)])
        except self.store.errors as exc:
            # fail safe: the reservation stays and is charged in full once its lease expires
            self.store.health.fail_closed("budget_settle")
            warnings.warn(
                f"state store {self.store.url}: could not settle a budget reservation ({exc}); it stays "
                "reserved and is charged in full when its lease expires",
                RuntimeWarning,
                stacklevel=2,
            )


class RedisLimiter(TierLimiter):
    """A tier's concurrency and rate limit across every process of the namespace.

    A call holds a slot in a Redis sorted set (at most ``max_concurrency`` members, each with a lease
    it renews while the call runs); starts are spaced by a GCRA rate limit kept in Redis. Waiting
    polls with jittered back-off. The process-local semaphore still caps this process's share.
    """

    def __init__(self, store: RedisStateStore, tier: str, max_concurrency: int, rps: float | None) -> None:
        super().__init__(max_concurrency, None)
        self.requests_per_second = rps
        self.store = store
        self.slots_key = store.key("limit", tier, "slots")
        #: a dead process's slot frees within state.lease_s (as documented), at most SLOT_LEASE_S
        self.slot_lease_s = min(SLOT_LEASE_S, store.lease_s)
        self.rate_key = store.key("limit", tier, "rate")

    async def _take_slot(self, token: str) -> None:
        wait = 0.002
        while True:
            try:
                # inline, not in a thread: one loopback round trip, and no executor queue under load
                got = self.store._slot(
                    keys=[self.slots_key], args=[self.max_concurrency, self.slot_lease_s, token, KEY_TTL_S]
                )
            except self.store.errors as exc:
                raise self.store.unavailable(exc, "taking a concurrency slot", "limit") from None
            if got:
                return
            await asyncio.sleep(wait * (0.5 + random.random()))
            wait = min(wait * 1.5, 0.05)

    async def _take_rate_token(self) -> None:
        assert self.requests_per_second is not None
        interval_us = 1e6 / self.requests_per_second
        burst = max(0, math.floor(self.requests_per_second) - 1)
        while True:
            try:
                wait_us = self.store._rate(keys=[self.rate_key], args=[interval_us, burst])
            except self.store.errors as exc:
                raise self.store.unavailable(exc, "taking a rate-limit token", "limit") from None
            if not wait_us:
                return
            await asyncio.sleep(float(wait_us) / 1e6)

    async def _renew(self, token: str) -> None:
        while True:
            await asyncio.sleep(self.slot_lease_s / 3)
            with suppress(Exception):
                self.store._renew(keys=[self.slots_key], args=[self.slot_lease_s, token])

    def _release(self, token: str) -> None:
        try:
            self.store.client.zrem(self.slots_key, token)
        except self.store.errors as exc:
            warnings.warn(
                f"state store {self.store.url}: could not free a concurrency slot ({exc}); it frees itself "
                f"within {self.slot_lease_s:g}s",
                RuntimeWarning,
                stacklevel=2,
            )

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._semaphore.get():
            token = uuid.uuid4().hex
            await self._take_slot(token)
            renew = asyncio.ensure_future(self._renew(token))
            try:
                if self.requests_per_second is not None:
                    await self._take_rate_token()
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                try:
                    yield
                finally:
                    self.in_flight -= 1
            finally:
                renew.cancel()
                self._release(token)


class RedisKV:
    """Bytes by key in Redis with a TTL; a lost server is a miss / a skipped write (counted, warned)."""

    def __init__(self, store: RedisStateStore, kind: str) -> None:
        self.store = store
        self.kind = kind

    def get(self, key: str) -> bytes | None:
        try:
            value = self.store.client.get(self.store.key(self.kind, key))
        except self.store.errors as exc:
            self.store.health.degrade(self.kind, exc, self.store.url)
            return None
        return None if value is None else bytes(value)

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            self.store.client.set(self.store.key(self.kind, key), value, px=max(1, int(ttl_s * 1000)))
        except self.store.errors as exc:
            self.store.health.degrade(self.kind, exc, self.store.url)


class RedisResponseCache:
    """The response cache's surface in Redis: a hash per request key, one field per sample index.

    Existing samples are kept (``HSETNX``: a concurrent writer won). A lost server is a miss, and a
    paid completion that cannot be stored is returned uncached (counted, warned).
    """

    def __init__(self, store: RedisStateStore) -> None:
        self.store = store
        self.path = store.url

    def _key(self, key: str) -> str:
        return self.store.key("responses", key)

    @staticmethod
    def _decode(index: int, raw: bytes) -> CachedSample:
        from semcascade.response_cache import _row_to_sample

        return _row_to_sample((index, *json.loads(raw)))

    def get(self, key: str, n: int) -> list[CachedSample]:
        try:
            raw = self.store.client.hgetall(self._key(key))
        except self.store.errors as exc:
            self.store.health.degrade("responses", exc, self.store.url)
            return []
        return sorted((self._decode(int(i), v) for i, v in raw.items() if int(i) < n), key=lambda s: s.index)

    def count(self, key: str | None = None) -> int:
        if key is not None:
            return int(self.store.client.hlen(self._key(key)))
        return sum(self.keys().values())

    def keys(self) -> dict[str, int]:
        out = {}
        prefix = self._key("")
        for k in self.store.client.scan_iter(match=prefix + "*"):
            out[k.decode().removeprefix(prefix)] = int(self.store.client.hlen(k))
        return out

    def recorded_latency(self, key: str, n: int = 1) -> float | None:
        samples = self.get(key, n)
        return max(s.latency_s for s in samples) if n >= 1 and len(samples) >= n else None

    def put(
        self, key: str, indices: Sequence[int], completion: Completion, latency_s: float, *, read_n: int | None = None
    ) -> list[CachedSample]:
        from semcascade.response_cache import _dump_logprobs

        now = time.time()
        rkey = self._key(key)
        choices = completion.choices[: len(indices)]
        rows: dict[int, bytes] = {}
        for idx, c in zip(indices, choices, strict=False):
            row: list[Any] = [
                c.text, int(c.completion_tokens), c.finish_reason, _dump_logprobs(c.logprobs),
                int(bool(c.tokens_estimated)), completion.model, int(completion.prompt_tokens), float(latency_s),
                len(indices), now,
            ]  # fmt: skip
            rows[int(idx)] = json.dumps(row, allow_nan=True).encode()
        upto = read_n if read_n is not None else (max(indices) + 1 if len(indices) else 0)
        try:
            pipe = self.store.client.pipeline(transaction=True)
            for idx, payload in rows.items():
                pipe.hsetnx(rkey, str(idx), payload)
            pipe.expire(rkey, int(self.store.cache_ttl_s))
            pipe.hgetall(rkey)
            stored = pipe.execute()[-1]
        except self.store.errors as exc:
            from semcascade.errors import CacheError

            self.store.health.degrade("responses", exc, self.store.url)
            raise CacheError(f"cannot write ({exc})", path=self.store.url) from None
        return sorted((self._decode(int(i), v) for i, v in stored.items() if int(i) < upto), key=lambda s: s.index)

    def close(self) -> None:
        """The store owns the connection."""
