"""Lexical agreement: ROUGE-L or SQuAD token F1 between two answers.

No dependencies, no model: the LCS is computed here on SQuAD-normalised tokens.
By default (``question_mode="strip"``) each answer first loses the tokens it
copies from the question, so two samples that both restate the question do
not agree merely because of the restatement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Literal, get_args

from semcascade.errors import ScorerError
from semcascade.scoring.base import PairJudgement, ScorerKind
from semcascade.text import answer_tokens, strip_question_echo

__all__ = ["LexicalMetric", "LexicalScorer", "lcs_length", "rouge_l_f1", "token_f1_tokens"]

LexicalMetric = Literal["rouge_l", "token_f1"]
LexicalQuestionMode = Literal["ignore", "strip"]

#: above this many token-pair comparisons in one judge() call, work moves to a thread
_INLINE_WORK_LIMIT = 200_000


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences (O(len(a)*len(b)) time, O(len(b)) memory)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l_f1(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F-measure (beta = 1) of two token sequences; both empty -> 1.0, one empty -> 0.0."""
    if not a or not b:
        return 1.0 if not a and not b else 0.0
    lcs = lcs_length(a, b)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def token_f1_tokens(a: Sequence[str], b: Sequence[str]) -> float:
    """SQuAD bag-of-tokens F1 of two token sequences; both empty -> 1.0, one empty -> 0.0."""
    if not a or not b:
        return 1.0 if not a and not b else 0.0
    remaining: dict[str, int] = {}
    for t in b:
        remaining[t] = remaining.get(t, 0) + 1
    common = 0
    for t in a:
        if remaining.get(t, 0) > 0:
            remaining[t] -= 1
            common += 1
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


_METRICS: dict[str, Callable[[Sequence[str], Sequence[str]], float]] = {
    "rouge_l": rouge_l_f1,
    "token_f1": token_f1_tokens,
}


class LexicalScorer:
    """Symmetric lexical similarity (ROUGE-L or token F1) of normalised answers.

    ``metric``: ``"rouge_l"`` (LCS F-measure, order-aware) or ``"token_f1"``
    (bag of tokens). ``question_mode``: ``"strip"`` removes question echo from
    both answers first (see :func:`semcascade.text.strip_question_echo`),
    ``"ignore"`` compares the answers as given.
    """

    name: str = "lexical"
    kind: ScorerKind = "similarity"

    def __init__(self, metric: LexicalMetric = "rouge_l", question_mode: LexicalQuestionMode = "strip") -> None:
        if metric not in _METRICS:
            raise ScorerError(f"lexical scorer: unknown metric {metric!r}; use one of {sorted(_METRICS)}")
        if question_mode not in get_args(LexicalQuestionMode):
            raise ScorerError(
                f"lexical scorer: unknown question_mode {question_mode!r}; "
                f"use one of {list(get_args(LexicalQuestionMode))}"
            )
        self.metric: LexicalMetric = metric
        self.question_mode: LexicalQuestionMode = question_mode
        self._fn = _METRICS[metric]

    def __repr__(self) -> str:
        return f"LexicalScorer(metric={self.metric!r}, question_mode={self.question_mode!r})"

    def _tokens(self, text: str, question: str) -> list[str]:
        if self.question_mode == "strip":
            stripped = strip_question_echo(text, question)
            return stripped.split() if stripped else []
        return answer_tokens(text)

    def similarity(self, question: str, a: str, b: str) -> float:
        """The similarity of one pair, synchronously."""
        return self._fn(self._tokens(a, question), self._tokens(b, question))

    def _judge_sync(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        cache: dict[str, list[str]] = {}

        def toks(text: str) -> list[str]:
            if text not in cache:
                cache[text] = self._tokens(text, question)
            return cache[text]

        out = []
        for a, b in pairs:
            sim = min(1.0, max(0.0, self._fn(toks(a), toks(b))))
            out.append(PairJudgement(forward=sim, backward=sim, contradiction=None))
        return out

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        pairs = list(pairs)
        # Short answers are scored inline (microseconds); long texts go to a thread.
        work = sum(len(a) * len(b) for a, b in pairs) // 25  # ~chars per token squared
        if work > _INLINE_WORK_LIMIT:
            return await asyncio.to_thread(self._judge_sync, question, pairs)
        return self._judge_sync(question, pairs)
