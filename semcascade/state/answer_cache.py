"""The answer cache, attached through the hooks seam: a repeated request skips the cascade.

The key is the SHA-256 of the normalised messages, the config hash (tiers, models, k, temperatures,
max_tokens, thresholds: every generation setting of the config) and the task. A decided answer is
stored with the tier and agreement it came from and its cost; an early stop (budget, deadline) never
is, an abstention only with ``cache_abstentions``. A hit is a :class:`CascadeResult` with
``answer_cache_hit`` set, no trace and no cost (``cached_cost`` is what the answer cost when made).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

from semcascade.hooks import FinishContext, HookRequest, HookSession, Messages

if TYPE_CHECKING:
    from semcascade.result import CascadeResult
    from semcascade.state.base import KeyValueCache
    from semcascade.state.config import AnswerCacheConfig

__all__ = ["AnswerCacheHook", "answer_key"]


def answer_key(messages: Messages, config_hash: str, task: str | None) -> str:
    payload = {"messages": messages, "config": config_hash, "task": task}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Session:
    def __init__(self, hook: AnswerCacheHook, key: str) -> None:
        self.hook = hook
        self.key = key

    def augment(self, tier_index: int, messages: Messages, tier_name: str) -> Messages:
        return messages

    async def lookup(self) -> CascadeResult | None:
        from semcascade.result import CascadeResult

        t0 = time.perf_counter()
        raw = self.hook.cache.get(self.key)
        if raw is None:
            self.hook.misses += 1
            return None
        d: dict[str, Any] = json.loads(raw)
        self.hook.hits += 1
        return CascadeResult(
            text=d["text"], tier=d["tier"], tier_index=int(d["tier_index"]), agreement=d["agreement"],
            abstained=bool(d["abstained"]), trace=[], prompt_tokens=0, completion_tokens=0, cost=0.0,
            flops=0.0, latency_s=time.perf_counter() - t0, answer_cache_hit=True, cached_cost=float(d["cost"]),
            voted_from=d.get("voted_from"),
        )  # fmt: skip

    async def finish(self, result: CascadeResult, ctx: FinishContext) -> CascadeResult:
        if result.budget_exhausted or result.deadline_exceeded or result.answer_cache_hit:
            return result
        if result.abstained and not self.hook.config.cache_abstentions:
            return result
        d = {
            "text": result.text, "tier": result.tier, "tier_index": result.tier_index,
            "agreement": result.agreement, "abstained": result.abstained, "cost": result.cost,
            "voted_from": result.voted_from, "created_at": time.time(),
        }  # fmt: skip
        self.hook.cache.put(self.key, json.dumps(d).encode("utf-8"), self.hook.config.ttl_s)
        self.hook.stored += 1
        return result


class AnswerCacheHook:
    """Answers repeated requests from ``cache`` (a :class:`~semcascade.state.base.KeyValueCache`)."""

    def __init__(self, cache: KeyValueCache, config: AnswerCacheConfig, config_hash: str) -> None:
        self.cache = cache
        self.config = config
        self.config_hash = config_hash
        self.hits = 0
        self.misses = 0
        self.stored = 0

    async def start(self, request: HookRequest) -> HookSession | None:
        return _Session(self, answer_key(request.messages, self.config_hash, request.task))

    async def aclose(self) -> None:
        """Nothing runs in the background."""
