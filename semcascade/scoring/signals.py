"""Deferral signals: the one registry of what a tier can decide on.

A signal turns what a tier produced (its :class:`~semcascade.confidence.TierEvidence`,
the consensus of its samples under each agreement scorer, the scores of other
signals) into a decision score in [0, 1] and the index of the answer the tier
would return. The live cascade (:mod:`semcascade.step`), the evaluation
harness (collecting recorded runs), the replay and the calibration all look
signals up here by name, so a signal means the same thing everywhere.

Kinds, as in uqlm: ``black-box`` (agreement among samples under a scorer),
``white-box`` (token probabilities), ``ensemble`` (a fitted combination, or
a mean of other signals), ``baseline`` (random: no information).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from semcascade.aggregation import Consensus
from semcascade.confidence import ConfidenceModel, TierEvidence
from semcascade.errors import ConfigError
from semcascade.registry import Registry

__all__ = [
    "AGREEMENT",
    "SIGNALS",
    "Signal",
    "SignalContext",
    "SignalKind",
    "SignalValue",
    "agreement_signal_for",
    "available_signals",
    "get_signal",
    "register_signal",
    "resolve_signal",
]

SignalKind = Literal["black-box", "white-box", "ensemble", "baseline"]

#: the alias a tier uses for "agreement under the config's own scorer"
AGREEMENT = "agreement"


@dataclass(frozen=True)
class SignalValue:
    """A tier's decision score under one signal (``None``: no signal, e.g. one sample) and its answer."""

    score: float | None
    representative: int


@dataclass
class SignalContext:
    """Everything a signal may read about one tier's output for one request."""

    evidence: TierEvidence
    #: agreement-signal name (``embedding``, ``lexical``, ``nli`` ...) -> the consensus under its scorer
    consensus: Mapping[str, Consensus] = field(default_factory=dict)
    #: scores of signals computed before this one (for ``ensemble`` signals)
    scores: Mapping[str, float | None] = field(default_factory=dict)
    #: the tier's fitted confidence model, for the ``confidence`` signal
    confidence_model: ConfidenceModel | None = None
    #: the greedy (temperature-0) sample's index, when one was drawn
    greedy_index: int | None = None
    rng: random.Random | None = None


@runtime_checkable
class Signal(Protocol):
    """One deferral signal."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> SignalKind: ...

    @property
    def requires(self) -> tuple[str, ...]:
        """Signals this one needs computed first (their consensus or their scores)."""
        ...

    @property
    def scorers(self) -> tuple[str, ...]:
        """For black-box signals: the scorer names whose agreement this signal is."""
        ...

    def compute(self, ctx: SignalContext) -> SignalValue: ...


SIGNALS: Registry[Signal] = Registry("signal", ConfigError)


def register_signal(name: str) -> Callable[[Callable[..., Signal]], Callable[..., Signal]]:
    return SIGNALS.register(name)


def available_signals() -> list[str]:
    return SIGNALS.names()


_INSTANCES: dict[str, Signal] = {}


def get_signal(name: str) -> Signal:
    """The signal registered under ``name`` (a :class:`ConfigError` listing the known ones otherwise)."""
    if name not in _INSTANCES:
        _INSTANCES[name] = SIGNALS.create(name)
    return _INSTANCES[name]


def agreement_signal_for(scorer: str) -> str:
    """The black-box signal that is agreement under the scorer registered as ``scorer``."""
    for name in SIGNALS.names():
        sig = get_signal(name)
        if sig.kind == "black-box" and scorer in sig.scorers:
            return name
    return scorer  # a scorer registered by a user: its agreement signal is named after it


def resolve_signal(name: str, scorer: str) -> str:
    """``agreement`` -> the config scorer's agreement signal; any other name unchanged."""
    return agreement_signal_for(scorer) if name == AGREEMENT else name


def _or_minus_inf(x: float | None) -> float:
    return -math.inf if x is None else x


def _rep(ctx: SignalContext) -> int:
    return ctx.greedy_index if ctx.greedy_index is not None else 0


# --------------------------------------------------------------------------- black-box


