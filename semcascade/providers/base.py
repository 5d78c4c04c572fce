"""The provider seam's types: a completion request, its answer, the :class:`Provider` protocol, the registry.

Nothing here imports an HTTP client or litellm: every provider module builds on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from semcascade.errors import ProviderError
from semcascade.registry import Registry

__all__ = [
    "Choice",
    "Completion",
    "CompletionRequest",
    "Message",
    "OPENAI_STYLE_PREFIXES",
    "PROVIDERS",
    "Provider",
    "REFUSED_FINISH_REASONS",
    "StreamChunk",
    "StreamingProvider",
    "TokenLogprob",
    "available_providers",
    "create_provider",
    "register_provider",
]

Message = Mapping[str, Any]

#: model-string prefixes that mean "an OpenAI-compatible endpoint" (the native provider strips them)
OPENAI_STYLE_PREFIXES = ("openai/", "hosted_vllm/", "custom_openai/")

#: ``finish_reason`` of a choice the provider withheld (content filter) or refused (OpenAI's ``refusal``)
REFUSED_FINISH_REASONS = ("content_filter", "refusal")


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """One chat-completion call (``n`` choices) as semcascade sends it."""

    model: str
    messages: Sequence[Message]
    n: int = 1
    temperature: float = 0.7
    max_tokens: int = 256
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0
    seed: int | None = None
    stop: Sequence[str] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: names the tier in errors; not sent to the provider
    tier: str | None = None
    #: index of this request's first sample among the tier's k; not sent to the provider. It keeps
    #: otherwise identical single-sample calls (a backend without native ``n``) apart in caches.
    sample_offset: int = 0


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    #: alternatives at this position (token -> logprob), if requested
    top: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Choice:
    text: str
    completion_tokens: int
    finish_reason: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    #: True when ``completion_tokens`` had to be estimated (no per-choice usage)
    tokens_estimated: bool = False


@dataclass(frozen=True, slots=True)
class Completion:
    """What a provider returned for one request."""

    model: str
    choices: tuple[Choice, ...]
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)


@runtime_checkable
class Provider(Protocol):
    """Sends one :class:`CompletionRequest`; raises :class:`ProviderError` subclasses."""

    async def complete(self, request: CompletionRequest) -> Completion: ...


# --------------------------------------------------------------------------- registry


#: name -> "module:class" of the providers semcascade ships, imported on first use (httpx, litellm lazily)
BUILTIN_PROVIDERS = {
    "litellm": "semcascade.providers.litellm:LiteLLMProvider",
    "mock": "semcascade.providers.mock:MockProvider",
    "openai": "semcascade.providers.openai_compat:OpenAICompatibleProvider",
}

PROVIDERS: Registry[Provider] = Registry("provider", ProviderError, builtins=BUILTIN_PROVIDERS)


def register_provider(name: str) -> Callable[[Callable[..., Provider]], Callable[..., Provider]]:
    return PROVIDERS.register(name)


def available_providers() -> list[str]:
    return PROVIDERS.names()


def create_provider(name: str = "litellm", **options: Any) -> Provider:
    return PROVIDERS.create(name, **options)


# --------------------------------------------------------------------------- streaming


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """One piece of a streamed completion: a text delta of choice ``index``, or the final usage.

    The last chunk of a stream has ``done=True`` and carries the usage
    (``prompt_tokens``/``completion_tokens``; ``tokens_estimated`` when the
    server sent none and the deltas were counted instead).
    """

    text: str = ""
    index: int = 0
    finish_reason: str | None = None
    done: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_estimated: bool = False


@runtime_checkable
class StreamingProvider(Provider, Protocol):
    """A provider that can also stream: text deltas as they arrive, then a final chunk with the usage."""

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]: ...
