"""Adaptive k, live: draw a tier's samples in rounds until its stopping rule says decide.

The cascade calls :func:`draw_adaptively` for a tier with ``adaptive_k`` in
place of one :func:`~semcascade.sampling.sample_tier` of k samples. How many
samples each round draws is :func:`semcascade.step.first_draw` /
:func:`semcascade.step.draw_more` (the rule of :mod:`semcascade.stopping`), on
the decision score the tier step gives the samples so far; the decision on the
final samples is the tier step's as always. :func:`upper_bound` is what the
rounds can bill at most (each round pays its prompt), reserved against the
budget before the first round.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from semcascade import step
from semcascade._budget import Estimate, tier_upper_bound
from semcascade.providers import Provider
from semcascade.sampling import OnCompletion, ResolvedTier, TierSamples, sample_tier
from semcascade.stopping import StoppingRule

__all__ = ["draw_adaptively", "merge_samples", "upper_bound"]

Messages = Sequence[Mapping[str, Any]]


def upper_bound(tier: ResolvedTier, messages: Messages, rule: StoppingRule) -> Estimate:
    """The most the rounds can bill: the first round, then at worst one sample (and its prompt) per round."""
    k = tier.config.k
    first = step.first_draw(rule, k)
    one = tier_upper_bound(tier, messages, k=1)
    head = tier_upper_bound(tier, messages, k=first)
    rest = k - first
    return Estimate(cost=head.cost + rest * one.cost, tokens=head.tokens + rest * one.tokens)


def merge_samples(a: TierSamples, b: TierSamples) -> TierSamples:
    """``a`` then ``b``'s samples (re-indexed), errors and billed usage."""
    usage = {m: list(u) for m, u in a.usage.items()}
    for m, (p, c) in b.usage.items():
        used = usage.setdefault(m, [0, 0])
        used[0] += p
        used[1] += c
    extra = [s.model_copy(update={"index": len(a.samples) + i}) for i, s in enumerate(b.samples)]
    return TierSamples(samples=[*a.samples, *extra], errors=[*a.errors, *b.errors], usage=usage)


async def draw_adaptively(
    tier: ResolvedTier,
    messages: Messages,
    provider: Provider,
    rule: StoppingRule,
    score: Callable[[TierSamples], Awaitable[float | None]],
    *,
    answer_format: str = "raw",
    on_completion: OnCompletion | None = None,
) -> tuple[TierSamples, int]:
    """The tier's samples drawn round by round, and the number of rounds.

    ``score`` is the tier step's decision score of the samples so far. A round that brings no
    sample (every call failed) ends the drawing: the tier decides on what arrived.
    """
    cfg = tier.config
    first = step.first_draw(rule, cfg.k)
    drawn = await sample_tier(
        tier, messages, provider, k=first, answer_format=answer_format, on_completion=on_completion
    )
    rounds = 1
    while drawn.samples:
        more = step.draw_more(rule, cfg.k, len(drawn.samples), await score(drawn))
        if more == 0:
            break
        # later rounds sample at the tier's temperature (the greedy sample, if any, came first) and,
        # with a fixed seed, with seeds the first round did not use
        seed = None if cfg.seed is None else cfg.seed + len(drawn.samples)
        later = dataclasses.replace(tier, config=cfg.model_copy(update={"include_greedy": False, "seed": seed}))
        extra = await sample_tier(
            later, messages, provider, k=more, answer_format=answer_format, on_completion=on_completion
        )
        rounds += 1
        drawn = merge_samples(drawn, extra)
        if not extra.samples:
            break
    return drawn, rounds
