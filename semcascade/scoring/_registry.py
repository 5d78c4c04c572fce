"""Name -> factory registry of agreement scorers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from semcascade.errors import ScorerError
from semcascade.registry import Registry
from semcascade.scoring.base import AgreementScorer

__all__ = ["SCORERS", "available_scorers", "create_scorer", "register_scorer"]


def _load_builtins() -> None:
    # Importing the modules runs their @register_scorer decorators. Heavy
    # dependencies (torch, onnxruntime) are imported lazily inside each scorer.
    from semcascade.scoring import cross_encoder, embedding, lexical, llm_judge, numeric  # noqa: F401


SCORERS: Registry[AgreementScorer] = Registry("scorer", ScorerError, loader=_load_builtins)


def register_scorer(name: str) -> Callable[[Callable[..., AgreementScorer]], Callable[..., AgreementScorer]]:
    """Class/function decorator: make ``name`` constructible by :func:`create_scorer`."""
    return SCORERS.register(name)


def available_scorers() -> list[str]:
    return SCORERS.names()


def create_scorer(name: str, **options: Any) -> AgreementScorer:
    """Build the scorer registered under ``name`` with ``options`` as keyword arguments."""
    return SCORERS.create(name, **options)
