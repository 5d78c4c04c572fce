"""``task: auto``: pick a request's task from its prompt, before any model is called.

A linear classifier over sentence embeddings (the local all-MiniLM-L6-v2, the same encoder the
embedding scorer uses): one L2-regularised logistic model per task, one task against the rest
(:func:`semcascade.logistic.fit`, class-balanced), over the standardised embedding; a prompt goes to the
task whose model scores it highest. It is fitted from labelled prompts (e.g. every task's calibration
split) and stored as a small versioned JSON artifact:

    clf = TaskClassifier.fit({"rc": [...], "math": [...]})
    clf.save("models/tasks.json")
    TaskClassifier.load("builtin:tasks-v1").classify(["What is 12 * 7 + 3?"])   # ['math']

A config turns it on with ``task_classifier: builtin:tasks-v1`` (or a path); ``generate(..., task="auto")``
then runs the predicted task's cascade. A predicted label that is not one of the config's tasks runs
the config's own cascade.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from semcascade.errors import ConfigError

if TYPE_CHECKING:
    from semcascade.scoring.embedding import EmbeddingScorer

__all__ = ["BUILTIN_PREFIX", "CLASSIFIER_FORMAT", "TaskClassifier", "resolve_classifier_path"]

CLASSIFIER_FORMAT = "semcascade.task_classifier/1"
#: ``builtin:NAME`` loads ``semcascade/artifacts/NAME.json``
BUILTIN_PREFIX = "builtin:"
_ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
#: the embedder the shipped artifacts were fitted with (the scorer's default ONNX MiniLM)
EMBEDDER = "all-MiniLM-L6-v2 (onnx)"

FloatArray = npt.NDArray[np.float32]


def resolve_classifier_path(spec: str | os.PathLike[str]) -> Path:
    """``builtin:NAME`` or a file path, as an existing path (a :class:`ConfigError` otherwise)."""
    s = os.fspath(spec)
    if s.startswith(BUILTIN_PREFIX):
        name = s[len(BUILTIN_PREFIX) :]
        path = _ARTIFACTS / f"{name}.json"
        if not path.is_file():
            known = sorted(p.stem for p in _ARTIFACTS.glob("tasks-*.json"))
            raise ConfigError(f"no builtin task classifier {name!r}; choose from {', '.join(known) or '(none)'}")
        return path
    path = Path(s)
    if not path.is_file():
        raise ConfigError(f"task_classifier {s!r}: no such file; fit one with benchmarks/task_classifier.py")
    return path


def _embedder() -> EmbeddingScorer:
    from semcascade.scoring.embedding import EmbeddingScorer

    return EmbeddingScorer(backend="onnx")


@dataclass
class TaskClassifier:
    """One linear model per task over the standardised embedding: ``z = ((x - mean) / scale) @ weights.T + bias``."""

    tasks: list[str]
    weights: FloatArray
    bias: FloatArray
    mean: FloatArray
    scale: FloatArray
    embedder_name: str = EMBEDDER
    meta: dict[str, Any] = field(default_factory=dict)
    _embedder: EmbeddingScorer | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float32)
        self.bias = np.asarray(self.bias, dtype=np.float32)
        self.mean = np.asarray(self.mean, dtype=np.float32)
        self.scale = np.asarray(self.scale, dtype=np.float32)
        t, d = len(self.tasks), self.mean.shape[0] if self.mean.ndim == 1 else -1
        if not self.tasks or self.weights.shape != (t, d) or self.bias.shape != (t,) or self.scale.shape != (d,):
            raise ConfigError("a task classifier needs one weight row and bias per task over one feature space")
        if len(set(self.tasks)) != t:
            raise ConfigError(f"task classifier labels repeat: {self.tasks}")
        if not all(np.isfinite(a).all() for a in (self.weights, self.bias, self.mean, self.scale)):
            raise ConfigError("the task classifier's parameters are not finite numbers; refit it")

    @classmethod
    def fit_vectors(
        cls, vectors: Mapping[str, FloatArray], *, l2: float = 1.0, meta: Mapping[str, Any] | None = None
    ) -> TaskClassifier:
        """Fit on each task's embedded prompts (rows of ``vectors[task]``)."""
        from semcascade.logistic import fit

        if len(vectors) < 2 or any(len(v) == 0 for v in vectors.values()):
            raise ConfigError("fit a task classifier on at least two tasks, each with at least one prompt")
        tasks = list(vectors)
        x = np.vstack([np.asarray(vectors[t], dtype=np.float64) for t in tasks])
        labels = np.concatenate([np.full(len(vectors[t]), i) for i, t in enumerate(tasks)])
        names = [f"e{j}" for j in range(x.shape[1])]
        models = [fit(x, (labels == i).astype(float), names, l2=l2, balanced=True) for i in range(len(tasks))]
        # one shared standardisation (every model standardises the same x the same way)
        mean, scale = np.asarray(models[0].mean), np.asarray(models[0].scale)
        counts = {t: len(vectors[t]) for t in tasks}
        return cls(
            tasks,
            np.stack([np.asarray(m.weights) for m in models]),
            np.array([m.bias for m in models]),
            mean,
            scale,
            meta={"fitted_on": counts, "l2": l2, **dict(meta or {})},
        )

    @classmethod
    def fit(
        cls,
        prompts: Mapping[str, Sequence[str]],
        *,
        embedder: EmbeddingScorer | None = None,
        l2: float = 1.0,
        meta: Mapping[str, Any] | None = None,
    ) -> TaskClassifier:
        """Embed each task's labelled prompts and fit on them."""
        emb = embedder or _embedder()
        vectors = {t: np.asarray(emb.embed(list(v)), dtype=np.float32) for t, v in prompts.items() if v}
        if len(vectors) != len(prompts):
            raise ConfigError("fit a task classifier on at least two tasks, each with at least one prompt")
        clf = cls.fit_vectors(vectors, l2=l2, meta=meta)
        clf._embedder = emb
        return clf

    def _emb(self) -> EmbeddingScorer:
        if self._embedder is None:
            self._embedder = _embedder()
        return self._embedder

    def scores(self, vectors: FloatArray) -> FloatArray:
        """``(n, len(tasks))`` linear scores of embedded prompts (higher: more that task)."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ConfigError(
                f"the task classifier was fitted in {self.mean.shape[0]} dimensions, the embedder gives "
                f"{x.shape[-1]}; refit it with this embedder"
            )
        out = ((x - self.mean) / self.scale) @ self.weights.T + self.bias
        return np.asarray(out, dtype=np.float32)

    def classify_vectors(self, vectors: FloatArray) -> list[str]:
        s = self.scores(vectors)
        return [self.tasks[int(i)] for i in s.argmax(axis=1)] if len(s) else []

    def classify(self, texts: Sequence[str]) -> list[str]:
        """The task of each text."""
        if not texts:
            return []
        return self.classify_vectors(np.asarray(self._emb().embed(list(texts)), dtype=np.float32))

    def to_json(self) -> dict[str, Any]:
        def rnd(a: FloatArray) -> list[Any]:
            return np.round(a.astype(np.float64), 6).tolist()  # type: ignore[no-any-return]

        return {
            "format": CLASSIFIER_FORMAT,
            "embedder": self.embedder_name,
            "tasks": list(self.tasks),
            "weights": rnd(self.weights),
            "bias": rnd(self.bias),
            "mean": rnd(self.mean),
            "scale": rnd(self.scale),
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the artifact atomically (a reader never sees half a file)."""
        from semcascade.logistic import atomic_write_json

        p = Path(path)
        atomic_write_json(p, self.to_json())
        return p

    @classmethod
    def load(cls, spec: str | os.PathLike[str]) -> TaskClassifier:
        """``builtin:NAME`` or a path written by :meth:`save`."""
        import json

        path = resolve_classifier_path(spec)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not a task classifier artifact ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != CLASSIFIER_FORMAT:
            raise ConfigError(f"{path}: not a {CLASSIFIER_FORMAT} artifact; refit it with this version")
        try:
            parts = [np.asarray(raw[k], dtype=np.float32) for k in ("weights", "bias", "mean", "scale")]
            tasks = [str(t) for t in raw["tasks"]]
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: the artifact lacks its tasks or parameters; refit it") from None
        weights, bias, mean, scale = parts
        return cls(
            tasks, weights, bias, mean, scale, embedder_name=str(raw.get("embedder", EMBEDDER)),
            meta=dict(raw.get("meta") or {}),
        )  # fmt: skip