@dataclass(frozen=True)
class AgreementSignal:
    """Agreement of the tier's samples under a scorer: the consensus score; the answer is its representative."""

    name: str
    scorers: tuple[str, ...]
    kind: SignalKind = "black-box"
    requires: tuple[str, ...] = ()

    def compute(self, ctx: SignalContext) -> SignalValue:
        cons = ctx.consensus.get(self.name)
        if cons is None:
            if ctx.evidence.n < 2:
                return SignalValue(None, 0)
            raise ConfigError(f"signal {self.name!r}: no consensus was computed under its scorer")
        return SignalValue(cons.score, cons.representative)


for _name, _scorers in (
    ("embedding", ("embedding",)),
    ("lexical", ("lexical",)),
    ("nli", ("llm_judge", "cross_encoder")),
    ("numeric", ("numeric",)),
):
    SIGNALS.register(_name)(lambda _n=_name, _s=_scorers: AgreementSignal(_n, _s))


# --------------------------------------------------------------------------- white-box


@dataclass(frozen=True)
class TokenProbSignal:
    """P(T): exp of the greedy answer's (else the first sample's) mean / lowest / first token log-probability."""

    name: str
    statistic: Literal["mean", "min", "first"]
    kind: SignalKind = "white-box"
    requires: tuple[str, ...] = ()
    scorers: tuple[str, ...] = ()

    def compute(self, ctx: SignalContext) -> SignalValue:
        ev, i = ctx.evidence, _rep(ctx)
        values = {"mean": ev.mean_logprobs, "min": ev.min_logprobs, "first": ev.first_logprobs}[self.statistic]
        v = values[i] if i < len(values) else None
        return SignalValue(None if v is None else math.exp(v), i)


for _stat in ("mean", "min", "first"):
    SIGNALS.register(f"p_{_stat}")(lambda _s=_stat: TokenProbSignal(f"p_{_s}", _s))


@register_signal("logprob")
@dataclass(frozen=True)
class SampleLogprobSignal:
    """Geometric-mean token probability over all samples (k >= 2); the answer is the most probable sample."""

    name: str = "logprob"
    kind: SignalKind = "white-box"
    requires: tuple[str, ...] = ()
    scorers: tuple[str, ...] = ()

    def compute(self, ctx: SignalContext) -> SignalValue:
        lps = ctx.evidence.mean_logprobs
        known = [x for x in lps if x is not None]
        best = max(range(len(lps)), key=lambda i: _or_minus_inf(lps[i])) if lps else 0
        score = math.exp(sum(known) / len(known)) if known and ctx.evidence.n > 1 else None
        return SignalValue(score, best)


# --------------------------------------------------------------------------- ensemble and baseline


@register_signal("nli+embedding")
@dataclass(frozen=True)
class MeanSignal:
    """Mean of other signals' scores (``None`` unless all have one); the answer is the first part's."""

    name: str = "nli+embedding"
    requires: tuple[str, ...] = ("nli", "embedding")
    kind: SignalKind = "ensemble"
    scorers: tuple[str, ...] = ()

    def compute(self, ctx: SignalContext) -> SignalValue:
        parts = [ctx.scores.get(p) for p in self.requires]
        known = [p for p in parts if p is not None]
        cons = ctx.consensus.get(self.requires[0])
        rep = cons.representative if cons is not None else 0
        return SignalValue(sum(known) / len(known) if len(known) == len(parts) else None, rep)


@register_signal("confidence")
@dataclass(frozen=True)
class ConfidenceSignal:
    """The tier's fitted confidence model: P(answer right) from agreement, P(T), grounding and form."""

    name: str = "confidence"
    kind: SignalKind = "ensemble"
    requires: tuple[str, ...] = ()
    scorers: tuple[str, ...] = ()

    def compute(self, ctx: SignalContext) -> SignalValue:
        model, ev = ctx.confidence_model, ctx.evidence
        if model is None:
            return SignalValue(None, ev.representative)
        if "agreement" in model.features and ev.agreement is None:
            return SignalValue(None, ev.representative)
        return SignalValue(model.confidence(ev), ev.representative)


@register_signal("random")
@dataclass(frozen=True)
class RandomSignal:
    """Uniform noise: the no-information baseline (needs no samples either)."""

    name: str = "random"
    kind: SignalKind = "baseline"
    requires: tuple[str, ...] = ()
    scorers: tuple[str, ...] = ()

    def compute(self, ctx: SignalContext) -> SignalValue:
        rng = ctx.rng or random.Random(0)
        return SignalValue(rng.random(), 0)
