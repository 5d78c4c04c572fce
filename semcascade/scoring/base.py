"""The agreement-scorer seam: one Protocol every scorer backend implements.

A scorer judges *pairs* of answers to the same question. Similarity scorers
(embedding, lexical) return a symmetric similarity in [0, 1] as both
directions; NLI scorers return the probability that each answer entails the
other and, where the backend knows it, the probability of contradiction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = ["AgreementScorer", "PairJudgement", "ScorerKind"]

ScorerKind = Literal["similarity", "nli"]


@dataclass(frozen=True, slots=True)
class PairJudgement:
    """How two answers ``a`` and ``b`` to one question relate.

    ``forward``: P(a entails b), or the similarity for similarity scorers.
    ``backward``: P(b entails a), or the same similarity.
    ``contradiction``: P(a and b contradict), ``None`` where unknown.
    """

    forward: float
    backward: float
    contradiction: float | None = None

    @property
    def agreement(self) -> float:
        """Symmetric agreement in [0, 1]: the mean of both directions."""
        return (self.forward + self.backward) / 2.0


@runtime_checkable
class AgreementScorer(Protocol):
    """Judges whether pairs of answers to ``question`` mean the same thing."""

    #: registry name of the scorer (e.g. ``"embedding"``)
    name: str
    #: ``"similarity"`` or ``"nli"``
    kind: ScorerKind

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        """Return one judgement per pair, in order. Must not block the event loop."""
        ...
