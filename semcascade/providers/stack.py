"""The provider stack, built in one place for the cascade and the evaluation harness.

    base provider per tier -> local-server guard -> per-tier retry -> optional response cache

:func:`build_provider_stack` makes it from a config; :class:`ProviderStack`
names its layers (``caller`` is the outermost, what requests are sent to).
``Cascade(config, provider=...)`` and ``run_eval(..., provider=...)`` accept a
provider to build the stack on instead of the per-tier base providers (a
provider that already retries is used as the retry layer, not wrapped again)
or a whole :class:`ProviderStack`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from semcascade.errors import ConfigError, ProviderError
from semcascade.providers.base import OPENAI_STYLE_PREFIXES, PROVIDERS, Completion, CompletionRequest, Provider
from semcascade.providers.clients import close_loop_clients
from semcascade.providers.retry import RetryingProvider

if TYPE_CHECKING:  # (no runtime import: semcascade.config imports this package)
    from semcascade.config import CascadeConfig, TierConfig
    from semcascade.local.guard import LocalServerGuard
    from semcascade.local.server import LocalServer
    from semcascade.response_cache import CachingProvider, ResponseCache

__all__ = ["ProviderStack", "TierProviders", "auto_provider_name", "build_provider_stack", "find_retrying"]

#: the built-in providers that own HTTP clients and take a keep-alive ``pool_size``
_POOLED = ("openai", "litellm")


_OPENAI_STYLE = ("local/", *OPENAI_STYLE_PREFIXES)


def auto_provider_name(model: str, api_base: str | None) -> str:
    """The provider ``auto`` picks for ``model`` (as written in the config, or as resolved) at ``api_base``.

    ``openai`` (the native client) for OpenAI-compatible endpoints: ``local/``
    models, ``openai/...`` (and ``hosted_vllm/``, ``custom_openai/``) models, and
    a model without a provider prefix behind an ``api_base``; ``litellm`` for
    everything else (``anthropic/...``, ``azure/...`` even with an ``api_base``, ...).
    """
    if model.startswith(_OPENAI_STYLE) or (api_base is not None and "/" not in model):
        return "openai"
    return "litellm"


class TierProviders:
    """The base providers of a config: each request goes to its tier's ``provider`` (``auto``: per model).

    One instance per distinct (name, options), shared by the tiers that name
    it; the built-in HTTP providers get a keep-alive pool sized from the
    ``max_concurrency`` of the tiers that use them. Requests of no known tier
    (e.g. an LLM judge's) go to the ``auto`` choice for their model.
    """

    def __init__(self, config: CascadeConfig) -> None:
        self._tiers: dict[str, TierConfig] = {t.name: t for t in config.tiers}
        self._instances: dict[str, Provider] = {}
        self._lock = threading.Lock()
        pools: dict[str, int] = {}
        specs: dict[str, tuple[str, Mapping[str, Any], str]] = {}
        for t in config.tiers:
            for key in dict.fromkeys(_key(*self._spec(t, m, t.api_base)) for m in t.model_list):
                pools[key] = pools.get(key, 0) + t.max_concurrency
            for m in t.model_list:
                name, options = self._spec(t, m, t.api_base)
                specs.setdefault(_key(name, options), (name, options, t.name))
        for key, (name, options, tier) in specs.items():
            self._instances[key] = _create(name, options, pools[key], tier=tier)

    def __repr__(self) -> str:
        return f"TierProviders({', '.join(sorted(self._instances))})"

    @staticmethod
    def _spec(tier: TierConfig | None, model: str, api_base: str | None) -> tuple[str, Mapping[str, Any]]:
        name = tier.provider.name if tier is not None else "auto"
        options: Mapping[str, Any] = tier.provider.options if tier is not None else {}
        if name == "auto":
            name = auto_provider_name(model, api_base)
        return name, options

    def for_request(self, request: CompletionRequest) -> Provider:
        """The provider that sends ``request`` (by its tier, and for ``auto`` its model and endpoint)."""
        name, options = self._spec(self._tiers.get(request.tier or ""), request.model, request.api_base)
        key = _key(name, options)
        with self._lock:
            provider = self._instances.get(key)
            if provider is None:
                provider = self._instances[key] = _create(name, options, None, tier=request.tier)
            return provider

    def providers(self) -> list[Provider]:
        """Every provider instance made so far."""
        with self._lock:
            return list(self._instances.values())

    async def complete(self, request: CompletionRequest) -> Completion:
        return await self.for_request(request).complete(request)

    async def aclose(self) -> None:
        """Close the running loop's HTTP clients of every provider made."""
        await close_loop_clients(*self.providers())


def _key(name: str, options: Mapping[str, Any]) -> str:
    return name + repr(sorted(options.items()))


def _create(name: str, options: Mapping[str, Any], pool: int | None, *, tier: str | None) -> Provider:
    opts = dict(options)
    if name in _POOLED and pool is not None:
        opts.setdefault("pool_size", pool)
    try:
        return PROVIDERS.create(name, **opts)
    except (ProviderError, ValueError) as exc:  # unknown name or bad options: the config's fault
        where = f"tier {tier!r}: " if tier else ""
        raise ConfigError(f"{where}provider: {exc}") from None


def find_retrying(provider: Provider) -> RetryingProvider | None:
    """The :class:`RetryingProvider` ``provider`` is or wraps (through ``inner`` attributes), if any."""
    seen: set[int] = set()
    node: object | None = provider
    while node is not None and id(node) not in seen:
        if isinstance(node, RetryingProvider):
            return node
        seen.add(id(node))
        node = vars(node).get("inner") if hasattr(node, "__dict__") else None
    return None


@dataclass(frozen=True, eq=False)
class ProviderStack:
    """The layers a cascade's requests go through; itself a provider (it sends to ``caller``).

    ``base``: the per-tier base providers, or the provider given to build on;
    ``guard``: the local-server guard above it, if the config uses the managed
    server; ``retrying``: the per-tier retry layer; ``cache``: the response
    cache, if any; ``caller``: the outermost layer.
    """

    base: Provider
    retrying: RetryingProvider
    caller: Provider
    guard: LocalServerGuard | None = None
    cache: CachingProvider | None = None

    async def complete(self, request: CompletionRequest) -> Completion:
        return await self.caller.complete(request)

    async def aclose(self) -> None:
        """Close the HTTP clients the stack's providers hold for the running event loop."""
        await close_loop_clients(self.caller)


def build_provider_stack(
    config: CascadeConfig,
    *,
    base: Provider | None = None,
    local_server: LocalServer | Callable[[], LocalServer | None] | None = None,
    cache: ResponseCache | None = None,
) -> ProviderStack:
    """The provider stack for ``config``: base provider per tier -> local-server guard -> per-tier retry -> cache.

    ``base`` replaces the per-tier base providers (a :class:`ProviderStack` is
    returned as it is; a provider that already retries, i.e. is or wraps a
    :class:`RetryingProvider`, is used as the retry layer and not wrapped
    again). ``local_server`` (the managed server, or a function returning it)
    adds the guard that restarts it if it dies, when the config has local
    tiers. ``cache`` adds a :class:`~semcascade.response_cache.CachingProvider`
    on top.
    """
    if isinstance(base, ProviderStack):
        return base
    retrying = find_retrying(base) if base is not None else None
    guard: LocalServerGuard | None = None
    if retrying is not None:
        assert base is not None
        inner: Provider = base
    else:
        inner = base if base is not None else TierProviders(config)
        bottom = inner
        if local_server is not None and config.uses_local_server:
            from semcascade.local.guard import LocalServerGuard

            # A managed local server that dies mid-run is restarted once and the call retried.
            guard = LocalServerGuard(inner, local_server)
            inner = guard
        retrying = RetryingProvider(inner, {t.name: t.retry for t in config.tiers})
        inner = retrying
        base = bottom
    caching: CachingProvider | None = None
    if cache is not None:
        from semcascade.response_cache import CachingProvider

        caching = CachingProvider(inner, cache)
        inner = caching
    return ProviderStack(base=base, retrying=retrying, caller=inner, guard=guard, cache=caching)
