"""The prompts of the strategy memory: asking for a strategy, cleaning it, and injecting it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["STRATEGY_SYSTEM_PROMPT", "clean_strategy", "inject_strategies", "strategy_messages"]

STRATEGY_SYSTEM_PROMPT = (
    "You are a teacher writing advice for a much smaller assistant model. Given a question, write a short, "
    "general, reusable strategy for answering questions OF THAT KIND: what to recall or check, how to reason, "
    "which mistakes to avoid, and how to format a concise answer. Do NOT give the answer to this question, "
    "do not name the entity, date or number it asks for, and do not restate the question. "
    "Write at most 3 short sentences of plain text, no preamble."
)

_PREAMBLE = re.compile(r"^\s*(?:\*\*)?(?:strategy|general strategy|advice|tip)s?(?:\*\*)?\s*[:\-]\s*", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "by",
        "with",
        "from",
        "as",
        "that",
        "this",
        "it",
        "its",
        "his",
        "her",
        "their",
        "what",
        "who",
        "which",
        "when",
        "where",
        "why",
        "how",
    ]
)


def strategy_messages(question: str, answer: str | None) -> list[dict[str, Any]]:
    """Messages asking the strong model for a strategy for ``question``'s kind.

    The strong tier's own answer is shown so the strategy can reflect how it
    was reached, with an explicit instruction not to repeat it.
    """
    user = f"Question:\n{question.strip()}\n"
    if answer:
        user += f"\n(Your answer, which must NOT appear in the strategy: {answer.strip()})\n"
    user += "\nStrategy for questions of this kind:"
    return [{"role": "system", "content": STRATEGY_SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def _leaks(sentence: str, answer_words: Sequence[str]) -> bool:
    """Whether ``sentence`` contains the answer's content words as a contiguous run."""
    if not answer_words:
        return False
    words = _WORD.findall(sentence.lower())
    n = len(answer_words)
    return any(words[i : i + n] == list(answer_words) for i in range(len(words) - n + 1))


def clean_strategy(text: str, answer: str | None, *, max_chars: int = 800) -> str:
    """``text`` with a "Strategy:" preamble removed and every sentence that states ``answer`` dropped.

    Leakage is detected as the answer's content words (stop words removed)
    appearing contiguously in a sentence; answers of only stop words or
    longer than 8 content words (explanations, not short facts) are not
    searched for. Returns ``""`` when nothing usable is left.
    """
    text = _PREAMBLE.sub("", text.strip()).strip().strip('"').strip()
    words = _content_words(answer or "")
    if len(words) > 8:
        words = []
    kept = [s.strip() for s in _SENTENCE.split(text) if s.strip() and not _leaks(s, words)]
    out = " ".join(kept)
    if len(out) > max_chars:
        cut = out[:max_chars]
        out = cut[: cut.rfind(" ")] if " " in cut else cut
    return out.strip()


def inject_strategies(messages: Sequence[dict[str, Any]], strategies: Sequence[str]) -> list[dict[str, Any]]:
    """A copy of ``messages`` whose system prompt ends with the strategies (a system message is added if none)."""
    out = [dict(m) for m in messages]
    if not strategies:
        return out
    block = "Strategies that helped with similar questions (general advice, not answers):\n" + "\n".join(
        f"- {s}" for s in strategies
    )
    for m in out:
        if m.get("role") == "system" and isinstance(m.get("content"), str):
            m["content"] = f"{m['content'].rstrip()}\n\n{block}"
            return out
    return [{"role": "system", "content": block}, *out]
