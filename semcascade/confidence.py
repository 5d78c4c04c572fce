"""Deferral confidence: P(this tier's answer is right) from black-box evidence.

Agreement among samples is one piece of evidence; the answer's token
probabilities (P(T)), how much of it is grounded in the prompt, and its form
are others. A :class:`ConfidenceModel` turns a tier's :class:`TierEvidence`
into one number in [0, 1] that the deferral policy compares with the tier's
threshold. The shipped model is a logistic regression over named features
(:mod:`semcascade.logistic`, the same model and artifact format as the
router's), fitted on a calibration split and stored as a small, versioned JSON
artifact (no pickle): :class:`LogisticConfidence`.

Features are looked up by name in :data:`FEATURES`; a feature that needs
evidence a provider did not return (token log-probabilities) raises
:class:`~semcascade.errors.ConfidenceError` instead of silently reading 0.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from semcascade import logistic
from semcascade.errors import ConfidenceError
from semcascade.logistic import ARTIFACT_FORMAT as LOGISTIC_FORMAT
from semcascade.logistic import ARTIFACT_VERSION, LogisticModel, artifact_json, read_artifact, save_artifact
from semcascade.text import answer_tokens

__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_KIND",
    "LEGACY_FORMAT",
    "EMPTY_ANSWER_LOGPROB",
    "BUILTIN_PREFIX",
    "FEATURES",
    "ConfidenceModel",
    "LogisticConfidence",
    "TierEvidence",
    "feature_vector",
    "fit_logistic",
    "load_confidence_model",
]

#: the artifact format this code writes (:mod:`semcascade.logistic`; it also reads ``LEGACY_FORMAT``)
ARTIFACT_FORMAT = LOGISTIC_FORMAT
#: ``builtin:NAME`` loads ``semcascade/artifacts/NAME.json``
BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True)
class TierEvidence:
    """What one tier produced for one request, as the confidence features see it."""

    #: the compared answer span of every sample
    answers: Sequence[str]
    #: index of the answer the tier would return
    representative: int
    #: the agreement score of the tier's scorer (None with one sample)
    agreement: float | None
    #: size of the largest meaning cluster
    largest_cluster: int
    #: per sample: mean / lowest / first token log-probability (None without logprobs)
    mean_logprobs: Sequence[float | None]
    min_logprobs: Sequence[float | None]
    first_logprobs: Sequence[float | None]
    #: per sample: completion tokens
    tokens: Sequence[int]
    #: the question and the whole prompt text (context included) the tier saw
    question: str = ""
    prompt: str = ""
    tier: str = ""

    @property
    def n(self) -> int:
        return len(self.answers)


Feature = Callable[[TierEvidence], float]
FEATURES: dict[str, Feature] = {}


def _feature(name: str) -> Callable[[Feature], Feature]:
    def deco(fn: Feature) -> Feature:
        FEATURES[name] = fn
        return fn

    return deco


#: the log-probability features of an empty answer (no tokens, so none to read): as unlikely as it gets
EMPTY_ANSWER_LOGPROB = -20.0


def _rep_logprob(ev: TierEvidence, values: Sequence[float | None], what: str) -> float:
    i = ev.representative
    v = values[i] if i < len(values) else None
    if v is None and i < ev.n and (not ev.answers[i].strip() or (i < len(ev.tokens) and ev.tokens[i] == 0)):
        return EMPTY_ANSWER_LOGPROB  # nothing was generated: not a provider without logprobs
    if v is None:
        raise ConfidenceError(
            f"tier {ev.tier or '?'}: the confidence feature {what!r} needs token log-probabilities, but the "
            "provider returned none; set `logprobs: true` on the tier (if the API supports it) or use a "
            "confidence model without logprob features"
        )
    return float(v)


@_feature("agreement")
def _agreement(ev: TierEvidence) -> float:
    if ev.agreement is None:
        raise ConfidenceError(
            f"tier {ev.tier or '?'}: the 'agreement' feature needs k >= 2 samples; raise k or drop the feature"
        )
    return float(ev.agreement)


@_feature("cluster_share")
def _cluster_share(ev: TierEvidence) -> float:
    return ev.largest_cluster / ev.n if ev.n else 0.0


@_feature("lp_mean")
def _lp_mean(ev: TierEvidence) -> float:
    return _rep_logprob(ev, ev.mean_logprobs, "lp_mean")


@_feature("lp_min")
def _lp_min(ev: TierEvidence) -> float:
    return _rep_logprob(ev, ev.min_logprobs, "lp_min")


@_feature("lp_first")
def _lp_first(ev: TierEvidence) -> float:
    return _rep_logprob(ev, ev.first_logprobs, "lp_first")


@_feature("grounding")
def _grounding(ev: TierEvidence) -> float:
    """Share of the answer's words (those not copied from the question) that occur in the prompt."""
    toks = answer_tokens(ev.answers[ev.representative]) if ev.n else []
    asked = set(answer_tokens(ev.question))
    content = [t for t in toks if t not in asked] or toks
    if not content:
        return 0.0
    seen = set(answer_tokens(ev.prompt))
    return sum(t in seen for t in content) / len(content)


