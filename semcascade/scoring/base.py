"""The agreement-scorer seam: one Protocol every scorer backend implements.

A scorer judges *pairs* of answers to the same question. Similarity scorers
(embedding, lexical) return a symmetric similarity in [0, 1] as both
directions; NLI scorers return the probability that each answer entails the
other and, where the backend knows it, the probability of contradiction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from semcascade.errors import ScorerError

__all__ = ["AgreementScorer", "PairJudgement", "ScorerKind", "check_choice", "check_positive_int"]

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


def check_choice(scorer: str, option: str, value: object, literal: Any) -> None:
    """Raise :class:`ScorerError` unless ``value`` is one of the ``Literal`` type's values."""
    allowed = list(get_args(literal))
    if value not in allowed:
        raise ScorerError(f"{scorer} scorer: unknown {option} {value!r}; use one of {allowed}")


def check_positive_int(scorer: str, option: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ScorerError(f"{scorer} scorer: {option} must be a positive integer, got {value!r}")
