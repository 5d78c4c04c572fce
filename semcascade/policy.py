"""Deferral policies: given a tier's consensus, accept, escalate or abstain.

A policy is anything with ``decide(...)``; policies are registered by name so
a config can pick one (``policy: threshold``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from semcascade.config import TierConfig
from semcascade.errors import ConfigError
from semcascade.registry import Registry

__all__ = [
    "Decision",
    "DeferralPolicy",
    "POLICIES",
    "ThresholdPolicy",
    "accept_matrix",
    "available_policies",
    "create_policy",
    "register_policy",
    "threshold_accepts",
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


def threshold_accepts(scores: ArrayLike, threshold: float, complete: ArrayLike) -> np.ndarray:
    """The threshold rule, vectorised: which scores a non-final tier accepts.

    ``scores`` holds NaN where a tier has no score (one sample); such a tier
    accepts only when its threshold is 0 and every requested sample arrived
    (``complete``). Otherwise a score accepts when it reaches the threshold.
    :class:`ThresholdPolicy` decides live through this function and the
    calibration solver sweeps thresholds through it: one rule.
    """
    s = np.asarray(scores, dtype=float)
    done = np.asarray(complete, dtype=bool)
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(s), (threshold == 0.0) & done, s >= threshold)


@register_policy("threshold")
class ThresholdPolicy:
    """Accept when the tier's decision score reaches its threshold, else escalate.

    The last tier has nowhere to escalate: it answers anyway, or abstains and
    flags the request for human review when ``final_action`` is ``abstain``.
    A tier with no score (a single sample under an agreement signal) carries no
    signal: a non-final one escalates unless its threshold is 0 and every
    requested sample arrived.
    """

    def accept_mask(self, scores: ArrayLike, threshold: float, complete: ArrayLike) -> np.ndarray:
        """Vectorised acceptance of a non-final tier (see :func:`threshold_accepts`)."""
        return threshold_accepts(scores, threshold, complete)

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
        score = np.nan if agreement is None else agreement
        accepted = bool(threshold_accepts([score], tier.threshold, [n_samples >= tier.k])[0])
        if agreement is None:
            if accepted:
                return Decision("accept", "threshold 0: accept without an agreement signal")
            if is_last:
                return Decision("accept", f"last tier answers ({n_samples} sample: no agreement signal)")
            return Decision("escalate", f"only {n_samples} sample: no agreement signal")
        if accepted:
            return Decision("accept", f"{score_name} {agreement:.3f} >= threshold {tier.threshold:g}")
        below = f"{score_name} {agreement:.3f} < threshold {tier.threshold:g}"
        if not is_last:
            return Decision("escalate", below)
        if final_action == "abstain":
            return Decision("abstain", f"{below} at the last tier: abstain, flag for human review")
        return Decision("accept", f"{below} at the last tier: answer anyway")


def accept_matrix(
    policy: DeferralPolicy,
    tier: TierConfig,
    scores: ArrayLike,
    thresholds: ArrayLike,
    complete: ArrayLike,
) -> np.ndarray:
    """``(len(thresholds), len(scores))`` bool: would ``policy`` accept each score at each threshold
    (as a non-final tier)? Uses the policy's vectorised ``accept_mask`` when it has one, else asks
    :meth:`DeferralPolicy.decide` example by example (slow, but the same rule)."""
    s = np.asarray(scores, dtype=float)
    done = np.asarray(complete, dtype=bool)
    ths = np.atleast_1d(np.asarray(thresholds, dtype=float))
    mask = getattr(policy, "accept_mask", None)
    if callable(mask):
        return (
            np.stack([np.asarray(mask(s, float(th), done), dtype=bool) for th in ths])
            if len(ths)
            else np.zeros((0, len(s)), dtype=bool)
        )
    out = np.zeros((len(ths), len(s)), dtype=bool)
    for a, th in enumerate(ths):
        stand_in = tier.model_copy(update={"threshold": float(th)})
        for j, x in enumerate(s):
            d = policy.decide(
                stand_in,
                None if np.isnan(x) else float(x),
                n_samples=tier.k if done[j] else 0,
                is_last=False,
                final_action="answer",
            )
            out[a, j] = d.action == "accept"
    return out