@_feature("yes_no")
def _yes_no(ev: TierEvidence) -> float:
    toks = answer_tokens(ev.answers[ev.representative]) if ev.n else []
    return 1.0 if toks[:1] in (["yes"], ["no"]) else 0.0


@_feature("answer_tokens")
def _answer_len(ev: TierEvidence) -> float:
    return math.log1p(ev.tokens[ev.representative]) if ev.n else 0.0


def feature_vector(ev: TierEvidence, names: Sequence[str]) -> list[float]:
    """The named features of ``ev``, in order."""
    out = []
    for name in names:
        try:
            fn = FEATURES[name]
        except KeyError:
            raise ConfidenceError(f"unknown confidence feature {name!r}; choose from {sorted(FEATURES)}") from None
        out.append(fn(ev))
    return out


@runtime_checkable
class ConfidenceModel(Protocol):
    """Maps a tier's evidence to P(its answer is right)."""

    @property
    def name(self) -> str: ...

    @property
    def features(self) -> tuple[str, ...]: ...

    def confidence(self, evidence: TierEvidence) -> float: ...


#: ``kind`` of a confidence model's artifact (:mod:`semcascade.logistic`)
ARTIFACT_KIND = "confidence"
#: the layout before the shared logistic artifact; still read (migrated on load)
LEGACY_FORMAT = "semcascade.confidence/1"


