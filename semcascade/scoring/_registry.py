"""Name -> factory registry of agreement scorers (no if/elif chains)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from semcascade.errors import ScorerError
from semcascade.scoring.base import AgreementScorer

__all__ = ["available_scorers", "create_scorer", "register_scorer"]

ScorerFactory = Callable[..., AgreementScorer]
_FACTORIES: dict[str, ScorerFactory] = {}


def register_scorer(name: str) -> Callable[[ScorerFactory], ScorerFactory]:
    """Class/function decorator: make ``name`` constructible by :func:`create_scorer`."""

    def deco(factory: ScorerFactory) -> ScorerFactory:
        _FACTORIES[name] = factory
        return factory

    return deco


def available_scorers() -> list[str]:
    _load_builtins()
    return sorted(_FACTORIES)


def create_scorer(name: str, **options: Any) -> AgreementScorer:
    """Build the scorer registered under ``name`` with ``options`` as keyword arguments."""
    _load_builtins()
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ScorerError(f"unknown scorer {name!r}; choose one of: {', '.join(sorted(_FACTORIES))}") from None
    try:
        return factory(**options)
    except TypeError as exc:
        raise ScorerError(f"bad options for scorer {name!r}: {exc}; see the config reference") from None


def _load_builtins() -> None:
    # Importing the modules runs their @register_scorer decorators. Heavy
    # dependencies (torch, onnxruntime) are imported lazily inside each scorer.
    from semcascade.scoring import cross_encoder, embedding, lexical, llm_judge  # noqa: F401
