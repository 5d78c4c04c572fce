"""Cost accounting: configured per-token prices, else litellm's (offline) cost map."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from semcascade.config import TierConfig

__all__ = ["tier_cost", "tier_flops"]


@lru_cache(maxsize=256)
def _cost_map_prices(model: str) -> tuple[float, float] | None:
    """(input, output) USD per token from litellm's bundled cost map, or None if unmapped."""
    from semcascade.providers import _prepare_litellm_env

    _prepare_litellm_env()
    import litellm

    try:
        inp, out = litellm.cost_per_token(model=model, prompt_tokens=1_000_000, completion_tokens=1_000_000)
    except Exception:  # unmapped model: litellm raises its own error types
        return None
    return float(inp) / 1e6, float(out) / 1e6


def tier_cost(tier: TierConfig, model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """Money spent by one call (configured prices win over the cost map; unknown -> 0)."""
    if tier.input_cost_per_token is not None or tier.output_cost_per_token is not None:
        return prompt_tokens * (tier.input_cost_per_token or 0.0) + completion_tokens * (
            tier.output_cost_per_token or 0.0
        )
    prices = _cost_map_prices(model)
    if prices is None:
        return 0.0
    return prompt_tokens * prices[0] + completion_tokens * prices[1]


def tier_flops(tier: TierConfig, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Compute estimate 2 x parameters x tokens, when the tier states its parameter count."""
    if tier.parameters is None:
        return None
    return 2.0 * tier.parameters * (prompt_tokens + completion_tokens)
