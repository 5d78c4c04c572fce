"""The strategy memory's hooks into the cascade (Inter-Cascade).

The cascade calls three things, and nothing else of this module::

    session = await memory.session(question)          # once per request
    messages = session.augment(tier_index, messages)  # before sampling each tier
    result = await session.learn(result, tier, provider, is_last=...)  # on the final result

``augment`` adds retrieved strategies to the cheap (first) tier's system prompt
only. ``learn`` runs when the request escalated and the last tier accepted with
agreement >= ``min_agreement_to_learn``: it asks that tier's model for a short
general strategy (never the answer; sentences stating the answer are dropped),
embeds the query and the strategy with the embedding scorer's encoder, and
stores them. Its tokens and cost are added to the result and shown in
``result.memory``. Learning never raises: a paid answer is always returned.

With ``learn_in_background`` the answer is returned at once and the strategy is
written by a task on the running event loop; its spend accumulates in
:attr:`StrategyMemory.spend` (not in the result). ``Cascade.aclose()`` (or
leaving ``async with``) waits for such tasks, and ``generate_sync`` finishes them
before its own loop ends, so none is lost.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from semcascade._budget import CallBudget, Estimate, tier_upper_bound
from semcascade.errors import SemcascadeError
from semcascade.memory.config import MemoryConfig
from semcascade.memory.prompts import clean_strategy, inject_strategies, strategy_messages
from semcascade.memory.store import (
    FloatArray,
    StrategyEntry,
    StrategyMatch,
    StrategyStore,
    create_store,
    query_hash,
)
from semcascade.result import CascadeResult, MemoryTrace, RetrievedStrategy

if TYPE_CHECKING:
    from semcascade.providers import Provider
    from semcascade.sampling import ResolvedTier

#: a reserved worst case for the strategy call, or why it did not fit
Reservation = tuple[Estimate | None, str | None]
#: the strategy call: the last tier's first model with the strategy settings, and its messages
Teacher = tuple["ResolvedTier", list[dict[str, Any]]]

__all__ = ["BackgroundSpend", "Embedder", "MemorySession", "StrategyMemory"]

logger = logging.getLogger("semcascade.memory")


@dataclass
class BackgroundSpend:
    """What strategy calls made in the background (``learn_in_background``) have cost so far."""

    calls: int = 0
    learned: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    errors: list[str] = field(default_factory=list)


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors (rows)."""

    def embed(self, texts: Sequence[str]) -> FloatArray: ...


class StrategyMemory:
    """A strategy store plus the embedder and the rules of when to learn and what to inject.

    ``store`` and ``embedder`` default to the config's store and the
    embedding scorer's encoder (all-MiniLM-L6-v2, loaded on first use and
    shared with an embedding agreement scorer in the same process).
    """

    def __init__(
        self,
        config: MemoryConfig | None = None,
        *,
        store: StrategyStore | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.config = config if config is not None else MemoryConfig(enabled=True)
        c = self.config
        self.store: StrategyStore = store or create_store(c.store.name, **c.store_options())
        self._embedder = embedder
        #: spend of the strategy calls made in the background (``learn_in_background``)
        self.spend = BackgroundSpend()
        self._spend_lock = threading.Lock()
        self._pending: set[asyncio.Task[None]] = set()

    @classmethod
    def from_config(cls, config: MemoryConfig) -> StrategyMemory | None:
        """The memory a config asks for, or ``None`` when it is disabled."""
        return cls(config) if config.enabled else None

    def __repr__(self) -> str:
        return f"StrategyMemory(store={self.store!r}, top_k={self.config.top_k})"

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from semcascade.scoring.embedding import EmbeddingScorer

            self._embedder = EmbeddingScorer(model=self.config.embedding_model, backend=self.config.embedding_backend)
        return self._embedder

    def embed(self, texts: Sequence[str]) -> FloatArray:
        return np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)

    async def session(self, question: str) -> MemorySession:
        """Start a request: embed ``question`` and retrieve strategies for it (if the store has any)."""
        s = MemorySession(self, question)
        if await asyncio.to_thread(self.store.count) > 0:
            s.embedding = (await asyncio.to_thread(self.embed, [question]))[0]
            c = self.config
            emb = s.embedding
            s.matches = await asyncio.to_thread(
                lambda: self.store.search(emb, top_k=c.top_k, min_similarity=c.min_similarity)
            )
        return s

    @property
    def pending(self) -> int:
        """Background learning tasks not finished yet."""
        return len(self._pending)

    def _spawn(self, learn: Coroutine[Any, Any, None]) -> None:
        """Run ``learn`` as a task on the running loop, tracked until it finishes."""
        task = asyncio.get_running_loop().create_task(learn)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _learn_in_background(
        self,
        session: MemorySession,
        result: CascadeResult,
        teacher: Teacher,
        provider: Provider,
        budget: CallBudget | None,
        reserved: Estimate | None,
    ) -> None:
        try:
            trace = await session._learn(result, teacher, provider, budget, reserved)
        except Exception as exc:  # a background task has nobody to raise to: log it, keep the spend honest
            logger.warning("background strategy learning failed: %s", exc)
            trace = session._trace(note="not learned: the background strategy call failed", errors=[str(exc)])
        if trace.errors:
            logger.warning("background strategy learning: %s", "; ".join(trace.errors))
        with self._spend_lock:
            s = self.spend
            s.calls += int(trace.model is not None)
            s.learned += int(trace.learned)
            s.prompt_tokens += trace.prompt_tokens
            s.completion_tokens += trace.completion_tokens
            s.cost += trace.cost
            s.errors.extend(trace.errors)

    def pending_in(self, loop: asyncio.AbstractEventLoop) -> int:
        """Background learning tasks of ``loop`` not finished yet."""
        return sum(1 for t in self._pending if t.get_loop() is loop)

    async def wait_learning(self) -> None:
        """Wait for the background learning tasks started on the running event loop."""
        loop = asyncio.get_running_loop()
        mine = [t for t in self._pending if t.get_loop() is loop]
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)

    def close(self) -> None:
        self.store.close()


