"""One logistic model for every fitted predictor: fit, predict, and one versioned JSON artifact.

The deferral-confidence models (:mod:`semcascade.confidence`) and the P(IK)
router (:mod:`semcascade.routing.pik`) are both logistic regressions over
standardised features:

    P(y = 1 | x) = sigmoid(((x - mean) / scale) . weights + bias)

:func:`fit` finds the L2-regularised maximum-likelihood weights by damped
Newton's method (deterministic, numpy only; ``l2`` penalises the standardised
weights, not the bias, so ``l2 = 1 / C`` of scikit-learn's
``LogisticRegression``), optionally with balanced class weights.

Both are stored in one artifact format (JSON, no pickle)::

    {"format": "semcascade.logistic", "version": 2, "kind": "confidence" | "router",
     "created_at": ... (optional), "meta": {...what the kind needs...},
     "models": [{"name": ..., "features": [...], "mean": [...], "scale": [...],
                 "weights": [...], "bias": ..., "meta": {...}}, ...]}

:func:`save_artifact` writes atomically (a temporary file in the same folder,
flushed to disk, then ``os.replace``): a reader never sees half a file, and a
failed write leaves the old file in place. :func:`read_artifact` checks the
format, version and kind, and migrates the formats this one replaced (the
consumer passes its migration of ``semcascade.confidence/1`` or
``semcascade.router`` version 1), so old artifacts keep loading.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike

from semcascade.errors import SemcascadeError

__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_VERSION",
    "MIN_SCALE",
    "Artifact",
    "LogisticModel",
    "artifact_json",
    "atomic_write_json",
    "fit",
    "read_artifact",
    "save_artifact",
    "sigmoid",
]

ARTIFACT_FORMAT = "semcascade.logistic"
#: version 1 were the two formats this one replaced (``semcascade.confidence/1``, ``semcascade.router`` v1)
ARTIFACT_VERSION = 2
#: a feature whose standard deviation is below this is constant: it is not scaled (scale 1)
MIN_SCALE = 1e-6
#: |z| beyond this saturates the sigmoid in float64 anyway; clipping keeps exp() finite
_Z_CLIP = 60.0

FloatArray = npt.NDArray[np.float64]
#: a consumer's reader of a format this one replaced: old JSON -> this format's JSON
Migration = Callable[[dict[str, Any]], dict[str, Any]]


def sigmoid(z: ArrayLike) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(z, dtype=np.float64), -_Z_CLIP, _Z_CLIP)))
    return out


def _finite(values: Sequence[float]) -> bool:
    return all(math.isfinite(v) for v in values)


@dataclass(frozen=True)
class LogisticModel:
    """``P(y=1 | x) = sigmoid(((x - mean) / scale) . weights + bias)`` over named features."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    def __post_init__(self) -> None:
        k = len(self.features)
        if k == 0 or not (len(self.mean) == len(self.scale) == len(self.weights) == k):
            raise ValueError(
                f"features, mean, scale and weights differ in length ({k} features, {len(self.mean)} means, "
                f"{len(self.scale)} scales, {len(self.weights)} weights)"
            )
        if not (_finite(self.mean) and _finite(self.scale) and _finite(self.weights) and math.isfinite(self.bias)):
            raise ValueError("the weights, bias, mean or scale hold non-finite values")
        if any(s <= 0 for s in self.scale):
            raise ValueError("every scale must be > 0")

    def decision(self, x: ArrayLike) -> FloatArray:
        """The log-odds of each row of ``x`` (shape ``(n, k)``; one row of ``k`` gives a scalar array)."""
        xa = np.asarray(x, dtype=np.float64)
        z: FloatArray = ((xa - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.weights) + self.bias
        return z

    def predict(self, x: ArrayLike) -> FloatArray:
        """P(y=1) of each row of ``x``."""
        return sigmoid(self.decision(x))

    def score(self, row: Sequence[float]) -> float:
        """P(y=1) of one feature vector."""
        return float(self.predict(row))

    def to_json(self, name: str = "", meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
            "bias": self.bias,
            "meta": dict(meta or {}),
        }

    @classmethod
    def from_json(cls, data: Any) -> LogisticModel:
        """The model of one ``models`` entry; ValueError/KeyError/TypeError when it is malformed."""
        if not isinstance(data, dict):
            raise TypeError(f"a model must be an object, not {type(data).__name__}")
        return cls(
            features=tuple(str(f) for f in data["features"]),
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
            weights=tuple(float(v) for v in data["weights"]),
            bias=float(data["bias"]),
        )


def _objective(z: FloatArray, w: FloatArray, y: FloatArray, sw: FloatArray, reg: FloatArray) -> float:
    """Weighted negative log-likelihood plus the L2 penalty (numerically stable)."""
    s = z @ w
    return float(np.sum(sw * (np.logaddexp(0.0, s) - y * s)) + 0.5 * np.sum(reg * w * w))


def fit(
    x: ArrayLike,
    y: ArrayLike,
    features: Sequence[str],
    *,
    l2: float = 1.0,
    balanced: bool = False,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> LogisticModel:
    """Fit a logistic model (see the module doc); ValueError unless x is (n, len(features)) with both classes in y.

    ``balanced`` weights each class by ``n / (2 * n_class)`` (scikit-learn's
    ``class_weight="balanced"``). Features are standardised by their mean and
    (population) standard deviation first; the model keeps both.
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.ndim != 2 or ya.ndim != 1 or xa.shape[0] != ya.shape[0] or xa.shape[1] != len(features):
        raise ValueError(f"x must be (n, {len(features)}) and y (n,); got {xa.shape} and {ya.shape}")
    if xa.shape[0] == 0 or ya.min() == ya.max():
        raise ValueError("fitting needs examples of both outcomes")
    if not (np.all(np.isfinite(xa)) and l2 >= 0 and math.isfinite(l2)):
        raise ValueError("x must be finite and l2 a finite number >= 0")
    mean = xa.mean(axis=0)
    scale = xa.std(axis=0)
    scale[scale < MIN_SCALE] = 1.0
    z = np.hstack([np.ones((xa.shape[0], 1)), (xa - mean) / scale])
    if balanced:
        n, pos = len(ya), float(ya.sum())
        sw = np.where(ya > 0.5, n / (2.0 * pos), n / (2.0 * (n - pos)))
    else:
        sw = np.ones(len(ya))
    reg = np.full(z.shape[1], float(l2))
    reg[0] = 0.0
    w = np.zeros(z.shape[1])
    current = _objective(z, w, ya, sw, reg)
    for _ in range(max_iter):
        p = sigmoid(z @ w)
        grad = z.T @ (sw * (p - ya)) + reg * w
        hess = (z * (sw * p * (1.0 - p))[:, None]).T @ z + np.diag(reg) + 1e-9 * np.eye(z.shape[1])
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:  # damped: halve the Newton step until the objective does not rise
            trial = w - t * step
            value = _objective(z, trial, ya, sw, reg)
            if value <= current + 1e-12 * abs(current) or t < 1e-8:
                break
            t /= 2.0
        w, current = trial, value
        if float(np.abs(t * step).max()) < tol:
            break
    return LogisticModel(
        features=tuple(features),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        weights=tuple(float(v) for v in w[1:]),
        bias=float(w[0]),
    )


# --------------------------------------------------------------------------- artifact


@dataclass(frozen=True)
class Artifact:
    """A read artifact: its kind, the kind's metadata, and its models with their names and metadata."""

    kind: str
    meta: dict[str, Any]
    models: tuple[LogisticModel, ...]
    names: tuple[str, ...]
    model_meta: tuple[dict[str, Any], ...] = field(default=())
    created_at: float | None = None


def artifact_json(
    kind: str,
    models: Sequence[LogisticModel],
    *,
    names: Sequence[str],
    meta: Mapping[str, Any],
    model_meta: Sequence[Mapping[str, Any]] | None = None,
    created_at: float | None = None,
) -> dict[str, Any]:
    """The JSON of an artifact of ``kind`` holding ``models`` (see the module doc)."""
    per_model = list(model_meta) if model_meta is not None else [{}] * len(models)
    out: dict[str, Any] = {"format": ARTIFACT_FORMAT, "version": ARTIFACT_VERSION, "kind": kind}
    if created_at is not None:
        out["created_at"] = created_at
    out["meta"] = dict(meta)
    out["models"] = [m.to_json(n, mm) for m, n, mm in zip(models, names, per_model, strict=True)]
    return out


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` atomically, creating its folder; OSError/ValueError on failure.

    The text goes to a temporary file in the same folder, is flushed to disk,
    then replaces ``path`` in one ``os.replace``: readers see the old file or
    the new one, never part of one, and a failed write leaves the old file.
    """
    out = Path(path)
    text = json.dumps(data, indent=1, allow_nan=False) + "\n"  # ValueError on NaN: nothing written
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def save_artifact(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write an artifact's JSON (from :func:`artifact_json`) atomically (see :func:`atomic_write_json`)."""
    return atomic_write_json(path, dict(data))


def read_artifact(
    data: Any,
    *,
    kind: str,
    error: type[SemcascadeError],
    what: str,
    legacy: Mapping[str, Migration] | None = None,
) -> Artifact:
    """Check and parse an artifact's JSON; any problem is an ``error`` (``what`` names the artifact in it).

    ``legacy`` maps the ``format`` strings of older layouts to their migration
    into this format.
    """
    if isinstance(data, dict) and legacy and data.get("format") in legacy:
        try:
            data = legacy[data["format"]](data)
        except error:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise error(f"{what}: malformed ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != ARTIFACT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise error(f"{what}: not a semcascade {kind} artifact (format {found!r}, expected {ARTIFACT_FORMAT!r})")
    if data.get("version") != ARTIFACT_VERSION:
        raise error(f"{what}: artifact version {data.get('version')!r} is not supported (this semcascade reads "
                    f"{ARTIFACT_VERSION})")  # fmt: skip
    if data.get("kind") != kind:
        raise error(f"{what}: a {data.get('kind')!r} artifact, not a {kind} artifact")
    meta, entries = data.get("meta"), data.get("models")
    if not isinstance(meta, dict) or not isinstance(entries, list):
        raise error(f"{what}: 'meta' must be an object and 'models' a list")
    models, names, per_model = [], [], []
    for i, entry in enumerate(entries):
        try:
            models.append(LogisticModel.from_json(entry))
            names.append(str(entry.get("name", "")))
            extra = entry.get("meta", {})
            if not isinstance(extra, dict):
                raise TypeError("a model's 'meta' must be an object")
            per_model.append(dict(extra))
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise error(f"{what}: model {i} is malformed ({detail})") from None
    created = data.get("created_at")
    if created is not None and not isinstance(created, int | float):
        raise error(f"{what}: 'created_at' must be a number")
    return Artifact(kind=kind, meta=dict(meta), models=tuple(models), names=tuple(names),
                    model_meta=tuple(per_model), created_at=None if created is None else float(created))  # fmt: skip
