"""Black-box P(IK): per tier, a logistic model of "this tier answers correctly" from the query alone.

Trained from a harness run's ``examples.jsonl`` (per example: ``id``,
``input``, and per tier ``sample_quality``/``greedy_quality``/``consensus``).
Splits: the examples :func:`semcascade.evaluation.splits.split_of` puts in
``test`` are held out; the rest (the calibration split) is divided, by a
seeded shuffle, into train and validation. The regularisation strength is
chosen on validation AUROC; the reported test AUROC is never used for a choice.

Each tier's model is a :class:`semcascade.logistic.LogisticModel` (fitted by
:func:`semcascade.logistic.fit` with balanced class weights); the router is
stored as that module's versioned JSON artifact (kind ``router``: weights,
standardisation, feature spec, embedding model id, training data hash,
metrics; no pickle), so it is readable, diffable and safe to load. Artifacts
of the router's earlier format (``semcascade.router`` version 1) still load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from semcascade.errors import RouterArtifactError, RouterError
from semcascade.evaluation.metrics import auroc
from semcascade.evaluation.records import examples_file
from semcascade.evaluation.splits import split_of
from semcascade.logistic import ARTIFACT_FORMAT as LOGISTIC_FORMAT
from semcascade.logistic import ARTIFACT_VERSION, MIN_SCALE, LogisticModel, artifact_json, read_artifact, save_artifact
from semcascade.logistic import fit as logistic_fit
from semcascade.routing.features import (
    CHEAP_FEATURES,
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_MAX_CHARS,
    Embedder,
    FloatArray,
    default_embedder,
    query_features,
)

__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_KIND",
    "ARTIFACT_VERSION",
    "LEGACY_FORMAT",
    "LabelKind",
    "LoggedExample",
    "PIKModel",
    "RouterArtifactError",
    "RouterError",
    "TierModel",
    "feature_names",
    "load_examples",
    "split_examples",
    "train_pik",
]

#: the artifact format written (:mod:`semcascade.logistic`, kind ``router``); ``LEGACY_FORMAT`` is still read
ARTIFACT_FORMAT = LOGISTIC_FORMAT
ARTIFACT_KIND = "router"
#: the router's own format before the shared logistic artifact (version 1); migrated on load
LEGACY_FORMAT = "semcascade.router"
LabelKind = Literal["consensus", "greedy"]
#: regularisation strengths tried; the best validation AUROC wins (ties: the stronger regularisation)
C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class LoggedExample:
    """One logged example: its id, query and whether each tier answered it correctly."""

    id: str
    input: str
    correct: tuple[bool, ...]


def _label(tier: dict[str, Any], kind: LabelKind, signal: str, min_quality: float, where: str) -> bool:
    if kind == "greedy":
        q = tier.get("greedy_quality")
    else:
        qualities = tier.get("sample_quality")
        if not isinstance(qualities, list) or not qualities:
            raise RouterError(f"{where}: 'sample_quality' is missing or empty; re-run `semcascade eval`")
        idx = (tier.get("consensus") or {}).get(signal, 0)
        if not isinstance(idx, int) or not 0 <= idx < len(qualities):
            raise RouterError(f"{where}: consensus[{signal!r}] = {idx!r} is not a sample index")
        q = qualities[idx]
    if not isinstance(q, int | float) or isinstance(q, bool) or not math.isfinite(q):
        raise RouterError(f"{where}: the {kind} quality is {q!r}, not a number; re-run `semcascade eval`")
    return float(q) >= min_quality


def resolve_examples_file(results: str | os.PathLike[str]) -> Path:
    """The eval log of a results folder (or the file itself); :class:`RouterError` when there is none."""
    return examples_file(results, error=RouterError)


def load_examples(
    results: str | os.PathLike[str],
    *,
    label: LabelKind = "consensus",
    signal: str = "embedding",
    min_quality: float = 0.5,
) -> tuple[list[LoggedExample], str]:
    """The logged examples of a results folder (or ``examples.jsonl``) and the file's SHA-256.

    A tier is correct when the quality of its answer is >= ``min_quality``;
    its answer is the consensus sample under ``signal`` (what the cascade
    returns; a one-sample tier's only sample) or, with ``label="greedy"``, its
    greedy output.
    """
    path = resolve_examples_file(results)
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    out: list[LoggedExample] = []
    n_tiers: int | None = None
    inputs: dict[str, str] | None = None
    for lineno, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RouterError(
                f"{where}: not JSON ({exc.msg}); the eval log is damaged, re-run `semcascade eval`"
            ) from None
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
            raise RouterError(f"{where}: needs a string 'id' field; is this a semcascade examples.jsonl?")
        if not isinstance(rec.get("input"), str):  # the harness records ids only: the query comes from the dataset
            inputs = inputs if inputs is not None else _dataset_inputs(path.parent)
            if rec["id"] not in inputs:
                raise RouterError(
                    f"{where}: example {rec['id']!r} has no 'input' and is not in the dataset report.json names"
                )
            rec["input"] = inputs[rec["id"]]
        tiers = rec.get("tiers")
        if not isinstance(tiers, list) or not tiers or not all(isinstance(t, dict) for t in tiers):
            raise RouterError(f"{where}: 'tiers' must be a non-empty list of objects")
        if n_tiers is None:
            n_tiers = len(tiers)
        elif len(tiers) != n_tiers:
            raise RouterError(f"{where}: {len(tiers)} tiers, but earlier examples have {n_tiers}; mixed runs?")
        correct = tuple(_label(t, label, signal, min_quality, f"{where} tier {i}") for i, t in enumerate(tiers))
        out.append(LoggedExample(id=rec["id"], input=rec["input"], correct=correct))
    if not out:
        raise RouterError(f"{str(path)!r} holds no examples; run `semcascade eval` first")
    return out, digest


def split_examples(
    examples: Sequence[LoggedExample], *, seed: int = 0, validation_share: float = 0.25
) -> dict[str, list[LoggedExample]]:
    """``test`` (by hashed id, as in the harness) and a seeded ``train``/``validation`` split of the rest."""
    if not 0.0 < validation_share < 1.0:
        raise RouterError(f"validation_share must be in (0, 1), got {validation_share!r}")
    test = [e for e in examples if split_of(e.id) == "test"]
    rest = sorted((e for e in examples if split_of(e.id) != "test"), key=lambda e: e.id)
    random.Random(seed).shuffle(rest)
    n_val = round(len(rest) * validation_share)
    return {"train": rest[n_val:], "validation": rest[:n_val], "test": test}


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class TierModel:
    """Logistic model of one tier: P(correct) = sigmoid(((x - mean) / scale) . weights + intercept).

    The model itself is a :class:`semcascade.logistic.LogisticModel` (:attr:`model`); ``features``
    names its inputs (the embedding's dimensions, then the cheap features).
    """

    index: int
    name: str
    weights: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    C: float | None
    constant: bool = False
    metrics: dict[str, float | int | None] = field(default_factory=dict)
    features: tuple[str, ...] = ()

    @cached_property
    def model(self) -> LogisticModel:
        names = self.features or tuple(f"x{i}" for i in range(len(self.weights)))
        return LogisticModel(names, self.mean, self.scale, self.weights, self.intercept)

    def predict(self, x: FloatArray) -> FloatArray:
        return self.model.predict(x)

    def meta(self) -> dict[str, Any]:
        """What the artifact keeps of this tier besides the logistic model."""
        return {"index": self.index, "C": self.C, "constant": self.constant, "metrics": dict(self.metrics)}


def feature_names(embedding_dimension: int, cheap: Sequence[str] = CHEAP_FEATURES) -> tuple[str, ...]:
    """The router's input features in order: the embedding's dimensions, then the cheap features."""
    return (*(f"embedding[{i}]" for i in range(embedding_dimension)), *cheap)


def _auroc(p: FloatArray, y: Sequence[bool]) -> float | None:
    if len(y) == 0:
        return None
    return auroc([float(v) for v in p], list(y))


def _train_tier(
    index: int, name: str, x: dict[str, FloatArray], y: dict[str, list[bool]], features: tuple[str, ...]
) -> TierModel:
    xtr, ytr = x["train"], y["train"]
    counts: dict[str, float | int | None] = {}
    for s in ("train", "validation", "test"):
        counts[f"{s}_n"] = len(y[s])
        counts[f"{s}_positive"] = int(sum(y[s]))
    if len(set(ytr)) < 2:  # one class only: predict its rate (clipped), nothing to learn
        rate = float(np.mean(ytr)) if ytr else 0.5
        p = min(max(rate, 1e-3), 1 - 1e-3)
        mean = xtr.mean(axis=0)
        scale = xtr.std(axis=0)
        scale[scale < MIN_SCALE] = 1.0
        model = TierModel(index, name, (0.0,) * xtr.shape[1], math.log(p / (1 - p)), tuple(mean), tuple(scale),
                          None, True, features=features)  # fmt: skip
    else:
        best: tuple[float, float, TierModel] | None = None  # (val auroc, -C, model)
        for C in C_GRID:
            m = logistic_fit(xtr, ytr, features, l2=1.0 / C, balanced=True)
            trial = TierModel(index, name, m.weights, m.bias, m.mean, m.scale, C, features=features)
            val = _auroc(trial.predict(x["validation"]), y["validation"]) if y["validation"] else None
            key = (-1.0 if val is None else val, -C)
            if best is None or key > best[:2]:
                best = (key[0], key[1], trial)
        assert best is not None
        model = best[2]
    metrics = dict(counts)
    for s in ("train", "validation", "test"):
        metrics[f"{s}_auroc"] = _auroc(model.predict(x[s]), y[s]) if len(y[s]) else None
    return dataclasses.replace(model, metrics=metrics)


@dataclass(frozen=True)
class PIKModel:
    """Per-tier P(correct) models over query features; load/save as a versioned JSON artifact."""

    tiers: tuple[TierModel, ...]
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    embedding_dimension: int = 384
    max_chars: int = DEFAULT_MAX_CHARS
    cheap_features: tuple[str, ...] = CHEAP_FEATURES
    label: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)

    @property
    def n_tiers(self) -> int:
        return len(self.tiers)

    @property
    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers]

    def predict_features(self, x: FloatArray) -> FloatArray:
        """P(correct) per row of a feature matrix and tier: shape (n, n_tiers)."""
        return np.stack([t.predict(x) for t in self.tiers], axis=1) if len(x) else np.zeros((0, self.n_tiers))

    # -- artifact

    def to_json(self) -> dict[str, Any]:
        """The artifact (:mod:`semcascade.logistic`, kind ``router``): one logistic model per tier."""
        names = feature_names(self.embedding_dimension, self.cheap_features)
        models = [dataclasses.replace(t, features=names).model for t in self.tiers]
        meta = {
            "router": "pik",
            "embedding_model": self.embedding_model,
            "embedding_dimension": self.embedding_dimension,
            "feature_spec": {
                "max_chars": self.max_chars,
                "embedding": True,
                "cheap_features": list(self.cheap_features),
                "order": "embedding then cheap_features",
            },
            "label": self.label,
            "training": self.training,
        }
        return artifact_json(
            ARTIFACT_KIND,
            models,
            names=self.tier_names,
            meta=meta,
            model_meta=[t.meta() for t in self.tiers],
            created_at=self.created_at,
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the artifact (JSON) to ``path`` atomically, creating its folder."""
        try:
            return save_artifact(path, self.to_json())
        except (OSError, ValueError) as exc:
            raise RouterArtifactError(f"cannot write router artifact {str(path)!r}: {exc}; check the path") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PIKModel:
        """Read an artifact written by :meth:`save` (or by an older semcascade, migrated); any problem is a
        :class:`RouterArtifactError`."""
        src = Path(path)
        fix = "retrain it with `semcascade train-router RESULTS_DIR --out FILE`"
        try:
            data = json.loads(src.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RouterArtifactError(f"router artifact {str(src)!r} not found; {fix}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RouterArtifactError(f"router artifact {str(src)!r} is not readable JSON ({exc}); {fix}") from None
        try:
            return cls.from_json(data)
        except RouterArtifactError as exc:
            raise RouterArtifactError(f"router artifact {str(src)!r}: {exc}; {fix}") from None

    @classmethod
    def from_json(cls, data: Any) -> PIKModel:
        if not isinstance(data, dict) or data.get("format") not in (ARTIFACT_FORMAT, LEGACY_FORMAT):
            raise RouterArtifactError(f"not a semcascade router (format={_get(data, 'format')!r})")
        art = read_artifact(
            data, kind=ARTIFACT_KIND, error=RouterArtifactError, what="the artifact", legacy={LEGACY_FORMAT: _from_v1}
        )
        if not art.models:
            raise RouterArtifactError("it has no tiers")
        try:
            meta = art.meta
            spec = meta["feature_spec"]
            cheap = tuple(str(f) for f in spec["cheap_features"])
            dim = int(meta["embedding_dimension"])
            names = feature_names(dim, cheap)
            tiers = []
            for i, (m, name, extra) in enumerate(zip(art.models, art.names, art.model_meta, strict=True)):
                if m.features != names:
                    raise RouterArtifactError(
                        f"tier {i} has {len(m.features)} features, not the feature spec's {len(names)} "
                        "(embedding dimensions, then the cheap features)"
                    )
                tiers.append(
                    TierModel(
                        index=int(extra["index"]),
                        name=name,
                        weights=m.weights,
                        intercept=m.bias,
                        mean=m.mean,
                        scale=m.scale,
                        C=None if extra.get("C") is None else float(extra["C"]),
                        constant=bool(extra.get("constant", False)),
                        metrics=dict(extra.get("metrics") or {}),
                        features=names,
                    )
                )
            return cls(
                tiers=tuple(tiers),
                embedding_model=str(meta["embedding_model"]),
                embedding_dimension=dim,
                max_chars=int(spec["max_chars"]),
                cheap_features=cheap,
                label=dict(meta.get("label") or {}),
                training=dict(meta.get("training") or {}),
                created_at=art.created_at or 0.0,
            )
        except RouterArtifactError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise RouterArtifactError(f"missing or malformed field ({type(exc).__name__}: {exc})") from None


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A router artifact of the layout before :mod:`semcascade.logistic` (``semcascade.router`` version 1)."""
    if data.get("version") != 1:
        raise RouterArtifactError(f"version {data.get('version')!r} of {LEGACY_FORMAT!r} is not supported")
    spec = data["feature_spec"]
    names = list(feature_names(int(data["embedding_dimension"]), tuple(str(f) for f in spec["cheap_features"])))
    keep = ("embedding_model", "embedding_dimension", "feature_spec", "label", "training")
    return {
        "format": ARTIFACT_FORMAT,
        "version": ARTIFACT_VERSION,
        "kind": ARTIFACT_KIND,
        "created_at": data.get("created_at"),
        "meta": {"router": "pik", **{k: data[k] for k in keep if k in data}},
        "models": [
            {
                "name": t["name"],
                "features": names,
                "mean": t["mean"],
                "scale": t["scale"],
                "weights": t["weights"],
                "bias": t["intercept"],
                "meta": {k: t.get(k) for k in ("index", "C", "constant", "metrics")},
            }
            for t in data["tiers"]
        ],
    }


def _get(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else None


def _dataset_inputs(folder: Path) -> dict[str, str]:
    """Query text by example id, from the dataset the run's report.json names."""
    from semcascade.evaluation.datasets import load_dataset

    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        name = str(report["dataset"])
    except (OSError, ValueError, KeyError, TypeError):
        raise RouterError(
            f"{folder}: the examples carry ids only and there is no report.json naming their dataset; "
            "pass the folder `semcascade eval --out DIR` wrote"
        ) from None
    return {str(e.id): e.input for e in load_dataset(name)}


def _tier_names_from_report(folder: Path, n_tiers: int) -> list[str]:
    """Tier names from the run's report.json ("<tier> alone (greedy)" rows, in order), else tier0..."""
    try:
        rows = json.loads((folder / "report.json").read_text(encoding="utf-8")).get("systems", [])
        names = [r["system"].removesuffix(" alone (greedy)") for r in rows if r["system"].endswith(" alone (greedy)")]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        names = []
    return names if len(names) == n_tiers else [f"tier{i}" for i in range(n_tiers)]


def train_pik(
    results: str | os.PathLike[str],
    *,
    seed: int = 0,
    validation_share: float = 0.25,
    label: LabelKind = "consensus",
    signal: str = "embedding",
    min_quality: float = 0.5,
    embedder: Embedder | None = None,
    embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> PIKModel:
    """Fit one P(correct) model per tier from a harness results folder (see the module doc)."""
    examples, digest = load_examples(results, label=label, signal=signal, min_quality=min_quality)
    splits = split_examples(examples, seed=seed, validation_share=validation_share)
    if not splits["train"]:
        raise RouterError(
            f"no training examples: all {len(examples)} examples are in the test split; "
            "evaluate more examples (about 30% of ids land in the calibration split)"
        )
    emb = embedder if embedder is not None else default_embedder()
    x = {s: query_features([e.input for e in rows], emb, max_chars=max_chars) for s, rows in splits.items()}
    dim = x["train"].shape[1] - len(CHEAP_FEATURES)
    for s in x:
        if len(x[s]) == 0:
            x[s] = np.zeros((0, x["train"].shape[1]))
    path = resolve_examples_file(results)
    n_tiers = len(examples[0].correct)
    names = _tier_names_from_report(path.parent, n_tiers)
    features = feature_names(dim)
    tiers = tuple(
        _train_tier(i, names[i], x, {s: [e.correct[i] for e in rows] for s, rows in splits.items()}, features)
        for i in range(n_tiers)
    )
    return PIKModel(
        tiers=tiers,
        embedding_model=embedding_model,
        embedding_dimension=dim,
        max_chars=max_chars,
        label={"kind": label, "signal": signal, "min_quality": min_quality},
        training={
            "source": str(path),
            "sha256": digest,
            "n_examples": len(examples),
            "seed": seed,
            "validation_share": validation_share,
            "split_rule": "test = semcascade.evaluation.splits.split_of(id) == 'test'; "
            "the rest shuffled by seed into train/validation",
            "n_train": len(splits["train"]),
            "n_validation": len(splits["validation"]),
            "n_test": len(splits["test"]),
            "C_grid": list(C_GRID),
            "classifier": "semcascade.logistic.fit (damped Newton, l2 = 1/C, balanced class weights) on standardised "
            "features",
        },
    )
