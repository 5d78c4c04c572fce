"""Per-request tier overrides and the live (token-by-token) stream of the last tier.

Two small seams :meth:`Cascade.generate <semcascade.cascade.Cascade.generate>` offers a server:

- ``overrides``: request fields (``temperature``, ``max_tokens``, ``stop``, ``seed``) applied to every tier
  for one call (:func:`with_overrides`), budgets and deadlines included, since they read the tier config;
- ``on_text``: an async callback that receives the text of the answer as it is generated, when the
  answering tier can be streamed live (:func:`live_streamable`): the last tier, whose answer is returned
  whatever it says (nothing is decided after it), drawing one sample, whose raw text is the answer.
  Any other tier's samples await the agreement decision and are never passed to ``on_text``.

:func:`stream_tier` draws that one sample through a provider that streams (the native OpenAI-compatible
one); if the stream fails before its first token it falls back to the ordinary (retrying) path, so the
answer is the same either way; a stream that breaks off after text was passed on is a tier failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from semcascade._deadline import request_deadline
from semcascade.answers import extract_answer
from semcascade.config import CascadeConfig, TierConfig
from semcascade.errors import ProviderError
from semcascade.providers.base import CompletionRequest, Provider, StreamingProvider
from semcascade.result import SampleTrace
from semcascade.sampling import CONFIG_ERRORS, ResolvedTier, TierSamples, sample_tier

__all__ = ["OVERRIDABLE", "OnText", "live_streamable", "stream_tier", "with_overrides"]

#: an async callback receiving each text delta of a live-streamed answer
OnText = Callable[[str], Awaitable[None]]

#: the tier fields a request may set for every tier of one call
OVERRIDABLE = frozenset({"temperature", "max_tokens", "stop", "seed"})


def with_overrides(tiers: Sequence[ResolvedTier], overrides: Mapping[str, Any] | None) -> list[ResolvedTier]:
    """``tiers`` with ``overrides`` applied to each tier's config (the same tiers when there are none)."""
    if not overrides:
        return list(tiers)
    unknown = sorted(set(overrides) - OVERRIDABLE)
    if unknown:
        raise ValueError(f"cannot override {', '.join(unknown)}; only {', '.join(sorted(OVERRIDABLE))}")
    return [replace(t, config=t.config.model_copy(update=dict(overrides))) for t in tiers]


def live_streamable(config: CascadeConfig, tier: TierConfig, *, is_last: bool) -> bool:
    """Whether ``tier``'s answer can go to the client while it is generated.

    Only the last tier (nothing is decided after it: it answers whatever its score), drawing one
    sample from one model, whose whole text is the answer (``answer_format: raw``, no consensus vote
    over the tiers, no confidence model reading token probabilities a stream does not carry).
    """
    return (
        is_last
        and tier.k == 1
        and len(tier.model_list) == 1
        and config.answer_format == "raw"
        and config.final_answer == "last_tier"
        and tier.confidence_model is None
    )


def _streamer(base: Provider, request: CompletionRequest) -> StreamingProvider | None:
    """The provider that can stream ``request``: ``base`` itself, or the one it routes the request to."""
    if isinstance(base, StreamingProvider):
        return base
    route = getattr(base, "for_request", None)
    if route is not None:
        chosen = route(request)
        if isinstance(chosen, StreamingProvider):
            return chosen
    return None


async def stream_tier(
    tier: ResolvedTier,
    messages: Sequence[Mapping[str, Any]],
    caller: Provider,
    base: Provider,
    on_text: OnText,
    *,
    answer_format: str = "raw",
) -> TierSamples:
    """The tier's one sample, streamed: each delta goes to ``on_text`` as it arrives.

    ``base``: the bottom of the provider stack (where the stream is opened); ``caller``: the
    retrying stack, used instead when ``base`` cannot stream or the stream fails before any text.
    """
    cfg = tier.config
    model = tier.models[0]
    request = CompletionRequest(
        model=model.litellm_model,
        messages=messages,
        n=1,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        api_base=model.api_base,
        api_key=model.api_key,
        timeout=cfg.timeout,
        seed=cfg.seed,
        stop=cfg.stop,
        extra=cfg.litellm_params,
        tier=cfg.name,
    )
    streamer = _streamer(base, request)
    if streamer is None:
        return await sample_tier(tier, messages, caller, k=1, answer_format=answer_format)
    parts: list[str] = []
    finish: str | None = None
    prompt_tokens = completion_tokens = 0
    estimated = False
    try:
        async with request_deadline(request.model, request.tier), tier.limiter.slot():
            async for chunk in streamer.stream(request):
                if chunk.done:
                    prompt_tokens = chunk.prompt_tokens or 0
                    completion_tokens = chunk.completion_tokens or 0
                    estimated = chunk.tokens_estimated
                    continue
                if chunk.finish_reason:
                    finish = chunk.finish_reason
                if chunk.text:
                    parts.append(chunk.text)
                    await on_text(chunk.text)
    except ProviderError as exc:
        if isinstance(exc, CONFIG_ERRORS):
            raise
        if not parts:  # nothing reached the client: the ordinary path, with its retries
            return await sample_tier(tier, messages, caller, k=1, answer_format=answer_format)
        out = TierSamples(samples=[], errors=[f"the stream broke off after {len(parts)} deltas: {exc}"])
        out.usage[model.litellm_model] = [prompt_tokens, len(parts)]  # what was generated was billed
        return out
    text = "".join(parts).strip()
    out = TierSamples(samples=[], errors=[])
    out.usage[model.litellm_model] = [prompt_tokens, completion_tokens]
    out.samples.append(
        SampleTrace(
            index=0,
            model=model.name,
            text=text,
            answer=extract_answer(text, answer_format),
            completion_tokens=completion_tokens,
            finish_reason=finish,
            tokens_estimated=estimated,
            greedy=cfg.temperature == 0.0,
        )
    )
    return out
