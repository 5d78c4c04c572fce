"""NLI agreement with a sentence-transformers ``CrossEncoder``.

Any sequence-classification NLI model works (e.g. ``cross-encoder/nli-deberta-v3-small``
for online users, or a local folder). The label order is read from the model's
``config.id2label`` by name, case-insensitively:

* a label containing ``"contradict"`` -> contradiction,
* a label containing ``"neutral"`` -> neutral,
* a label containing ``"entail"`` and not negated (``not_entailment``,
  ``non-entailment``) -> entailment.

Every model needs an entailment label; two-class models without a
contradiction label (e.g. ``entailment``/``not_entailment``) report
``contradiction=None``. For each pair both directions (a => b and b => a) go
through ONE batched ``predict`` call; probabilities are the softmax of the
raw logits. Inference runs in a worker thread.

No three-way NLI cross-encoder ships in any package registry, so offline this
scorer only runs models you already have on disk.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from semcascade.errors import ScorerError
from semcascade.scoring.base import PairJudgement, ScorerKind, check_choice, check_positive_int

__all__ = ["CrossEncoderNLIScorer", "NLILabelMap", "parse_nli_labels"]

CrossEncoderQuestionMode = Literal["ignore", "prefix"]
_NEGATED = re.compile(r"\b(not|non|no)[\s_\-]*entail")


@dataclass(frozen=True, slots=True)
class NLILabelMap:
    """Column indices of the NLI labels in a model's output."""

    entailment: int
    contradiction: int | None
    neutral: int | None
    num_labels: int


def parse_nli_labels(id2label: Mapping[Any, str], *, model: str = "the model") -> NLILabelMap:
    """Map label names (``config.id2label``) to output columns; raise :class:`ScorerError` if no entailment label."""
    found: dict[str, list[int]] = {"entailment": [], "contradiction": [], "neutral": []}
    for raw_id, raw_name in id2label.items():
        idx, name = int(raw_id), str(raw_name).lower()
        if "contradict" in name:
            found["contradiction"].append(idx)
        elif "neutral" in name:
            found["neutral"].append(idx)
        elif "entail" in name and not _NEGATED.search(name.replace("-", "_").replace("_", " ")):
            found["entailment"].append(idx)
    labels = {int(k): str(v) for k, v in id2label.items()}
    if not found["entailment"]:
        raise ScorerError(
            f"cross_encoder scorer: {model} has no entailment label (id2label={labels}); "
            "use an NLI model whose config.id2label names an 'entailment' class"
        )
    for kind, ids in found.items():
        if len(ids) > 1:
            raise ScorerError(
                f"cross_encoder scorer: {model} has several {kind} labels (id2label={labels}); "
                "fix config.id2label so each NLI class appears once"
            )
    return NLILabelMap(
        entailment=found["entailment"][0],
        contradiction=found["contradiction"][0] if found["contradiction"] else None,
        neutral=found["neutral"][0] if found["neutral"] else None,
        num_labels=len(labels),
    )


def _softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: npt.NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
    return out


class CrossEncoderNLIScorer:
    """P(a entails b), P(b entails a) and P(contradiction) from an NLI cross-encoder.

    ``model``: a local folder or (online only) a hub name.
    ``question_mode``: ``"prefix"`` makes premise and hypothesis
    ``"Question: <q> Answer: <a>"`` so short answers ("1969") are judged in
    context; ``"ignore"`` uses the bare answers.
    ``contradiction`` is the mean of both directions' contradiction probability.
    """

    name: str = "cross_encoder"
    kind: ScorerKind = "nli"

    def __init__(
        self,
        model: str,
        device: str = "cpu",
        question_mode: CrossEncoderQuestionMode = "prefix",
        batch_size: int = 32,
    ) -> None:
        check_choice("cross_encoder", "question_mode", question_mode, CrossEncoderQuestionMode)
        check_positive_int("cross_encoder", "batch_size", batch_size)
        self.model = model
        self.device = device
        self.question_mode: CrossEncoderQuestionMode = question_mode
        self.batch_size = batch_size
        try:
            from sentence_transformers import CrossEncoder
        except ImportError:
            raise ScorerError(
                "cross_encoder scorer: sentence-transformers is not installed; install torch==2.13.0 (CPU) "
                "first, then `pip install 'semcascade[nli]'`"
            ) from None
        try:
            self._model = CrossEncoder(model, device=device)
        except Exception as exc:
            raise ScorerError(
                f"cross_encoder scorer: cannot load {model!r}: {exc}; pass a local model folder "
                "(nothing can be downloaded offline) or check the model name"
            ) from None
        config = getattr(self._model, "config", None)
        if config is None:
            config = getattr(getattr(self._model, "model", None), "config", None)
        id2label = getattr(config, "id2label", None)
        if not id2label:
            raise ScorerError(
                f"cross_encoder scorer: {model!r} has no config.id2label; use an NLI sequence-classification model"
            )
        self.labels = parse_nli_labels(id2label, model=repr(model))
        self._predict_kwargs = self._raw_logit_kwargs()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"CrossEncoderNLIScorer(model={self.model!r}, device={self.device!r}, "
            f"question_mode={self.question_mode!r}, batch_size={self.batch_size})"
        )

    def _raw_logit_kwargs(self) -> dict[str, Any]:
        """predict() keyword arguments that make it return raw logits (the name changed in v4)."""
        import torch

        params = inspect.signature(self._model.predict).parameters
        for name in ("activation_fn", "activation_fct"):
            if name in params:
                return {name: torch.nn.Identity()}
        return {}

    def _text(self, question: str, answer: str) -> str:
        if self.question_mode == "prefix":
            return f"Question: {question.strip()} Answer: {answer.strip()}"
        return answer

    def predict_probabilities(self, inputs: Sequence[tuple[str, str]]) -> npt.NDArray[np.float64]:
        """Softmax probabilities, shape (len(inputs), num_labels), for (premise, hypothesis) pairs."""
        if not inputs:
            return np.zeros((0, self.labels.num_labels))
        with self._lock:
            logits = self._model.predict(
                [list(p) for p in inputs],
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                **self._predict_kwargs,
            )
        arr = np.asarray(logits, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.labels.num_labels:
            raise ScorerError(
                f"cross_encoder scorer: {self.model!r} returned scores of shape {arr.shape}, expected "
                f"(n, {self.labels.num_labels}); use a sequence-classification NLI model"
            )
        return _softmax(arr)

    def _judge_sync(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        inputs: list[tuple[str, str]] = []
        for a, b in pairs:
            ta, tb = self._text(question, a), self._text(question, b)
            inputs += [(ta, tb), (tb, ta)]  # forward (a => b), backward (b => a)
        probs = self.predict_probabilities(inputs)
        ent, con = self.labels.entailment, self.labels.contradiction
        out = []
        for i in range(len(pairs)):
            fwd, bwd = probs[2 * i], probs[2 * i + 1]
            contradiction = None if con is None else float((fwd[con] + bwd[con]) / 2.0)
            out.append(PairJudgement(forward=float(fwd[ent]), backward=float(bwd[ent]), contradiction=contradiction))
        return out

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        pairs = list(pairs)
        if not pairs:
            return []
        return await asyncio.to_thread(self._judge_sync, question, pairs)
