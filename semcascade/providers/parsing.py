"""The chat-completions answer (an OpenAI-style JSON object, or litellm's copy of one) -> :class:`Completion`.

Shared by every provider, so token accounting is the same on every path: with
``n>1`` llama-server reports one choice's completion tokens only, so each
choice is counted from its logprobs when present, else usage is split by
length (and marked estimated).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from semcascade.errors import ContentRefusedError, MalformedResponseError
from semcascade.providers.base import REFUSED_FINISH_REASONS, Choice, Completion, CompletionRequest, TokenLogprob

__all__ = ["parse_completion", "parse_logprobs"]


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def parse_logprobs(raw: Any) -> tuple[TokenLogprob, ...] | None:
    content = _get(raw, "content") if raw is not None else None
    if not content:
        return None
    out = []
    for item in content:
        top = {str(_get(t, "token")): float(_get(t, "logprob")) for t in (_get(item, "top_logprobs") or [])}
        out.append(TokenLogprob(token=str(_get(item, "token")), logprob=float(_get(item, "logprob")), top=top))
    return tuple(out)


def parse_completion(response: Any, request: CompletionRequest) -> Completion:
    """The :class:`Completion` in ``response``.

    Raises :class:`MalformedResponseError` (no choices, non-text content) or
    :class:`ContentRefusedError` (every choice withheld by the provider's filter).
    """
    raw_choices = _get(response, "choices")
    if not raw_choices:
        raise MalformedResponseError("the provider returned no choices", model=request.model, tier=request.tier)
    usage = _get(response, "usage")
    prompt_tokens = int(_get(usage, "prompt_tokens", 0) or 0)
    usage_completion = int(_get(usage, "completion_tokens", 0) or 0)
    choices: list[Choice] = []
    for rc in raw_choices:
        message = _get(rc, "message")
        text = _get(message, "content") if message is not None else None
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise MalformedResponseError("a choice's content is not text", model=request.model, tier=request.tier)
        lps = parse_logprobs(_get(rc, "logprobs"))
        finish = _get(rc, "finish_reason")
        refusal = _get(message, "refusal") if message is not None else None
        if not text and isinstance(refusal, str) and refusal:
            finish = "refusal"  # OpenAI's structured refusal: no content, the reason in 'refusal'
        choices.append(Choice(text=text, completion_tokens=0, finish_reason=finish, logprobs=lps))
    if all(c.finish_reason in REFUSED_FINISH_REASONS for c in choices):
        raise ContentRefusedError(
            f"content refused: the provider's content filter withheld every choice "
            f"(finish_reason {choices[0].finish_reason!r}); not retried",
            model=request.model,
            tier=request.tier,
        )
    # Token accounting. With n>1 llama-server reports one choice's tokens only,
    # so count per choice from logprobs when present; else split usage by length.
    counted: list[Choice] = []
    total_chars = sum(len(c.text) for c in choices) or 1
    for c in choices:
        if c.logprobs is not None:
            counted.append(_with_tokens(c, len(c.logprobs), estimated=False))
        elif len(choices) == 1:
            counted.append(_with_tokens(c, usage_completion, estimated=False))
        else:
            share = (
                round(usage_completion * len(c.text) / total_chars) if usage_completion else max(1, len(c.text) // 4)
            )
            counted.append(_with_tokens(c, share, estimated=True))
    return Completion(
        model=str(_get(response, "model") or request.model), choices=tuple(counted), prompt_tokens=prompt_tokens
    )


def _with_tokens(c: Choice, n: int, *, estimated: bool) -> Choice:
    return Choice(
        text=c.text, completion_tokens=n, finish_reason=c.finish_reason, logprobs=c.logprobs, tokens_estimated=estimated
    )
