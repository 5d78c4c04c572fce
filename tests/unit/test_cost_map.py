"""The cost map read without litellm gives litellm's prices (issue 12: no litellm on the native path).

For the native provider's models (``openai/``, ``hosted_vllm/``, ``custom_openai/``,
bare names) :mod:`semcascade.costs` reads litellm's bundled JSON itself; every
price it answers that way must be the one ``litellm.cost_per_token`` gives, and
whatever it cannot answer goes to litellm.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from semcascade import costs

REPO = Path(costs.__file__).resolve().parents[1]
_PROVIDERS = ("openai", "hosted_vllm", "custom_openai")


def _names() -> list[str]:
    cost_map = costs._bundled_map()
    assert cost_map is not None, "litellm's bundled cost map was not found"
    names = []
    for key, entry in cost_map.items():
        if isinstance(entry, dict) and entry.get("litellm_provider") in _PROVIDERS:
            names += [key, *(f"{p}/{key}" for p in _PROVIDERS)]
    unmapped = ["openai/bench", "bench", "hosted_vllm/Qwen/Qwen2.5-7B", "custom_openai/x", "openai/qwen2.5-0.5b"]
    return names + unmapped + ["claude-3-haiku-20240307", "anthropic/claude-3-haiku-20240307", "openai/ft:gpt-4o:x"]


def test_every_price_read_from_the_bundled_map_is_litellms() -> None:
    names = _names()
    native: dict[str, tuple[float, float] | None] = {}
    for name in names:
        try:
            native[name] = costs._lookup_bundled(name)
        except costs.CostMapDeferredError:
            continue
    assert sum(p is not None for p in native.values()) >= 50  # the common chat models are priced natively
    assert native["openai/bench"] is None and native["bench"] is None
    assert "anthropic/claude-3-haiku-20240307" not in native  # another provider: litellm's to answer
    wrong = {n: (p, costs._litellm_prices(n)) for n, p in native.items() if p != costs._litellm_prices(n)}
    assert wrong == {}


def test_pricing_native_models_imports_no_litellm() -> None:
    code = """
        import json, sys
        from semcascade.config import TierConfig
        from semcascade.costs import tier_cost, unpriced_models
        mini = TierConfig(name="a", model="openai/gpt-4o-mini")
        bench = TierConfig(name="b", model="openai/bench", api_base="http://127.0.0.1:1/v1")
        print(json.dumps({"mini": tier_cost(mini, "openai/gpt-4o-mini", 1000, 1000),
                          "bench": tier_cost(bench, "openai/bench", 1000, 1000),
                          "unpriced": unpriced_models(bench) + unpriced_models(mini),
                          "litellm": "litellm" in sys.modules}))
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": ""},
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    prices = costs._lookup_bundled("openai/gpt-4o-mini")
    assert prices is not None
    assert got == {
        "mini": pytest.approx(1000 * sum(prices)),
        "bench": 0.0,
        "unpriced": ["openai/bench"],
        "litellm": False,
    }


def _tiered_chat_model() -> tuple[str, dict[str, float]]:
    cost_map = costs._bundled_map()
    assert cost_map is not None
    for name, entry in cost_map.items():
        if (
            isinstance(entry, dict)
            and entry.get("mode") == "chat"
            and entry.get("litellm_provider") == "openai"
            and "input_cost_per_token_above_272k_tokens" in entry
            and "output_cost_per_token_above_272k_tokens" in entry
        ):
            return name, entry
    pytest.fail("the bundled cost map has no OpenAI chat model priced in tiers")


def test_a_tiered_model_costs_its_base_price_below_the_threshold_and_its_tier_above() -> None:
    from semcascade.config import TierConfig

    name, entry = _tiered_chat_model()
    tier = TierConfig(name="t", model=f"openai/{name}")
    base, above = entry["input_cost_per_token"], entry["input_cost_per_token_above_272k_tokens"]
    out, out_above = entry["output_cost_per_token"], entry["output_cost_per_token_above_272k_tokens"]
    assert above > base
    # a usual call: the base prices (it was priced at the above-272k prices before)
    assert costs.cost_map_prices(tier.model) == pytest.approx((base, out))
    assert costs.tier_cost(tier, tier.model, 1_000, 100) == pytest.approx(1_000 * base + 100 * out)
    # a prompt past the threshold: the tier's prices, as litellm prices it
    assert costs.tier_cost(tier, tier.model, 300_000, 100) == pytest.approx(300_000 * above + 100 * out_above)