@dataclass
class MemorySession:
    """The memory's state for one request."""

    memory: StrategyMemory
    question: str
    embedding: FloatArray | None = None
    matches: list[StrategyMatch] = field(default_factory=list)
    injected_into: str | None = None

    def augment(
        self, tier_index: int, messages: list[dict[str, Any]], tier_name: str | None = None
    ) -> list[dict[str, Any]]:
        """``messages`` with the retrieved strategies in the system prompt, for the first tier only."""
        if tier_index != 0 or not self.matches:
            return messages
        self.injected_into = tier_name or "tier 0"
        return inject_strategies(messages, [m.entry.strategy for m in self.matches])

    def _trace(self, **update: Any) -> MemoryTrace:
        retrieved = [
            RetrievedStrategy(id=m.entry.id, similarity=round(m.similarity, 4), strategy=m.entry.strategy)
            for m in self.matches
        ]
        return MemoryTrace(retrieved=retrieved, injected_into=self.injected_into, **update)

    def _skip_reason(self, result: CascadeResult, is_last: bool) -> str | None:
        c = self.memory.config
        final = result.trace[result.tier_index]
        if not result.escalated:
            return "not learned: answered without escalation"
        if not is_last:
            return "not learned: answered before the last tier"
        if final.decision != "accept":
            return f"not learned: the last tier did not accept ({final.decision})"
        if final.agreement is None:
            if not c.learn_single_sample:
                return "not learned: the last tier has one sample (no agreement) and learn_single_sample is off"
        elif final.agreement < c.min_agreement_to_learn:
            return f"not learned: agreement {final.agreement:.3f} < min_agreement_to_learn {c.min_agreement_to_learn:g}"
        best = max((m.similarity for m in self.matches), default=None)
        if c.skip_learning_above is not None and best is not None and best >= c.skip_learning_above:
            return (
                f"not learned: a stored strategy already covers this question "
                f"(similarity {best:.3f} >= skip_learning_above {c.skip_learning_above:g})"
            )
        return None

    async def learn(
        self,
        result: CascadeResult,
        tier: ResolvedTier,
        provider: Provider,
        *,
        is_last: bool,
        budget: CallBudget | None = None,
    ) -> CascadeResult:
        """``result`` with its memory trace; on a confident last-tier answer, also learn a strategy.

        With ``budget``, the strategy call must fit the call's and the run's budget (its worst case is
        reserved first, as for a tier); when it does not, no strategy is learned."""
        skip = self._skip_reason(result, is_last)
        if skip is None:
            teacher = self._teacher(result, tier)
            reserved, why = self._reserve(teacher, budget)
            if why is not None:
                skip = f"not learned: the strategy call would not fit the budget: {why}"
        if skip is not None:
            note = skip
            if self.matches:
                note = f"{len(self.matches)} strategies retrieved; {skip}"
            return result.model_copy(update={"memory": self._trace(note=note)})
        if self.memory.config.learn_in_background:
            self.memory._spawn(self.memory._learn_in_background(self, result, teacher, provider, budget, reserved))
            note = "learning a strategy in the background (its cost is in StrategyMemory.spend)"
            return result.model_copy(update={"memory": self._trace(note=note)})
        t0 = time.perf_counter()
        trace = await self._learn(result, teacher, provider, budget, reserved)
        elapsed = time.perf_counter() - t0
        trace = trace.model_copy(update={"latency_s": elapsed})
        flops = result.flops
        if flops is not None and tier.config.parameters is not None:
            flops += 2.0 * tier.config.parameters * (trace.prompt_tokens + trace.completion_tokens)
        return result.model_copy(
            update={
                "memory": trace,
                "cost": result.cost + trace.cost,
                "prompt_tokens": result.prompt_tokens + trace.prompt_tokens,
                "completion_tokens": result.completion_tokens + trace.completion_tokens,
                "flops": flops,
                "latency_s": result.latency_s + elapsed,
            }
        )

    def _teacher(self, result: CascadeResult, tier: ResolvedTier) -> Teacher:
        """The strategy call: the last tier's first model, the strategy settings, and its messages."""
        from semcascade.sampling import ResolvedTier

        c = self.memory.config
        cfg = tier.config.model_copy(update={"max_tokens": c.strategy_max_tokens, "stop": None, "logprobs": False})
        one_model = ResolvedTier(config=cfg, models=tier.models[:1], limiter=tier.limiter)
        return one_model, strategy_messages(self.question, result.text)

    @staticmethod
    def _reserve(teacher: Teacher, budget: CallBudget | None) -> Reservation:
        """Reserve the strategy call's worst case in the call's and run's budget: (bound, None) or (None, why)."""
        if budget is None or not budget.limited:
            return None, None
        bound = tier_upper_bound(*teacher, k=1)
        why = budget.reserve(bound)
        return (None, why) if why is not None else (bound, None)

    async def _learn(
        self,
        result: CascadeResult,
        teacher: Teacher,
        provider: Provider,
        budget: CallBudget | None = None,
        reserved: Estimate | None = None,
    ) -> MemoryTrace:
        from semcascade.sampling import sample_tier

        mem, c = self.memory, self.memory.config
        one_model, messages = teacher
        cfg = one_model.config
        try:
            drawn = await sample_tier(one_model, messages, provider, k=1, temperature=c.strategy_temperature)
        except SemcascadeError as exc:  # e.g. a provider config error: the answer is still returned
            if budget is not None and reserved is not None:
                budget.settle(reserved, Estimate(0.0, 0))
            return self._trace(note="not learned: the strategy call failed", errors=[str(exc)])
        except BaseException:
            if budget is not None and reserved is not None:
                budget.settle(reserved, None)  # cancelled: what was billed is unknown
            raise
        if budget is not None and reserved is not None:
            budget.settle(reserved, Estimate(drawn.cost(cfg), drawn.prompt_tokens + drawn.completion_tokens))
        spent: dict[str, Any] = {
            "model": one_model.models[0].name,
            "prompt_tokens": drawn.prompt_tokens,
            "completion_tokens": drawn.completion_tokens,
            "cost": drawn.cost(cfg),
            "errors": list(drawn.errors),
        }
        if not drawn.samples:
            return self._trace(note="not learned: the strategy call returned nothing", **spent)
        strategy = clean_strategy(drawn.samples[0].text, result.text, max_chars=8 * c.strategy_max_tokens)
        if not strategy:
            return self._trace(note="not learned: the strategy only restated the answer", **spent)
        try:
            question_vec = self.embedding
            texts = [strategy] if question_vec is not None else [strategy, self.question]
            vectors = await asyncio.to_thread(mem.embed, texts)
            strategy_vec = vectors[0]
            if question_vec is None:
                question_vec = vectors[1]
            final = result.trace[result.tier_index]
            entry = StrategyEntry(
                query_embedding=question_vec,
                strategy_embedding=strategy_vec,
                strategy=strategy,
                source_model=one_model.models[0].name,
                source_tier=cfg.name,
                agreement=final.agreement,
                query_hash=query_hash(self.question),
            )
            added = await asyncio.to_thread(mem.store.add, entry)
        except Exception as exc:  # a broken (or buggy custom) store must not lose the paid answer or its cost
            return self._trace(note="not learned: the strategy could not be stored", strategy=strategy,
                               errors=[*spent.pop("errors"), str(exc)], **spent)  # fmt: skip
        note = f"learned strategy #{added.id}" if added.added else f"not stored: {added.reason}"
        if added.evicted:
            note += f"; evicted {added.evicted}"
        return self._trace(learned=added.added, strategy=strategy, strategy_id=added.id, note=note, **spent)
