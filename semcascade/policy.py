"""Deferral policies: given a tier's consensus, accept, escalate or abstain.

A policy is anything with ``decide(...)``; policies are registered by name so
a config can pick one (``policy: threshold``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from semcascade.config import TierConfig
from semcascade.errors import ConfigError
from semcascade.registry import Registry

__all__ = [
    "Decision",
    "DeferralPolicy",
    "POLICIES",
    "ThresholdPolicy",
    "available_policies",
    "create_policy",
    "register_policy",
]

Action = Literal["accept", "escalate", "abstain"]


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


@runtime_checkable
class DeferralPolicy(Protocol):
    def decide(
        self,
        tier: TierConfig,
        agreement: float | None,
        *,
        n_samples: int,
        is_last: bool,
        final_action: Literal["answer", "abstain"],
        score_name: str = "agreement",
    ) -> Decision: ...


POLICIES: Registry[DeferralPolicy] = Registry("policy", ConfigError)


def register_policy(name: str) -> Callable[[Callable[..., DeferralPolicy]], Callable[..., DeferralPolicy]]:
    return POLICIES.register(name)


def available_policies() -> list[str]:
    return POLICIES.names()


def create_policy(name: str, **options: Any) -> DeferralPolicy:
    return POLICIES.create(name, **options)


@register_policy("threshold")
class ThresholdPolicy:
    """Accept when the tier's agreement reaches its threshold, else escalate.

    The last tier has nowhere to escalate: it answers anyway, or abstains and
    flags the request for human review when ``final_action`` is ``abstain``.
    A tier with a single sample carries no agreement signal: a non-final one
    escalates unless its threshold is 0 and it asked for one sample only.
    """

    def decide(
        self,
        tier: TierConfig,
        agreement: float | None,
        *,
        n_samples: int,
        is_last: bool,
        final_action: Literal["answer", "abstain"],
        score_name: str = "agreement",
    ) -> Decision:
        """``agreement`` is the tier's decision score: its agreement, or its confidence
        (``score_name="confidence"``) when the tier has a confidence model."""
        if agreement is None:
            if tier.threshold == 0.0 and n_samples >= tier.k:
                return Decision("accept", "threshold 0: accept without an agreement signal")
            if is_last:
                return Decision("accept", f"last tier answers ({n_samples} sample: no agreement signal)")
            return Decision("escalate", f"only {n_samples} sample: no agreement signal")
        if agreement >= tier.threshold:
            return Decision("accept", f"{score_name} {agreement:.3f} >= threshold {tier.threshold:g}")
        below = f"{score_name} {agreement:.3f} < threshold {tier.threshold:g}"
        if not is_last:
            return Decision("escalate", below)
        if final_action == "abstain":
            return Decision("abstain", f"{below} at the last tier: abstain, flag for human review")
        return Decision("accept", f"{below} at the last tier: answer anyway")
