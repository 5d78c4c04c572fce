"""Prompts as the cascade sees them: a string or OpenAI-style messages, validated once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from semcascade.errors import EmptyPromptError

__all__ = ["Messages", "PromptLike", "content_text", "normalize_messages", "prompt_text", "question_of"]

Messages = list[dict[str, Any]]
PromptLike = str | Sequence[Mapping[str, Any]]


def content_text(content: Any) -> str:
    """The text of a message's content (a string, or OpenAI content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


def normalize_messages(prompt: PromptLike, system_prompt: str | None = None) -> Messages:
    """A string or OpenAI-style messages -> a validated message list.

    Raises :class:`EmptyPromptError` when there is nothing to answer.
    """
    if isinstance(prompt, str):
        messages: Messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, Sequence):
        messages = []
        for i, m in enumerate(prompt):
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                raise EmptyPromptError(
                    f"message {i} is not a mapping with 'role' and 'content'; pass a string or OpenAI-style messages"
                )
            messages.append(dict(m))
    else:
        raise EmptyPromptError(f"prompt must be a string or a list of messages, not {type(prompt).__name__}")
    if not messages or not any(content_text(m["content"]).strip() for m in messages if m["role"] != "system"):
        raise EmptyPromptError("the prompt is empty; pass a non-empty question or message")
    if system_prompt and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def question_of(messages: Sequence[Mapping[str, Any]]) -> str:
    """The question the samples answer: the last user turn (else the last message)."""
    for m in reversed(messages):
        if m.get("role") == "user":
            return content_text(m.get("content"))
    return content_text(messages[-1].get("content")) if messages else ""


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """Everything the model was shown (system and user turns), for grounding features."""
    return "\n".join(content_text(m.get("content")) for m in messages if m.get("role") in ("system", "user"))