@dataclass(frozen=True)
class LogisticConfidence:
    """A :class:`~semcascade.logistic.LogisticModel` over named confidence features, with its name, version and
    provenance, stored as a versioned JSON artifact (:mod:`semcascade.logistic`)."""

    name: str
    version: str
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    #: where the weights came from (dataset, split, n, tier, config) and held-out metrics
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self.model  # noqa: B018  (validates the weights)
        except ValueError as exc:
            raise ConfidenceError(f"confidence model {self.name!r}: {exc}") from None
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ConfidenceError(f"confidence model {self.name!r} uses unknown features {unknown}")

    @cached_property
    def model(self) -> LogisticModel:
        """The logistic model itself."""
        return LogisticModel(self.features, self.mean, self.scale, self.weights, self.bias)

    def score(self, x: Sequence[float]) -> float:
        return self.model.score(x)

    def confidence(self, evidence: TierEvidence) -> float:
        return self.score(feature_vector(evidence, self.features))

    @property
    def needs_logprobs(self) -> bool:
        return any(f.startswith("lp_") for f in self.features)

    def to_json(self) -> dict[str, Any]:
        return artifact_json(
            ARTIFACT_KIND,
            [self.model],
            names=[self.name],
            meta={"name": self.name, "version": self.version, "provenance": self.provenance},
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the artifact to ``path`` atomically (creating its folder)."""
        try:
            return save_artifact(path, self.to_json())
        except (OSError, ValueError) as exc:
            raise ConfidenceError(f"cannot write confidence model {str(path)!r}: {exc}; check the path") from None

    @classmethod
    def from_json(cls, data: Any, *, source: str = "<artifact>") -> LogisticConfidence:
        fix = "fit one with `semcascade fit-confidence`"
        if not isinstance(data, dict) or data.get("format") not in (ARTIFACT_FORMAT, LEGACY_FORMAT):
            raise ConfidenceError(
                f"{source}: not a semcascade confidence artifact (expected format {ARTIFACT_FORMAT!r}); {fix}"
            )
        art = read_artifact(
            data, kind=ARTIFACT_KIND, error=ConfidenceError, what=source, legacy={LEGACY_FORMAT: _from_v1}
        )
        if len(art.models) != 1:
            raise ConfidenceError(f"{source}: a confidence artifact holds one model, this one {len(art.models)}; refit")
        m, meta = art.models[0], art.meta
        try:
            return cls(
                name=str(meta["name"]),
                version=str(meta["version"]),
                features=m.features,
                mean=m.mean,
                scale=m.scale,
                weights=m.weights,
                bias=m.bias,
                provenance=dict(meta.get("provenance") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfidenceError(f"{source}: malformed confidence artifact ({exc!r}); refit it") from None

    @property
    def digest(self) -> str:
        """Short content hash: names the exact weights in traces and reports."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:12]


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A ``semcascade.confidence/1`` artifact (one flat object) in the shared layout."""
    model = {k: data[k] for k in ("features", "mean", "scale", "weights", "bias")}
    return {
        "format": ARTIFACT_FORMAT,
        "version": ARTIFACT_VERSION,
        "kind": ARTIFACT_KIND,
        "meta": {"name": data["name"], "version": data["version"], "provenance": data.get("provenance") or {}},
        "models": [{"name": data["name"], **model, "meta": {}}],
    }


def load_confidence_model(spec: str) -> LogisticConfidence:
    """``builtin:NAME`` (shipped in ``semcascade/artifacts``) or a path to an artifact JSON file.

    Artifacts in the format before :mod:`semcascade.logistic` (``semcascade.confidence/1``) load too.
    """
    if spec.startswith(BUILTIN_PREFIX):
        name = spec[len(BUILTIN_PREFIX) :]
        ref = resources.files("semcascade") / "artifacts" / f"{name}.json"
        if not ref.is_file():
            shipped = sorted(
                p.name.removesuffix(".json")
                for p in (resources.files("semcascade") / "artifacts").iterdir()
                if p.name.endswith(".json")
            )
            raise ConfidenceError(f"no built-in confidence model {name!r}; shipped: {shipped}")
        return LogisticConfidence.from_json(json.loads(ref.read_text(encoding="utf-8")), source=spec)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfidenceError(f"confidence model file not found: {spec}; fit one with `semcascade fit-confidence`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfidenceError(f"{spec}: not valid JSON ({exc.__class__.__name__}); refit it") from None
    return LogisticConfidence.from_json(data, source=spec)


def fit_logistic(
    x: ArrayLike,
    y: ArrayLike,
    features: Sequence[str],
    *,
    name: str,
    version: str,
    l2: float = 1.0,
    provenance: dict[str, Any] | None = None,
) -> LogisticConfidence:
    """Fit a confidence model with :func:`semcascade.logistic.fit` (L2-regularised, deterministic, numpy only).

    ``l2`` penalises the standardised weights (not the bias), like
    scikit-learn's ``C = 1 / l2``.
    """
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.ndim != 2 or xa.shape[0] != ya.shape[0] or xa.shape[1] != len(features):
        raise ConfidenceError("fit_logistic: x must be (n, len(features)) and y (n,)")
    if xa.shape[0] < 10 or ya.min() == ya.max():
        raise ConfidenceError("fit_logistic needs at least 10 examples with both outcomes present")
    try:
        m = logistic.fit(xa, ya, features, l2=l2)
    except ValueError as exc:
        raise ConfidenceError(f"fit_logistic: {exc}") from None
    return LogisticConfidence(
        name=name,
        version=version,
        features=m.features,
        mean=m.mean,
        scale=m.scale,
        weights=m.weights,
        bias=m.bias,
        provenance=dict(provenance or {}),
    )
