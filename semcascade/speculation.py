"""Speculative escalation: start the next tier before the current one has decided (tail latency).

Scheduling around the tier step, never a decision: the tier step (:mod:`semcascade.step`) decides
accept/escalate on the current tier's samples exactly as without speculation; this module only
decides *when the next tier's call starts*. A tier with ``speculate:`` (its
:class:`~semcascade.config.SpeculationConfig`) starts the next tier early when

* ``when: disagree`` — two of its samples that have come back disagree (its k requests come back
  one by one; each new answer is judged against those before it under the config's scorer and
  equivalence rule), or ``after_s`` (if set) has passed;
* ``when: after`` — ``after_s`` seconds have passed since the tier started.

Then, when the current tier

* escalates: the next tier's samples are the speculative ones (:meth:`Speculation.take`; no second call);
* accepts (or abstains, or the call ends): the speculative call is cancelled (:meth:`Speculation.cancel`).

Spend is never silent: the next tier's upper bound is reserved against the call's and the run's
budget before it starts (the rule firing is refused, and recorded, when it does not fit), and
settled with what was billed; a request cut in flight may be billed by the provider for what it
generated, which is unknown, so its reservation is charged. Every start is recorded as a
:class:`~semcascade.result.SpeculationTrace` on the result (``result.speculation``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Literal

from semcascade._budget import CallBudget, Estimate
from semcascade.answers import extract_answer
from semcascade.config import SpeculationConfig
from semcascade.costs import tier_cost
from semcascade.endpoints import ResolvedModel
from semcascade.providers import REFUSED_FINISH_REASONS, Completion
from semcascade.result import CascadeResult, SpeculationOutcome, SpeculationTrace
from semcascade.sampling import OnCompletion, ResolvedTier, TierSamples

__all__ = ["Speculation", "SpeculationLog", "Trigger", "disagreement_pairs"]

Trigger = Literal["disagree", "after"]
#: starts the next tier's draw; told of each of its requests as it comes back
Draw = Callable[[OnCompletion], Coroutine[Any, Any, TierSamples]]
#: whether two answers mean the same (the config's scorer and equivalence rule)
Equivalent = Callable[[str, str], Awaitable[bool]]


def disagreement_pairs(arrived: int, new: int) -> list[tuple[int, int]]:
    """The pairs to judge when ``new`` answers come back after ``arrived`` others: each new one against
    every answer before it (the tier step judges every pair anyway; the scorer's cache keeps them)."""
    return [(i, j) for j in range(arrived, arrived + new) for i in range(j)]


class Speculation:
    """One tier's speculative start of the next tier, for one call.

    ``draw`` starts the next tier (with the messages and budget bound the cascade computed for it);
    ``equivalent`` judges two of the current tier's answers. :meth:`observe` is the current tier's
    :data:`~semcascade.sampling.OnCompletion`; :meth:`begin` arms the timer when the tier starts.
    """

    def __init__(
        self,
        rule: SpeculationConfig,
        *,
        source: str,
        target: ResolvedTier,
        bound: Estimate,
        draw: Draw,
        budget: CallBudget,
        equivalent: Equivalent,
        answer_format: str = "raw",
    ) -> None:
        self.rule = rule
        self.source = source
        self.target = target
        self.bound = bound
        self._draw = draw
        self._budget = budget
        self._equivalent = equivalent
        self._answer_format = answer_format
        self._t0 = time.perf_counter()
        self._answers: list[str] = []
        self._judging: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[TierSamples] | None = None
        self._trigger: Trigger | None = None
        self._started_at: float | None = None
        self._refused: str | None = None
        #: the speculative tier's requests that came back: litellm model -> [prompt, completion] billed
        self._usage: dict[str, list[int]] = {}
        self._arrived = 0
        self._trace: SpeculationTrace | None = None

    # ------------------------------------------------------------------ the rule

    def begin(self) -> None:
        """The current tier starts now: arm the ``after_s`` timer, if any."""
        self._t0 = time.perf_counter()
        if self.rule.after_s is not None:
            self._timer = asyncio.get_running_loop().call_later(self.rule.after_s, self.fire, "after")

    def observe(self, model: ResolvedModel, completion: Completion) -> None:
        """A request of the current tier came back: with ``when: disagree``, judge its answers."""
        if self.rule.when != "disagree" or self.fired:
            return
        new = [
            extract_answer(ch.text.strip(), self._answer_format)
            for ch in completion.choices
            if ch.finish_reason not in REFUSED_FINISH_REASONS
        ]
        pairs = disagreement_pairs(len(self._answers), len(new))
        self._answers.extend(new)
        for a, b in pairs:
            task = asyncio.get_running_loop().create_task(self._judge(self._answers[a], self._answers[b]))
            self._judging.add(task)
            task.add_done_callback(self._judging.discard)

    async def _judge(self, a: str, b: str) -> None:
        if not self.fired and not await self._equivalent(a, b):
            self.fire("disagree")

    @property
    def fired(self) -> bool:
        """Whether the rule has fired (the next tier started, or refused by the budget)."""
        return self._trigger is not None

    @property
    def started(self) -> bool:
        """Whether the next tier was started speculatively."""
        return self._task is not None

    @property
    def started_at(self) -> float:
        """When the next tier was started (``time.perf_counter()``)."""
        assert self._started_at is not None
        return self._started_at

    def fire(self, trigger: Trigger) -> None:
        """Start the next tier now (once), if its upper bound fits the budget."""
        if self.fired or self._trace is not None:
            return
        self._trigger = trigger
        self._started_at = time.perf_counter()
        self._stop_watching()
        why = self._budget.reserve(self.bound)
        if why is not None:
            self._refused = f"the next tier was not started: {why}"
            return
        self._task = asyncio.get_running_loop().create_task(self._draw(self._arrival))

    def _arrival(self, model: ResolvedModel, completion: Completion) -> None:
        used = self._usage.setdefault(model.litellm_model, [0, 0])
        used[0] += completion.prompt_tokens
        used[1] += completion.completion_tokens
        self._arrived += 1

    def _stop_watching(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._judging):
            if task is not asyncio.current_task():
                task.cancel()

    # ------------------------------------------------------------------ the outcome

    async def take(self) -> TierSamples:
        """The current tier escalated: the speculative samples (awaited), settled against the budget."""
        assert self._task is not None, "take() needs a started speculation"
        try:
            drawn = await self._task
        except BaseException:
            self._budget.settle(self.bound, None)  # cancelled or a config error: what was billed is unknown
            self._record("cancelled", "the speculative call failed or was cancelled", charged=self.bound.cost)
            raise
        billed = Estimate(drawn.cost(self.target.config), drawn.prompt_tokens + drawn.completion_tokens)
        self._budget.settle(self.bound, billed)
        self._record("used", "the source tier escalated: its samples are the next tier's", drawn=drawn)
        return drawn

    async def cancel(self, why: str) -> None:
        """The current tier decided without the next one (``why``): stop the speculation and record it."""
        self._stop_watching()
        if self._judging:
            await asyncio.gather(*self._judging, return_exceptions=True)
        if self._trace is not None or not self.fired:
            return
        if self._task is None:
            self._record("refused", self._refused or "")
            return
        if self._task.done():
            self._settle_done(why)
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._settle_cut(why)

    def abort(self) -> None:
        """Synchronous :meth:`cancel` for a call that ends by an exception: nothing is awaited."""
        self._stop_watching()
        if self._trace is not None or not self.fired:
            return
        if self._task is None:
            self._record("refused", self._refused or "")
        elif self._task.done():
            self._settle_done("the call ended")
        else:
            self._task.cancel()
            self._settle_cut("the call ended")

    def _settle_done(self, why: str) -> None:
        assert self._task is not None
        if self._task.cancelled() or self._task.exception() is not None:
            self._budget.settle(self.bound, None)
            self._record("cancelled", f"{why}; the speculative call failed", charged=self.bound.cost)
            return
        drawn = self._task.result()
        billed = Estimate(drawn.cost(self.target.config), drawn.prompt_tokens + drawn.completion_tokens)
        self._budget.settle(self.bound, billed)
        if not drawn.samples:  # its requests failed (timed out at the deadline, say): nothing to use or waste
            self._record("cancelled", f"{why}; the speculative call failed: {'; '.join(drawn.errors[:2])}", drawn=drawn)
            return
        self._record("wasted", f"{why} after the next tier had come back (billed, unused)", drawn=drawn)

    def _settle_cut(self, why: str) -> None:
        # requests cut in flight may be billed for what they generated (unknown): charge the whole bound
        self._budget.settle(self.bound, None)
        self._record(
            "cancelled",
            f"{why} while the next tier was in flight: cancelled ({self._arrived} of its requests had come back)",
            charged=self.bound.cost,
        )

    def _record(
        self,
        outcome: SpeculationOutcome,
        reason: str,
        *,
        drawn: TierSamples | None = None,
        charged: float | None = None,
    ) -> None:
        usage = drawn.usage if drawn is not None else self._usage
        cfg = self.target.config
        cost = sum(tier_cost(cfg, m, p, c) for m, (p, c) in usage.items())
        assert self._trigger is not None and self._started_at is not None
        self._trace = SpeculationTrace(
            source=self.source,
            tier=cfg.name,
            trigger=self._trigger,
            started_after_s=self._started_at - self._t0,
            outcome=outcome,
            reason=reason,
            prompt_tokens=sum(u[0] for u in usage.values()),
            completion_tokens=sum(u[1] for u in usage.values()),
            cost=cost,
            charged_cost=cost if charged is None else charged,
        )

    @property
    def trace(self) -> SpeculationTrace | None:
        """What became of this speculation, once settled (``None`` before, or when the rule never fired)."""
        return self._trace


class SpeculationLog:
    """A call's speculations: settles any still pending when the call ends, and puts them on the result."""

    def __init__(self) -> None:
        self._all: list[Speculation] = []

    def add(self, spec: Speculation) -> Speculation:
        self._all.append(spec)
        return spec

    async def close(self, why: str) -> None:
        """Cancel (and record) every speculation still pending: the call ends with ``why``."""
        for spec in self._all:
            await spec.cancel(why)

    def abort(self) -> None:
        """:meth:`close` without awaiting (the call ends by an exception)."""
        for spec in self._all:
            spec.abort()

    @property
    def traces(self) -> Sequence[SpeculationTrace]:
        return [s.trace for s in self._all if s.trace is not None]

    def attach(self, result: CascadeResult) -> CascadeResult:
        """``result`` with the speculation traces, and the billed spend of unused speculation in its totals."""
        traces = list(self.traces)
        if not traces:
            return result
        unused = [t for t in traces if t.outcome in ("wasted", "cancelled")]
        return result.model_copy(
            update={
                "speculation": traces,
                "cost": result.cost + sum(t.cost for t in unused),
                "prompt_tokens": result.prompt_tokens + sum(t.prompt_tokens for t in unused),
                "completion_tokens": result.completion_tokens + sum(t.completion_tokens for t in unused),
            }
        )
