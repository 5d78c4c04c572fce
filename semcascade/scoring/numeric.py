"""Numeric agreement: two math answers agree exactly when they end on the same number.

Each answer's final number is read with :func:`semcascade.numeric.extract_number`
(``#### N``, ``Answer: N``, a program-of-thought expression evaluated safely,
``= N``, the last number). A pair scores 1.0 when both numbers are equal
within a relative tolerance, 0.0 when they differ and 0.0 when either answer
has no number, so a tier's meaning clusters are the groups of samples with the
same answer and the consensus (``aggregation: largest_cluster``) is a
self-consistency majority vote. The wording around the numbers never matters:
``"The answer is 12."`` and ``"12"`` agree, ``"12"`` and ``"13"`` do not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from semcascade.errors import ScorerError
from semcascade.numeric import DEFAULT_REL_TOL, extract_number, numbers_equal
from semcascade.scoring.base import PairJudgement, ScorerKind

__all__ = ["NumericScorer"]


class NumericScorer:
    """1.0 for a pair of answers with the same final number (within ``rel_tol``), else 0.0.

    ``contradiction`` is 1.0 when both answers have a number and they differ,
    0.0 when they are equal, and ``None`` when either has no number (no
    evidence either way; it still does not count as agreement).
    """

    name: str = "numeric"
    kind: ScorerKind = "similarity"

    def __init__(self, rel_tol: float = DEFAULT_REL_TOL) -> None:
        if isinstance(rel_tol, bool) or not isinstance(rel_tol, int | float) or not 0 <= rel_tol < 1:
            raise ScorerError(f"numeric scorer: rel_tol must be a number in [0, 1), got {rel_tol!r}")
        self.rel_tol = float(rel_tol)

    def __repr__(self) -> str:
        return f"NumericScorer(rel_tol={self.rel_tol!r})"

    def number(self, answer: str) -> float | None:
        """The final number of one answer, or ``None``."""
        value = extract_number(answer)
        return value if value is not None and math.isfinite(value) else None

    def agree(self, a: str, b: str) -> bool:
        """Whether two answers end on the same number (both must have one)."""
        x, y = self.number(a), self.number(b)
        return x is not None and y is not None and numbers_equal(x, y, self.rel_tol)

    def _judge_sync(self, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        cache: dict[str, float | None] = {}

        def num(text: str) -> float | None:
            if text not in cache:
                cache[text] = self.number(text)
            return cache[text]

        out = []
        for a, b in pairs:
            x, y = num(a), num(b)
            if x is None or y is None:
                out.append(PairJudgement(forward=0.0, backward=0.0, contradiction=None))
                continue
            same = numbers_equal(x, y, self.rel_tol)
            score = 1.0 if same else 0.0
            out.append(PairJudgement(forward=score, backward=score, contradiction=1.0 - score))
        return out

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        # Regular expressions and a bounded AST walk over short answers: microseconds, run inline.
        return self._judge_sync(list(pairs))
