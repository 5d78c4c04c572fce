"""Money and token budgets per call and per run, never exceeded.

Before a tier is called the cascade computes an *upper bound* of what it can
cost (:func:`tier_upper_bound`) and reserves it against the call's and the
run's budget (:class:`CallBudget`); if either has not that much left the tier
is not called. After the tier the reservation is replaced by what was
actually billed. A run is one :class:`~semcascade.cascade.Cascade`'s lifetime;
its ledger is shared by concurrent calls (async tasks and threads) and guarded
by a lock, so concurrent reservations cannot together overshoot it.

The prompt bound counts every UTF-8 byte of the messages as a token (a
byte-level BPE or byte-fallback tokenizer never makes more tokens than bytes)
plus a chat-template allowance per message; completions are bounded by
``max_tokens`` per sample.

The caps themselves are :class:`~semcascade.config.BudgetConfig` (the
``budget:`` block of a config; re-exported here).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from semcascade.config import BudgetConfig
from semcascade.costs import tier_cost
from semcascade.sampling import PROBE_MESSAGES, ResolvedTier, probe_pending, split_k

__all__ = ["BudgetConfig", "BudgetLedger", "CallBudget", "Estimate", "prompt_token_bound", "tier_upper_bound"]

#: tokens allowed per message for the chat template (role markers, separators)
TEMPLATE_TOKENS_PER_MESSAGE = 8
#: tokens allowed once per request (the assistant turn's opening)
TEMPLATE_TOKENS_PER_REQUEST = 8


@dataclass(frozen=True)
class Estimate:
    """An amount of money and tokens (an upper bound, a reservation or a bill)."""

    cost: float
    tokens: int


def _content_bytes(content: Any) -> int:
    if isinstance(content, str):
        return len(content.encode("utf-8"))
    return len(json.dumps(content, ensure_ascii=False, default=str).encode("utf-8"))


def prompt_token_bound(messages: Sequence[Mapping[str, Any]]) -> int:
    """An upper bound of the prompt tokens any BPE/byte-fallback tokenizer makes of ``messages``."""
    return TEMPLATE_TOKENS_PER_REQUEST + sum(
        TEMPLATE_TOKENS_PER_MESSAGE + _content_bytes(m.get("content")) + _content_bytes(m.get("role", ""))
        for m in messages
    )


def tier_upper_bound(tier: ResolvedTier, messages: Sequence[Mapping[str, Any]], k: int | None = None) -> Estimate:
    """The most that sampling ``k`` (default: the tier's k) answers from ``tier`` can bill.

    Each request pays the prompt once (native ``n`` sends it once for up to
    ``max_n`` samples; otherwise once per sample) and each sample up to
    ``max_tokens`` completion tokens. An endpoint whose ``n`` support is still to be probed adds the
    probe (its prompt and 2 completion tokens: it is billed too). Money uses
    :func:`semcascade.costs.tier_cost` (configured prices, else litellm's cost map; unknown prices
    count as 0).
    """
    cfg = tier.config
    k = cfg.k if k is None else k
    prompt = prompt_token_bound(messages)
    cost = 0.0
    tokens = 0
    for model, count in zip(tier.models, split_k(k, len(tier.models)), strict=True):
        if count == 0:
            continue
        requests = math.ceil(count / model.max_n) if model.native_n else count
        p, c = requests * prompt, count * cfg.max_tokens
        if probe_pending(tier, model, count):
            p, c = p + prompt_token_bound(PROBE_MESSAGES), c + 2
        tokens += p + c
        cost += tier_cost(cfg, model.litellm_model, p, c)
    return Estimate(cost=cost, tokens=tokens)


class BudgetLedger:
    """Spent + reserved money and tokens against optional caps; thread and task safe."""

    def __init__(self, max_cost: float | None, max_tokens: int | None, *, scope: str) -> None:
        self.max_cost = max_cost
        self.max_tokens = max_tokens
        self.scope = scope
        self._lock = threading.Lock()
        self.spent_cost = 0.0
        self.spent_tokens = 0
        self._reserved_cost = 0.0
        self._reserved_tokens = 0

    @property
    def limited(self) -> bool:
        return self.max_cost is not None or self.max_tokens is not None

    def remaining(self) -> Estimate:
        """What is left (spent and reserved amounts subtracted); inf/huge when uncapped."""
        with self._lock:
            cost = math.inf if self.max_cost is None else self.max_cost - self.spent_cost - self._reserved_cost
            tokens = 2**62 if self.max_tokens is None else self.max_tokens - self.spent_tokens - self._reserved_tokens
        return Estimate(cost=cost, tokens=tokens)

    def try_reserve(self, bound: Estimate) -> str | None:
        """Reserve ``bound``; returns None on success, else why it does not fit (nothing reserved)."""
        with self._lock:
            if self.max_cost is not None:
                left = self.max_cost - self.spent_cost - self._reserved_cost
                if bound.cost > left:
                    return (
                        f"it could cost up to {bound.cost:.6g} but only {max(0.0, left):.6g} of "
                        f"max_cost_per_{self.scope} ({self.max_cost:g}) is left"
                    )
            if self.max_tokens is not None:
                left_t = self.max_tokens - self.spent_tokens - self._reserved_tokens
                if bound.tokens > left_t:
                    return (
                        f"it could use up to {bound.tokens} tokens but only {max(0, left_t)} of "
                        f"max_tokens_per_{self.scope} ({self.max_tokens}) are left"
                    )
            self._reserved_cost += bound.cost
            self._reserved_tokens += bound.tokens
        return None

    def settle(self, reserved: Estimate, actual: Estimate) -> None:
        """Replace a reservation by what was actually billed."""
        with self._lock:
            self._reserved_cost -= reserved.cost
            self._reserved_tokens -= reserved.tokens
            self.spent_cost += actual.cost
            self.spent_tokens += actual.tokens


class CallBudget:
    """One call's budget on top of its run's ledger: a tier must fit both."""

    def __init__(self, config: BudgetConfig, run: BudgetLedger) -> None:
        self.call = BudgetLedger(config.max_cost_per_call, config.max_tokens_per_call, scope="call")
        self.run = run

    @property
    def limited(self) -> bool:
        return self.call.limited or self.run.limited

    def reserve(self, bound: Estimate) -> str | None:
        """Reserve ``bound`` in the call and the run; None on success, else the reason."""
        why = self.call.try_reserve(bound)
        if why is not None:
            return why
        why = self.run.try_reserve(bound)
        if why is not None:
            self.call.settle(bound, Estimate(0.0, 0))
        return why

    def settle(self, reserved: Estimate, actual: Estimate | None) -> None:
        """Record what a tier billed; ``None`` (unknown, e.g. cancelled) charges the whole reservation."""
        billed = reserved if actual is None else actual
        self.call.settle(reserved, billed)
        self.run.settle(reserved, billed)
