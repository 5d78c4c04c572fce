"""Hallucination judged against a source: summaries (sentence by sentence) and reading-comprehension answers.

Definitions used by the evaluation reports:

* A **summary is hallucinated** when at least one of its sentences is not
  supported by the source document. Each summary sentence (split offline with
  :func:`semcascade.text.split_sentences`) is a *claim*; its *premise* is the
  ``top_m`` source sentences most similar to it by token overlap
  (:func:`semcascade.text.token_f1` by default), joined in document order. The
  NLI judge (:class:`~semcascade.scoring.llm_judge.LLMJudgeNLIScorer`, asked in
  one direction only, premise => claim) gives P(supported) = P(yes) /
  (P(yes) + P(no) + P(maybe)); the sentence is supported when that is at least
  ``threshold`` (0.5). A summary's *score* is its lowest sentence score.
* The **summary hallucination rate** is the share of summaries judged
  hallucinated (:func:`hallucination_rate_summaries`).
* A **reading-comprehension answer is hallucinated** when the passage does not
  support the claim ``The answer to "<question>" is: <answer>`` (the whole
  passage is the premise, no retrieval).
* **Judge accuracy on HaluEval** (:func:`judge_accuracy_on_halueval`): each
  HaluEval item has a right and a hallucinated output. ``accuracy`` is the
  share of the 2n outputs judged correctly (right -> not hallucinated,
  hallucinated -> hallucinated), ``true_positive_rate`` the share of
  hallucinated outputs flagged, ``false_positive_rate`` the share of right
  outputs flagged, and ``pairwise_accuracy`` the share of pairs whose
  hallucinated output gets the strictly lower score (a tie counts one half),
  which does not depend on the threshold.

The judge's prompt must suit documents rather than short answers:
:meth:`FactualityJudge.from_model` builds the scorer with
:data:`DOCUMENT_PROMPT_TEMPLATE`. All judge calls of a batch are issued at once;
the scorer's own semaphore (``max_concurrency``) bounds how many run together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from semcascade.evaluation.datasets import Example
from semcascade.providers import Provider
from semcascade.scoring.llm_judge import DEFAULT_SYSTEM_PROMPT, LLMJudgeNLIScorer
from semcascade.text import split_sentences, token_f1

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_TOP_M",
    "DOCUMENT_PROMPT_TEMPLATE",
    "ClaimVerdict",
    "FactualityJudge",
    "FactualityVerdict",
    "HaluEvalCheck",
    "JudgeAccuracy",
    "hallucination_rate_summaries",
    "judge_accuracy",
    "judge_accuracy_on_halueval",
    "qa_claim",
    "retrieve_evidence",
]

#: fields: {premise} (retrieved source sentences or a passage), {hypothesis} (the claim); {question} unused
DOCUMENT_PROMPT_TEMPLATE = "Document: {premise}\nClaim: {hypothesis}\nIs the claim supported by the document?"
DEFAULT_TOP_M = 3
DEFAULT_THRESHOLD = 0.5

Similarity = Callable[[str, str], float]
_T = TypeVar("_T")


def retrieve_evidence(
    claim: str, source_sentences: Sequence[str], top_m: int = DEFAULT_TOP_M, similarity: Similarity = token_f1
) -> tuple[int, ...]:
    """Indices of the ``top_m`` source sentences most similar to ``claim``, in document order.

    ``similarity(claim, sentence)`` ranks the sentences; ties go to the earlier
    sentence. With fewer than ``top_m`` sentences, all of them are returned.
    """
    if top_m < 1:
        raise ValueError(f"top_m must be at least 1, got {top_m}")
    scores = [similarity(claim, s) for s in source_sentences]
    ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return tuple(sorted(ranked[:top_m]))


def qa_claim(question: str, answer: str) -> str:
    """The claim judged for a reading-comprehension answer."""
    return f'The answer to "{question.strip()}" is: {answer.strip()}'


@dataclass(frozen=True)
class ClaimVerdict:
    """The judge's verdict on one claim (a summary sentence, or a QA answer)."""

    claim: str
    #: what the judge read: the retrieved source sentences joined in document order, or the passage
    premise: str
    #: indices of the retrieved source sentences (empty when the whole passage is the premise)
    evidence: tuple[int, ...]
    #: P(yes) / (P(yes) + P(no) + P(maybe)) for premise => claim
    p_supported: float
    #: P(no) / (same sum)
    p_contradicted: float
    supported: bool


@dataclass(frozen=True)
class FactualityVerdict:
    """The verdicts on every claim of one output; hallucinated if any claim is unsupported."""

    claims: tuple[ClaimVerdict, ...]
    threshold: float

    @property
    def hallucinated(self) -> bool:
        """True when some claim's P(supported) is below the threshold (never for an empty output)."""
        return any(not c.supported for c in self.claims)

    @property
    def score(self) -> float:
        """The lowest P(supported) over the claims (1.0 for an output without sentences)."""
        return min((c.p_supported for c in self.claims), default=1.0)


