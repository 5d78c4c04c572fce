"""Cost accounting: configured per-token prices, else litellm's (offline) cost map.

Money is only what the prices say: a tier's ``parameters`` give its FLOPs
(:func:`tier_flops`), never a price. A tier with no configured price whose
model the cost map does not know costs 0 per call; :func:`unpriced_models`
names such models so a money cap over them can be refused when the config is
loaded (it would never bind).

The cost map is litellm's bundled JSON. For the models the native provider
serves (``openai/...``, ``hosted_vllm/...``, ``custom_openai/...`` and bare names)
it is read directly, without importing litellm (a cold ``import litellm`` costs
seconds): flat per-token prices are looked up as litellm looks them up, and an
entry litellm would price differently (tiered, per-second) or any other model
is asked of litellm itself, call by call (a prompt past a tier's threshold, e.g.
``input_cost_per_token_above_272k_tokens``, costs that tier's price; a usual call the
base price). Once litellm is imported (a tier uses it) it
answers every lookup, so models registered with ``litellm.register_model``
count.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semcascade.errors import CostMapDeferredError

if TYPE_CHECKING:
    from semcascade.config import TierConfig

__all__ = ["cost_map_prices", "tier_cost", "tier_flops", "unpriced_models"]

#: models written ``local/NAME`` are served by the managed llama-server (as in semcascade.config)
_LOCAL_PREFIX = "local/"
#: the model prefixes whose prices are read from the bundled map directly (the native provider's)
_NATIVE_PREFIXES = ("openai/", "hosted_vllm/", "custom_openai/")
#: litellm's bundled cost map, inside the installed litellm package
_BUNDLED_MAP = "model_prices_and_context_window_backup.json"


@functools.cache
def _bundled_map() -> dict[str, Any] | None:
    """litellm's bundled cost map, read without importing litellm (``None``: not installed/readable)."""
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        data = json.loads((Path(next(iter(spec.submodule_search_locations))) / _BUNDLED_MAP).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _bundled_prices(model: str) -> tuple[float, float] | None:
    """(input, output) USD per token from the bundled map, for a native-provider model.

    The lookup litellm's ``cost_per_token(model=...)`` makes for these models:
    the model string as written, else without its provider prefix. Raises
    :class:`CostMapDeferredError` when litellm has to answer.
    """
    if "litellm" in sys.modules or os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP", "True").lower() != "true":
        raise CostMapDeferredError  # litellm's live map (registered models, a fetched map) is the truth then
    return _lookup_bundled(model)


def _lookup_bundled(model: str) -> tuple[float, float] | None:
    """The bundled-map half of :func:`_bundled_prices` (whatever litellm's import state)."""
    prefix = next((p for p in _NATIVE_PREFIXES if model.startswith(p)), None)
    if (prefix is None and "/" in model) or ":" in model:  # another provider; fine-tunes (ft:...)
        raise CostMapDeferredError
    cost_map = _bundled_map()
    if cost_map is None:
        raise CostMapDeferredError
    bare = model.removeprefix(prefix) if prefix else model
    entry = cost_map.get(model, cost_map.get(bare))
    if entry is None:  # not in the map under either name: unpriced
        return None
    provider = prefix.rstrip("/") if prefix else "openai"
    if not isinstance(entry, dict) or entry.get("litellm_provider") != provider:
        raise CostMapDeferredError  # litellm checks the entry against the provider
    if any("above_" in k or k.endswith("_per_second") for k in entry if "cost" in k):
        raise CostMapDeferredError  # tiered or time-based prices: litellm's arithmetic
    inp, out = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
    if entry.get("mode") != "chat" or not isinstance(inp, int | float) or not isinstance(out, int | float):
        raise CostMapDeferredError  # image, audio, embedding models: priced by other units
    return float(inp), float(out)


def _unknown_model_errors() -> tuple[type[BaseException], ...]:
    """What litellm's ``cost_per_token`` raises for a model it cannot price.

    ``BadRequestError``: no provider can be inferred from the model string
    (``get_llm_provider``); ``ModelNotMappedError``: the provider is known but the
    model is not in the cost map.
    """
    import litellm.exceptions as lx

    return tuple(e for e in (getattr(lx, "BadRequestError", None), getattr(lx, "ModelNotMappedError", None)) if e)


#: the token counts unit prices are asked of litellm at: below every tier threshold of the cost map
#: (``*_above_200k_tokens``, ``*_above_272k_tokens``), so they are a usual call's per-token prices
_UNIT_TOKENS = 1_000


@lru_cache(maxsize=256)
def _cost_map_prices(model: str) -> tuple[float, float] | None:
    """(input, output) USD per token of a usual (short) call from litellm's cost map, or None if unmapped."""
    try:
        return _bundled_prices(model)
    except CostMapDeferredError:
        return _litellm_prices(model)


@lru_cache(maxsize=256)
def _per_call(model: str) -> bool:
    """Whether litellm must price each call of ``model`` itself (tiered by length, or not in the bundled map)."""
    try:
        _bundled_prices(model)
    except CostMapDeferredError:
        return True
    return False


def _litellm() -> Any:
    """The litellm module (imported now), quiet on unmapped models."""
    from semcascade._litellm_env import prepare_litellm_env as _prepare_litellm_env

    _prepare_litellm_env()
    import litellm

    # an unmapped model is an answer here (None), not something to print a provider list for
    litellm.suppress_debug_info = True
    return litellm


def _litellm_cost(model: str, prompt_tokens: int, completion_tokens: int) -> tuple[float, float] | None:
    """(prompt, completion) USD of one call as litellm's ``cost_per_token`` prices it, or None if unmapped."""
    try:
        inp, out = _litellm().cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except _unknown_model_errors():
        return None
    except Exception as exc:
        # litellm releases without ModelNotMappedError raise a bare Exception for an unmapped model
        if type(exc) is Exception and "isn't mapped yet" in str(exc):
            return None
        raise
    return float(inp), float(out)


def _litellm_prices(model: str) -> tuple[float, float] | None:
    """(input, output) USD per token of a usual call as litellm says (litellm imported now)."""
    cost = _litellm_cost(model, _UNIT_TOKENS, _UNIT_TOKENS)
    return None if cost is None else (cost[0] / _UNIT_TOKENS, cost[1] / _UNIT_TOKENS)


def tier_cost(tier: TierConfig, model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """Money spent by one call (configured prices win over the cost map; unknown -> 0)."""
    if tier.input_cost_per_token is not None or tier.output_cost_per_token is not None:
        return prompt_tokens * (tier.input_cost_per_token or 0.0) + completion_tokens * (
            tier.output_cost_per_token or 0.0
        )
    prices = _cost_map_prices(model)
    if prices is None:
        return 0.0
    if _per_call(model):  # a long prompt may cross a price tier: litellm's arithmetic on this call
        cost = _litellm_cost(model, prompt_tokens, completion_tokens)
        return 0.0 if cost is None else cost[0] + cost[1]
    return prompt_tokens * prices[0] + completion_tokens * prices[1]


def unpriced_models(tier: TierConfig) -> list[str]:
    """The tier's models whose calls would cost 0 without anyone saying so.

    None when the tier configures a price (an explicit 0 is a statement).
    Otherwise every ``local/`` model (the cost map never knows the embedded
    server's models) and every model the cost map does not price, or prices at
    zero. litellm is imported only when a non-local model has to be looked up.
    """
    if tier.input_cost_per_token is not None or tier.output_cost_per_token is not None:
        return []
    out = []
    for m in tier.model_list:
        if m.startswith(_LOCAL_PREFIX):
            out.append(m)
            continue
        prices = _cost_map_prices(m)
        if prices is None or prices == (0.0, 0.0):
            out.append(m)
    return out


def tier_flops(tier: TierConfig, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Compute estimate 2 x parameters x tokens, when the tier states its parameter count."""
    if tier.parameters is None:
        return None
    return 2.0 * tier.parameters * (prompt_tokens + completion_tokens)


def cost_map_prices(model: str) -> tuple[float, float] | None:
    """(input, output) price per token of ``model`` in litellm's offline cost map, or None if unmapped."""
    return _cost_map_prices(model)
