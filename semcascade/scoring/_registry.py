"""Name -> factory registry of agreement scorers.

The built-in scorers are listed by module path and imported on first use
(their heavy dependencies, torch and onnxruntime, only when a scorer is built).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from semcascade.errors import ScorerError
from semcascade.registry import Registry
from semcascade.scoring.base import AgreementScorer

__all__ = ["BUILTIN_SCORERS", "SCORERS", "available_scorers", "create_scorer", "register_scorer"]

#: name -> "module:class" of the scorers semcascade ships
BUILTIN_SCORERS = {
    "cross_encoder": "semcascade.scoring.cross_encoder:CrossEncoderNLIScorer",
    "embedding": "semcascade.scoring.embedding:EmbeddingScorer",
    "lexical": "semcascade.scoring.lexical:LexicalScorer",
    "llm_judge": "semcascade.scoring.llm_judge:LLMJudgeNLIScorer",
    "numeric": "semcascade.scoring.numeric:NumericScorer",
}

SCORERS: Registry[AgreementScorer] = Registry("scorer", ScorerError, builtins=BUILTIN_SCORERS)


def register_scorer(name: str) -> Callable[[Callable[..., AgreementScorer]], Callable[..., AgreementScorer]]:
    """Class/function decorator: make ``name`` constructible by :func:`create_scorer`."""
    return SCORERS.register(name)


def available_scorers() -> list[str]:
    return SCORERS.names()


def create_scorer(name: str, **options: Any) -> AgreementScorer:
    """Build the scorer registered under ``name`` with ``options`` as keyword arguments."""
    return SCORERS.create(name, **options)