class _Verdict(Protocol):
    @property
    def hallucinated(self) -> bool: ...

    @property
    def score(self) -> float: ...


async def _gather_or_cancel(coros: Sequence[Awaitable[_T]]) -> list[_T]:
    """Run ``coros`` concurrently; if one fails, cancel the others (no judge call keeps running)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


class FactualityJudge:
    """Judges whether summaries (or answers) are supported by their source, with an LLM NLI judge.

    ``nli``: the scorer asked premise => claim (its ``prompt_template`` should
    read a document, see :meth:`from_model`). ``top_m``: source sentences
    retrieved per summary sentence. ``threshold``: minimum P(supported) of a
    supported claim. ``similarity``: the retrieval score ``(claim, sentence)``.
    ``calls`` counts the judge calls made (cached responses included).
    """

    def __init__(
        self,
        nli: LLMJudgeNLIScorer,
        *,
        top_m: int = DEFAULT_TOP_M,
        threshold: float = DEFAULT_THRESHOLD,
        similarity: Similarity = token_f1,
    ) -> None:
        if not isinstance(top_m, int) or top_m < 1:
            raise ValueError(f"top_m must be a positive integer, got {top_m!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}")
        self.nli = nli
        self.top_m = top_m
        self.threshold = float(threshold)
        self.similarity = similarity
        self.calls = 0

    @classmethod
    def from_model(
        cls,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        provider: Provider | None = None,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        top_m: int = DEFAULT_TOP_M,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> FactualityJudge:
        """A judge on ``model`` (a resolved litellm model string) with :data:`DOCUMENT_PROMPT_TEMPLATE`."""
        nli = LLMJudgeNLIScorer(
            model,
            api_base=api_base,
            api_key=api_key,
            provider=provider,
            max_concurrency=max_concurrency,
            timeout=timeout,
            prompt_template=DOCUMENT_PROMPT_TEMPLATE,
            system_prompt=DEFAULT_SYSTEM_PROMPT,
        )
        return cls(nli, top_m=top_m, threshold=threshold)

    def __repr__(self) -> str:
        return f"FactualityJudge({self.nli!r}, top_m={self.top_m}, threshold={self.threshold:g})"

    async def _claim(self, premise: str, claim: str, evidence: tuple[int, ...]) -> ClaimVerdict:
        self.calls += 1
        probs = await self.nli.entailment("", premise, claim)
        p_yes = probs["yes"]
        return ClaimVerdict(
            claim=claim,
            premise=premise,
            evidence=evidence,
            p_supported=p_yes,
            p_contradicted=probs["no"],
            supported=p_yes >= self.threshold,
        )

    async def judge_summary(self, source: str, summary: str) -> FactualityVerdict:
        """Judge every sentence of ``summary`` against its most similar sentences of ``source``."""
        document = split_sentences(source)
        if not document:
            raise ValueError("the source document is empty; pass the text the summary was written from")
        claims = split_sentences(summary)
        evidence = [retrieve_evidence(c, document, self.top_m, self.similarity) for c in claims]
        verdicts = await _gather_or_cancel(
            [self._claim(" ".join(document[i] for i in idx), c, idx) for c, idx in zip(claims, evidence, strict=True)]
        )
        return FactualityVerdict(tuple(verdicts), self.threshold)

    async def judge_summaries(
        self, sources: Sequence[str], summaries: Sequence[str], progress: Callable[[int], object] | None = None
    ) -> list[FactualityVerdict]:
        """:meth:`judge_summary` for each (source, summary) pair, all concurrently.

        ``progress(1)`` is called as each summary is finished (e.g. a tqdm bar's ``update``).
        """
        if len(sources) != len(summaries):
            raise ValueError(f"got {len(sources)} sources but {len(summaries)} summaries; pass one source per summary")
        for i, source in enumerate(sources):
            if not source.strip():
                raise ValueError(f"source {i} is empty; pass the text each summary was written from")
        return await _gather_or_cancel(
            [self._tracked(self.judge_summary(s, y), progress) for s, y in zip(sources, summaries, strict=True)]
        )

    async def judge_answer(self, question: str, passage: str, answer: str) -> FactualityVerdict:
        """Judge whether ``passage`` supports ``answer`` to ``question`` (one claim, the whole passage)."""
        if not passage.strip():
            raise ValueError("the passage is empty; pass the context the answer should be grounded in")
        verdict = await self._claim(passage.strip(), qa_claim(question, answer), ())
        return FactualityVerdict((verdict,), self.threshold)

    @staticmethod
    async def _tracked(coro: Awaitable[_T], progress: Callable[[int], object] | None) -> _T:
        out = await coro
        if progress is not None:
            progress(1)
        return out


async def hallucination_rate_summaries(
    judge: FactualityJudge, sources: Sequence[str], summaries: Sequence[str]
) -> float:
    """The share of ``summaries`` with at least one sentence the judge finds unsupported by its source.

    ``sources[i]`` is the document ``summaries[i]`` was written from. A summary
    sentence is unsupported when P(supported), judged against the ``top_m``
    most similar source sentences, is below the judge's threshold.
    """
    if not summaries:
        raise ValueError("no summaries to judge; pass at least one (source, summary) pair")
    verdicts = await judge.judge_summaries(sources, summaries)
    return sum(v.hallucinated for v in verdicts) / len(verdicts)


# --------------------------------------------------------------------------- judge accuracy (HaluEval)


@dataclass(frozen=True)
class JudgeAccuracy:
    """How well a hallucination judge separates right from hallucinated outputs (see the module docs)."""

    n_pairs: int
    #: share of the 2n outputs judged correctly
    accuracy: float
    #: share of hallucinated outputs judged hallucinated
    true_positive_rate: float
    #: share of right outputs judged hallucinated
    false_positive_rate: float
    #: share of pairs whose hallucinated output scores strictly lower (ties count 1/2)
    pairwise_accuracy: float
    #: pairs whose two outputs got the same score
    ties: int


def judge_accuracy(pairs: Sequence[tuple[_Verdict, _Verdict]]) -> JudgeAccuracy:
    """:class:`JudgeAccuracy` from (right output's verdict, hallucinated output's verdict) pairs."""
    if not pairs:
        raise ValueError("no pairs to score; pass at least one (right, hallucinated) verdict pair")
    n = len(pairs)
    true_pos = sum(h.hallucinated for _, h in pairs)
    false_pos = sum(r.hallucinated for r, _ in pairs)
    ties = sum(h.score == r.score for r, h in pairs)
    lower = sum(h.score < r.score for r, h in pairs)
    return JudgeAccuracy(
        n_pairs=n,
        accuracy=(true_pos + (n - false_pos)) / (2 * n),
        true_positive_rate=true_pos / n,
        false_positive_rate=false_pos / n,
        pairwise_accuracy=(lower + 0.5 * ties) / n,
        ties=ties,
    )


@dataclass(frozen=True)
class HaluEvalCheck:
    """The judge's verdicts on HaluEval pairs and its accuracy on them."""

    task: str
    ids: tuple[str, ...]
    right: tuple[FactualityVerdict, ...]
    hallucinated: tuple[FactualityVerdict, ...]
    accuracy: JudgeAccuracy
    #: judge calls made for this check (cached responses included)
    calls: int


def _hallucinated_output(example: Example) -> str:
    key = "hallucinated_summary" if example.task == "summarization" else "hallucinated_answer"
    value = example.extra.get(key)
    if not value or not example.references:
        raise ValueError(
            f"example {example.id!r} has no right output or no extra[{key!r}]; load HaluEval pairs with "
            "semcascade.evaluation.datasets.load_cnn_dailymail or load_halueval_qa"
        )
    return value


async def judge_accuracy_on_halueval(
    judge: FactualityJudge, examples: Sequence[Example], progress: Callable[[int], object] | None = None
) -> HaluEvalCheck:
    """Judge HaluEval's right and hallucinated output of each example and score the judge.

    ``examples`` all come from :func:`~semcascade.evaluation.datasets.load_cnn_dailymail`
    (right summary ``references[0]`` vs ``extra["hallucinated_summary"]``, judged
    sentence by sentence against the article) or all from
    :func:`~semcascade.evaluation.datasets.load_halueval_qa` (right answer vs
    ``extra["hallucinated_answer"]``, judged against the ``knowledge`` passage).
    ``progress(1)`` is called as each output is finished.
    """
    if not examples:
        raise ValueError("no examples; pass HaluEval examples from load_cnn_dailymail or load_halueval_qa")
    tasks = {e.task for e in examples}
    if len(tasks) > 1 or not tasks <= {"summarization", "rc"}:
        raise ValueError(
            f"examples must all be HaluEval summarization or all HaluEval QA ('rc'), got tasks {sorted(tasks)}"
        )
    task = examples[0].task
    fakes = [_hallucinated_output(e) for e in examples]
    calls_before = judge.calls
    if task == "summarization":
        sources = [e.input for e in examples] * 2
        outputs = [e.references[0] for e in examples] + fakes
        verdicts = await judge.judge_summaries(sources, outputs, progress)
    else:
        for e in examples:
            if not (e.context or "").strip():
                raise ValueError(f"example {e.id!r} has no knowledge passage (context); load it with load_halueval_qa")
        answers = [(e, e.references[0]) for e in examples] + list(zip(examples, fakes, strict=True))
        verdicts = await _gather_or_cancel(
            [FactualityJudge._tracked(judge.judge_answer(e.input, e.context or "", a), progress) for e, a in answers]
        )
    n = len(examples)
    right, hallucinated = tuple(verdicts[:n]), tuple(verdicts[n:])
    return HaluEvalCheck(
        task=task,
        ids=tuple(str(e.id) for e in examples),
        right=right,
        hallucinated=hallucinated,
        accuracy=judge_accuracy(list(zip(right, hallucinated, strict=True))),
        calls=judge.calls - calls_before,
    )
