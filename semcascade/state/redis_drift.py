"""The drift counters in Redis: every replica's requests of a task are one stream.

One Lua script per request (:data:`_STEP`) does what :class:`~semcascade.state.drift_counters.LocalDriftCounters`
does under its lock: count the request, move the CUSUM by the rule of
:func:`~semcascade.state.drift_counters.cusum_step`, keep the recent escalations (a list trimmed to
the rate window, with a running sum) and hand a full score window to exactly one caller. Statistics
are stored with 17 significant digits, so the recursion is the same float arithmetic as in Python.
A lost server degrades the monitor (a warning, ``drift`` in the store's health), never the request.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from semcascade.state.drift_counters import ALARM_LOG, CusumParams, DriftStep, DriftTotals

if TYPE_CHECKING:
    from semcascade.state.redis_store import RedisStateStore

__all__ = ["RedisDriftCounters"]

_STEP = """
local e = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 's_up', 's_down', 'requests', 'recent_sum')
local su, sd = tonumber(h[1] or '0'), tonumber(h[2] or '0')
local n, rs = tonumber(h[3] or '0') + 1, tonumber(h[4] or '0') + e
if e == 1 then
  su, sd = su + tonumber(ARGV[2]), sd + tonumber(ARGV[4])
else
  su, sd = su + tonumber(ARGV[3]), sd + tonumber(ARGV[5])
end
if su < 0 then su = 0 end
if sd < 0 then sd = 0 end
local moved = ''
local h_down = tonumber(ARGV[7])
if su > tonumber(ARGV[6]) then
  su, sd, moved = 0, 0, 'up'
elseif h_down >= 0 and sd > h_down then
  su, sd, moved = 0, 0, 'down'
end
redis.call('RPUSH', KEYS[2], e)
if redis.call('LLEN', KEYS[2]) > tonumber(ARGV[8]) then
  rs = rs - tonumber(redis.call('LPOP', KEYS[2]))
end
local rn = redis.call('LLEN', KEYS[2])
redis.call('HSET', KEYS[1], 's_up', string.format('%.17g', su), 's_down', string.format('%.17g', sd),
  'requests', n, 'recent_sum', rs)
redis.call('HINCRBY', KEYS[1], 'escalations', e)
local full = {}
if ARGV[10] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[10])
  if redis.call('LLEN', KEYS[3]) >= tonumber(ARGV[9]) then
    full = redis.call('LRANGE', KEYS[3], 0, -1)
    redis.call('DEL', KEYS[3])
  end
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], tonumber(ARGV[11])) end
return {n, moved, rs, rn, full}
"""

_LOSS = """
redis.call('HINCRBY', KEYS[1], 'labelled', 1)
redis.call('RPUSH', KEYS[2], ARGV[1])
local full = {}
if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[2]) then
  full = redis.call('LRANGE', KEYS[2], 0, -1)
  redis.call('DEL', KEYS[2])
end
for i = 1, 2 do redis.call('EXPIRE', KEYS[i], tonumber(ARGV[3])) end
return full
"""


def _exact(x: float) -> str:
    return repr(float(x))


class RedisDriftCounters:
    """One task's drift stream under ``semcascade:<namespace>:drift:<key>:*``."""

    shared = True

    def __init__(
        self, store: RedisStateStore, key: str, cusum: CusumParams, *, rate_window: int, window: int, ttl_s: int
    ) -> None:
        self.store = store
        self.cusum = cusum
        self.rate_window = rate_window
        self.window = window
        #: the stream's keys expire this long after its last request
        self.ttl_s = ttl_s
        base = ("drift", key)
        self.keys = [store.key(*base), store.key(*base, "recent"), store.key(*base, "scores")]
        self.loss_key = store.key(*base, "losses")
        self.alarms_key = store.key(*base, "alarms")
        self.log_key = store.key(*base, "alarm_log")
        self._step = store.client.register_script(_STEP)
        self._loss = store.client.register_script(_LOSS)

    def _degrade(self, exc: BaseException) -> None:
        self.store.health.degrade("drift", exc, self.store.url)

    def step(self, escalated: bool, score: float | None) -> DriftStep | None:
        p = self.cusum
        h_down = -1.0 if math.isinf(p.h_down) else p.h_down
        score_arg = _exact(score) if score is not None and math.isfinite(score) else ""
        args = [int(escalated), *map(_exact, (*p.up, *p.down, p.h_up, h_down)), self.rate_window, self.window,
                score_arg, self.ttl_s]  # fmt: skip
        try:
            n, moved, rs, rn, full = self._step(keys=self.keys, args=args)
        except self.store.errors as exc:
            self._degrade(exc)
            return None
        side = moved.decode() if moved else None
        scores = [float(s) for s in full] if full else None
        return DriftStep(int(n), side if side in ("up", "down") else None, int(rs), int(rn), scores)

    def add_loss(self, loss: float) -> list[float] | None:
        try:
            full = self._loss(keys=[self.keys[0], self.loss_key], args=[_exact(loss), self.window, self.ttl_s])
        except self.store.errors as exc:
            self._degrade(exc)
            return None
        return [float(x) for x in full] if full else None

    def add_alarm(self, kind: str, message: str) -> None:
        try:
            pipe = self.store.client.pipeline(transaction=True)
            pipe.hincrby(self.alarms_key, kind, 1)
            pipe.lpush(self.log_key, json.dumps(message))
            pipe.ltrim(self.log_key, 0, ALARM_LOG - 1)
            for key in (self.alarms_key, self.log_key):
                pipe.expire(key, self.ttl_s)
            pipe.execute()
        except self.store.errors as exc:
            self._degrade(exc)

    def totals(self) -> DriftTotals:
        try:
            pipe = self.store.client.pipeline(transaction=True)
            pipe.hgetall(self.keys[0])
            pipe.llen(self.keys[1])
            pipe.hgetall(self.alarms_key)
            raw, rn, alarms = pipe.execute()
        except self.store.errors as exc:
            self._degrade(exc)
            return DriftTotals()
        vals = {k.decode(): v for k, v in raw.items()}
        return DriftTotals(
            int(vals.get("requests", 0)), int(vals.get("escalations", 0)), int(vals.get("labelled", 0)),
            int(vals.get("recent_sum", 0)), int(rn), {k.decode(): int(v) for k, v in alarms.items()},
        )  # fmt: skip

    def recent_alarms(self) -> list[str]:
        try:
            raw = self.store.client.lrange(self.log_key, 0, ALARM_LOG - 1)
        except self.store.errors as exc:
            self._degrade(exc)
            return []
        return [str(json.loads(m)) for m in raw]
