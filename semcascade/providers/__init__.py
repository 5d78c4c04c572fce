"""The provider seam: how a completion request reaches a model.

* :mod:`~semcascade.providers.base`: :class:`CompletionRequest`, :class:`Completion`,
  the :class:`Provider` protocol and the registry (providers are looked up by
  name, so configs and tests swap them without if/elif chains);
* :mod:`~semcascade.providers.openai_compat`: :class:`OpenAICompatibleProvider`
  (registry name ``openai``), native httpx client for OpenAI-compatible endpoints;
* :mod:`~semcascade.providers.litellm`: :class:`LiteLLMProvider`, any litellm model
  string (litellm is imported only when one is built);
* :mod:`~semcascade.providers.mock`: :class:`MockProvider`, answers from a Python
  function, for tests (in the spirit of ``httpx.MockTransport``);
* :mod:`~semcascade.providers.http_errors` and :mod:`~semcascade.providers.parsing`:
  the HTTP-status -> typed-error mapping and the answer parser every provider shares;
* :mod:`~semcascade.providers.retry`: :class:`RetryingProvider`, retries with backoff;
* :mod:`~semcascade.providers.clients`: the HTTP clients the providers own, one per event loop;
* :mod:`~semcascade.providers.stack`: :func:`build_provider_stack`, the one place the layers
  (base provider per tier -> local-server guard -> per-tier retry -> response cache) are put together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from semcascade.providers.base import (
    PROVIDERS,
    REFUSED_FINISH_REASONS,
    Choice,
    Completion,
    CompletionRequest,
    Provider,
    StreamChunk,
    StreamingProvider,
    TokenLogprob,
    available_providers,
    create_provider,
    register_provider,
)
from semcascade.providers.clients import LoopClients, close_loop_clients
from semcascade.providers.http_errors import error_for_status
from semcascade.providers.litellm import LiteLLMProvider
from semcascade.providers.litellm import _prepare_litellm_env as _prepare_litellm_env  # semcascade.costs uses it
from semcascade.providers.mock import MockProvider
from semcascade.providers.retry import RetryConfig, RetryingProvider

if TYPE_CHECKING:
    from semcascade.providers.openai_compat import OpenAICompatibleProvider

__all__ = [
    "Choice",
    "Completion",
    "CompletionRequest",
    "LiteLLMProvider",
    "LoopClients",
    "MockProvider",
    "OpenAICompatibleProvider",
    "PROVIDERS",
    "Provider",
    "REFUSED_FINISH_REASONS",
    "RetryConfig",
    "RetryingProvider",
    "StreamChunk",
    "StreamingProvider",
    "TokenLogprob",
    "available_providers",
    "close_loop_clients",
    "create_provider",
    "error_for_status",
    "register_provider",
]


def __getattr__(name: str) -> Any:
    # httpx is imported with the native provider, not with the package
    if name == "OpenAICompatibleProvider":
        from semcascade.providers.openai_compat import OpenAICompatibleProvider

        return OpenAICompatibleProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
