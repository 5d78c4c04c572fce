"""A money cap must be able to bind: every tier it governs needs a price (issue 11, fault 1).

A tier without ``input_cost_per_token``/``output_cost_per_token`` whose model
litellm's offline cost map does not know costs 0 per call, so a
``max_cost_per_call``/``max_cost_per_run`` would never stop it. Such configs are
refused when they are loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from semcascade import costs
from semcascade.config import load_config
from semcascade.errors import ConfigError


@pytest.fixture(autouse=True)
def _fresh_price_cache() -> Iterator[None]:
    costs._cost_map_prices.cache_clear()
    yield
    costs._cost_map_prices.cache_clear()


def tier(name: str, model: str, **over: Any) -> dict[str, Any]:
    return {"name": name, "model": model, "k": 1, **over}


PRICED = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}


@pytest.mark.parametrize("cap", ["max_cost_per_call", "max_cost_per_run"])
def test_a_money_cap_over_a_tier_without_a_price_is_refused_at_load(cap: str) -> None:
    cfg = {"tiers": [tier("cheap", "openai/gpt-4o-mini"), tier("house", "openai/my-finetune")], "budget": {cap: 0.5}}
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    msg = str(info.value)
    assert f"budget.{cap}" in msg and "tier 'house'" in msg and "openai/my-finetune" in msg
    assert "input_cost_per_token" in msg and "max_tokens_per" in msg  # the fixes: a price, or a token cap
    assert "tier 'cheap'" not in msg  # litellm's cost map prices gpt-4o-mini


def test_a_local_tier_needs_a_configured_price_under_a_money_cap() -> None:
    local = tier("small", "local/qwen2.5-coder-0.5b", parameters=4.94e8)  # FLOPs are not money
    with pytest.raises(ConfigError, match=r"tier 'small'.*local/qwen2.5-coder-0.5b.*never in"):
        load_config({"tiers": [local], "budget": {"max_cost_per_run": 1.0}})
    load_config({"tiers": [{**local, **PRICED}], "budget": {"max_cost_per_run": 1.0}})


def test_every_model_of_a_heterogeneous_tier_needs_a_price() -> None:
    mixed = {"name": "mixed", "models": ["openai/gpt-4o-mini", "nosuchprovider/x"], "k": 2}
    with pytest.raises(ConfigError, match=r"tier 'mixed'.*nosuchprovider/x"):
        load_config({"tiers": [mixed], "budget": {"max_cost_per_call": 1.0}})


def test_priced_tiers_token_caps_and_no_caps_are_fine() -> None:
    unpriced = [tier("a", "openai/my-finetune"), tier("b", "local/qwen2.5-coder-0.5b")]
    load_config({"tiers": unpriced})  # no cap: nothing to bind
    load_config({"tiers": unpriced, "budget": {"max_tokens_per_call": 100, "max_tokens_per_run": 1000}})
    priced = [{**t, **PRICED} for t in unpriced]
    load_config({"tiers": priced, "budget": {"max_cost_per_call": 0.1, "max_cost_per_run": 1.0}})
    # an explicit price of 0 is the user saying the tier is free: accepted
    free = [{**t, "input_cost_per_token": 0.0, "output_cost_per_token": 0.0} for t in unpriced]
    load_config({"tiers": free, "budget": {"max_cost_per_run": 1.0}})
    load_config({"tiers": [tier("m", "openai/gpt-4o-mini")], "budget": {"max_cost_per_run": 1.0}})


def test_the_shipped_local_default_passes_with_a_money_cap() -> None:
    base = load_config(None)
    load_config({**base.model_dump(), "budget": {"max_cost_per_run": 1.0}})


def test_an_unknown_model_costs_nothing_but_a_bug_in_the_price_lookup_surfaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import litellm

    assert costs._cost_map_prices("openai/my-finetune") is None  # mapped provider, unmapped model
    assert costs._cost_map_prices("nosuchprovider/x") is None  # no provider at all
    assert costs._cost_map_prices("openai/gpt-4o-mini") is not None
    costs._cost_map_prices.cache_clear()

    def broken(**kwargs: Any) -> tuple[float, float]:
        raise RuntimeError("bug in the price lookup")

    monkeypatch.setattr(litellm, "cost_per_token", broken)
    with pytest.raises(RuntimeError, match="bug in the price lookup"):
        costs._cost_map_prices("openai/gpt-4o-mini")
