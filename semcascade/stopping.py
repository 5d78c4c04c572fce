"""Adaptive k: when a tier stops drawing samples (a registry of stopping rules).

A tier with ``adaptive_k: {name: agree_early, options: {...}}`` draws a few
samples first, scores them (the tier step's decision score, e.g. their
agreement) and asks its stopping rule whether to draw more, up to its ``k``.
The rule only says *how many more*; once it says none, the tier decides on the
samples drawn through :func:`semcascade.step.decide`, as any tier does. The
live cascade (:mod:`semcascade.adaptive`) and the replay of recorded runs
(:mod:`semcascade.evaluation.adaptive`, taking recorded samples in order) both
ask through :func:`semcascade.step.draw_more`.

``agree_early`` (the built-in): draw ``initial`` (2); stop when the score is at
least ``accept_at`` (they agree: accept) or below ``escalate_below`` (they
clearly disagree: escalate); in between draw ``step`` (1) more, up to k.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from semcascade.errors import ConfigError
from semcascade.registry import Registry

__all__ = [
    "STOPPING_RULES",
    "AgreeEarly",
    "StoppingRule",
    "available_stopping_rules",
    "create_stopping_rule",
    "register_stopping_rule",
]


@runtime_checkable
class StoppingRule(Protocol):
    def initial(self, k: int) -> int:
        """Samples to draw first (1..k)."""
        ...

    def more(self, k: int, drawn: int, score: float | None) -> int:
        """Samples to draw next given ``drawn`` so far and their decision score; 0 = stop and decide."""
        ...


STOPPING_RULES: Registry[StoppingRule] = Registry("stopping rule", ConfigError)


def register_stopping_rule(name: str) -> Callable[[Callable[..., StoppingRule]], Callable[..., StoppingRule]]:
    return STOPPING_RULES.register(name)


def available_stopping_rules() -> list[str]:
    return STOPPING_RULES.names()


def create_stopping_rule(name: str, **options: Any) -> StoppingRule:
    return STOPPING_RULES.create(name, **options)


@register_stopping_rule("agree_early")
class AgreeEarly:
    """Draw ``initial``; stop at ``score >= accept_at`` or ``score < escalate_below``; else ``step`` more."""

    def __init__(self, initial: int = 2, accept_at: float = 0.9, escalate_below: float = 0.5, step: int = 1) -> None:
        if not isinstance(initial, int) or initial < 1:
            raise ConfigError(f"agree_early: initial must be an integer >= 1, got {initial!r}")
        if not isinstance(step, int) or step < 1:
            raise ConfigError(f"agree_early: step must be an integer >= 1, got {step!r}")
        if not 0.0 <= escalate_below <= accept_at <= 1.0:
            raise ConfigError(
                f"agree_early: need 0 <= escalate_below <= accept_at <= 1, got {escalate_below!r} and {accept_at!r}"
            )
        self.initial_n, self.accept_at, self.escalate_below, self.step = initial, accept_at, escalate_below, step

    def initial(self, k: int) -> int:
        return max(1, min(self.initial_n, k))

    def more(self, k: int, drawn: int, score: float | None) -> int:
        if drawn >= k:
            return 0
        if score is not None and (score >= self.accept_at or score < self.escalate_below):
            return 0
        return min(self.step, k - drawn)
