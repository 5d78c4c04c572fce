from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from semcascade.errors import ProviderUnavailableError, ScorerError
from semcascade.evaluation.datasets import Example
from semcascade.evaluation.hallucination import (
    DOCUMENT_PROMPT_TEMPLATE,
    FactualityJudge,
    hallucination_rate_summaries,
    judge_accuracy,
    judge_accuracy_on_halueval,
    qa_claim,
    retrieve_evidence,
)
from semcascade.providers import Choice, Completion, CompletionRequest, MockProvider, TokenLogprob
from semcascade.scoring.llm_judge import LLMJudgeNLIScorer

MODEL = "openai/qwen2.5-coder-1.5b"

DOC = (
    "The storm reached the coast on Monday. "
    "Officials closed three schools in Dover. "
    "Wind speeds peaked at 90 miles per hour near the harbour. "
    "Local bakeries sold out of bread. "
    "The mayor said repairs would cost two million dollars."
)
DOC_SENTENCES = [
    "The storm reached the coast on Monday.",
    "Officials closed three schools in Dover.",
    "Wind speeds peaked at 90 miles per hour near the harbour.",
    "Local bakeries sold out of bread.",
    "The mayor said repairs would cost two million dollars.",
]


def completion(p_yes: float, p_no: float, p_maybe: float = 0.0) -> Completion:
    top = {t: math.log(p) for t, p in (("Yes", p_yes), ("No", p_no), ("Maybe", p_maybe)) if p > 0}
    token = max(top, key=lambda t: top[t])
    lp = TokenLogprob(token=token, logprob=top[token], top=top)
    return Completion(model=MODEL, choices=(Choice(text=token, completion_tokens=1, logprobs=(lp,)),), prompt_tokens=40)


def parse(request: CompletionRequest) -> tuple[str, str]:
    m = re.fullmatch(
        r"Document: (.*)\nClaim: (.*)\nIs the claim supported by the document\?", request.messages[-1]["content"]
    )
    assert m is not None, request.messages[-1]["content"]
    return m.group(1), m.group(2)


def judge_with(p_yes_of: Callable[[str, str], float], threshold: float = 0.5) -> tuple[FactualityJudge, MockProvider]:
    """A judge whose P(yes) for (premise, claim) is ``p_yes_of(premise, claim)`` (the rest is P(no))."""

    def handler(request: CompletionRequest) -> Completion:
        p = p_yes_of(*parse(request))
        return completion(p, 1.0 - p)

    provider = MockProvider(handler)
    judge = FactualityJudge.from_model(MODEL, provider=provider, threshold=threshold)
    return judge, provider


# --------------------------------------------------------------------------- retrieval


def test_retrieval_picks_the_overlapping_sentences_in_document_order() -> None:
    claim = "The mayor said the storm reached the coast and repairs cost two million dollars."
    assert retrieve_evidence(claim, DOC_SENTENCES, 2) == (0, 4)
    assert retrieve_evidence("Three schools in Dover were closed.", DOC_SENTENCES, 1) == (1,)
    assert retrieve_evidence("Wind peaked at 90 miles per hour.", DOC_SENTENCES, 1) == (2,)


def test_retrieval_edge_cases() -> None:
    assert retrieve_evidence("anything", DOC_SENTENCES[:2], 3) == (0, 1)  # fewer sentences than top_m
    assert retrieve_evidence("zebra", ["a b", "c d", "e f"], 2) == (0, 1)  # all tied at 0: earliest first
    assert retrieve_evidence("x", [], 3) == ()
    with pytest.raises(ValueError, match="top_m"):
        retrieve_evidence("x", DOC_SENTENCES, 0)
    # a custom similarity decides the ranking
    assert retrieve_evidence("x", DOC_SENTENCES, 1, similarity=lambda c, s: len(s)) == (2,)


# --------------------------------------------------------------------------- verdicts


async def test_each_sentence_is_judged_once_against_its_retrieved_premise() -> None:
    judge, provider = judge_with(lambda premise, claim: 0.9)
    summary = "Officials closed three schools in Dover. Repairs would cost two million dollars, the mayor said."
    verdict = await judge.judge_summary(DOC, summary)
    assert len(provider.calls) == 2 == judge.calls  # one direction only: premise => claim
    first, second = verdict.claims
    assert first.claim == "Officials closed three schools in Dover."
    assert 1 in first.evidence and len(first.evidence) == 3
    assert first.premise == " ".join(DOC_SENTENCES[i] for i in first.evidence)
    assert 4 in second.evidence and list(second.evidence) == sorted(second.evidence)
    assert {parse(r) for r in provider.calls} == {(c.premise, c.claim) for c in verdict.claims}
    req = provider.calls[0]
    assert (req.max_tokens, req.temperature, req.logprobs, req.n) == (1, 0.0, True, 1)
    assert not verdict.hallucinated and verdict.score == pytest.approx(0.9)


async def test_one_unsupported_sentence_makes_the_summary_hallucinated() -> None:
    judge, _ = judge_with(lambda premise, claim: 0.2 if "bakeries" in claim else 0.8)
    ok = await judge.judge_summary(DOC, "The storm reached the coast on Monday. Three schools closed.")
    bad = await judge.judge_summary(DOC, "The storm reached the coast on Monday. All bakeries gave bread away.")
    assert not ok.hallucinated
    assert bad.hallucinated
    assert [c.supported for c in bad.claims] == [True, False]
    assert bad.score == pytest.approx(0.2) and bad.claims[1].p_contradicted == pytest.approx(0.8)


async def test_threshold_boundary_and_maybe_mass() -> None:
    judge, _ = judge_with(lambda premise, claim: 0.5)
    assert not (await judge.judge_summary(DOC, "The storm came.")).hallucinated  # P = threshold is supported
    strict, _ = judge_with(lambda premise, claim: 0.5, threshold=0.6)
    assert (await strict.judge_summary(DOC, "The storm came.")).hallucinated

    # P(supported) is P(yes) over yes+no+maybe: much "maybe" lowers it below the threshold
    provider = MockProvider(lambda r: completion(0.4, 0.1, 0.5))
    unsure = FactualityJudge.from_model(MODEL, provider=provider)
    v = await unsure.judge_summary(DOC, "The storm came.")
    assert v.claims[0].p_supported == pytest.approx(0.4) and v.hallucinated


async def test_empty_summary_is_not_hallucinated_and_empty_source_is_an_error() -> None:
    judge, provider = judge_with(lambda premise, claim: 0.0)
    v = await judge.judge_summary(DOC, "   ")
    assert v.claims == () and not v.hallucinated and v.score == 1.0
    with pytest.raises(ValueError, match="source document is empty"):
        await judge.judge_summary("", "A claim.")
    with pytest.raises(ValueError, match="source 1 is empty"):
        await judge.judge_summaries([DOC, " "], ["A claim.", "Another."])
    assert provider.calls == []


async def test_hallucination_rate_over_summaries() -> None:
    judge, provider = judge_with(lambda premise, claim: 0.1 if "invented" in claim else 0.95)
    summaries = [
        "The storm reached the coast on Monday.",
        "Officials closed three schools. An invented fact follows.",
        "Wind speeds peaked at 90 miles per hour.",
        "The mayor gave an invented figure.",
    ]
    rate = await hallucination_rate_summaries(judge, [DOC] * 4, summaries)
    assert rate == pytest.approx(0.5)
    assert len(provider.calls) == 5
    with pytest.raises(ValueError, match="one source per summary"):
        await hallucination_rate_summaries(judge, [DOC], summaries)
    with pytest.raises(ValueError, match="no summaries"):
        await hallucination_rate_summaries(judge, [], [])


async def test_progress_is_reported_per_summary() -> None:
    judge, _ = judge_with(lambda premise, claim: 0.9)
    done: list[int] = []
    await judge.judge_summaries([DOC] * 3, ["The storm came."] * 3, progress=done.append)
    assert done == [1, 1, 1]


async def test_judge_failure_is_a_scorer_error() -> None:
    def handler(request: CompletionRequest) -> Completion:
        if "bakeries" in parse(request)[1]:
            raise ProviderUnavailableError("connection refused", model=MODEL)
        return completion(0.9, 0.1)

    judge = FactualityJudge.from_model(MODEL, provider=MockProvider(handler))
    with pytest.raises(ScorerError, match="judge call failed"):
        await judge.judge_summary(DOC, "The storm came. The bakeries sold bread.")


async def test_entailment_asks_one_direction() -> None:
    provider = MockProvider(lambda r: completion(0.7, 0.2, 0.1))
    scorer = LLMJudgeNLIScorer(MODEL, provider=provider, prompt_template=DOCUMENT_PROMPT_TEMPLATE)
    probs = await scorer.entailment("", "The premise.", "The claim.")
    assert probs == pytest.approx({"yes": 0.7, "no": 0.2, "maybe": 0.1})
    assert [parse(r) for r in provider.calls] == [("The premise.", "The claim.")]


def test_constructor_validation() -> None:
    nli = LLMJudgeNLIScorer(MODEL, provider=MockProvider(lambda r: completion(1.0, 0.0)))
    with pytest.raises(ValueError, match="top_m"):
        FactualityJudge(nli, top_m=0)
    with pytest.raises(ValueError, match="threshold"):
        FactualityJudge(nli, threshold=1.5)
    judge = FactualityJudge.from_model(
        MODEL, api_key="sk-secret-999", provider=MockProvider(lambda r: completion(1, 0))
    )
    assert judge.nli.prompt_template == DOCUMENT_PROMPT_TEMPLATE
    assert "sk-secret-999" not in repr(judge)


# --------------------------------------------------------------------------- judge accuracy


@dataclass(frozen=True)
class V:
    hallucinated: bool
    score: float


def test_accuracy_arithmetic_by_hand() -> None:
    pairs = [
        (V(False, 0.9), V(True, 0.2)),  # both right; hallucinated lower
        (V(True, 0.4), V(True, 0.3)),  # right one flagged (FP); hallucinated flagged; lower
        (V(False, 0.7), V(False, 0.8)),  # hallucinated missed; higher
        (V(False, 0.6), V(False, 0.6)),  # missed; tie
    ]
    acc = judge_accuracy(pairs)
    assert acc.n_pairs == 4
    assert acc.true_positive_rate == pytest.approx(2 / 4)
    assert acc.false_positive_rate == pytest.approx(1 / 4)
    assert acc.accuracy == pytest.approx((2 + 3) / 8)  # 2 TP + 3 TN of 8 outputs
    assert acc.pairwise_accuracy == pytest.approx((2 + 0.5) / 4)
    assert acc.ties == 1
    with pytest.raises(ValueError, match="no pairs"):
        judge_accuracy([])


def summ(i: int, right: str, fake: str) -> Example:
    return Example(f"cnn_dailymail-{i}", "summarization", DOC, (right,), extra={"hallucinated_summary": fake})


async def test_accuracy_on_halueval_summaries() -> None:
    judge, provider = judge_with(lambda premise, claim: 0.05 if "invented" in claim else 0.9)
    examples = [
        summ(0, "The storm reached the coast on Monday.", "The storm reached the coast. It was an invented storm."),
        summ(1, "Officials closed three schools in Dover.", "Officials closed invented schools."),
        summ(2, "Wind peaked at 90 miles per hour.", "Wind peaked at 90 miles per hour."),  # identical: a tie
    ]
    check = await judge_accuracy_on_halueval(judge, examples)
    assert check.task == "summarization" and check.ids == ("cnn_dailymail-0", "cnn_dailymail-1", "cnn_dailymail-2")
    assert [v.hallucinated for v in check.right] == [False, False, False]
    assert [v.hallucinated for v in check.hallucinated] == [True, True, False]
    assert check.accuracy.true_positive_rate == pytest.approx(2 / 3)
    assert check.accuracy.false_positive_rate == 0.0
    assert check.accuracy.accuracy == pytest.approx(5 / 6)
    assert check.accuracy.pairwise_accuracy == pytest.approx(2.5 / 3) and check.accuracy.ties == 1
    assert check.calls == len(provider.calls) == 1 + 2 + 1 + 1 + 1 + 1


async def test_accuracy_on_halueval_qa() -> None:
    knowledge = "Paris is the capital of France.It has 2 million inhabitants."

    def p_yes(premise: str, claim: str) -> float:
        assert premise == knowledge
        return 0.9 if claim.endswith(": Paris") else 0.1

    judge, provider = judge_with(p_yes)
    q = "What is the capital of France?"
    ex = Example("halueval_qa-7", "rc", q, ("Paris",), context=knowledge, extra={"hallucinated_answer": "Lyon"})
    check = await judge_accuracy_on_halueval(judge, [ex])
    assert check.task == "rc"
    assert {parse(r)[1] for r in provider.calls} == {qa_claim(q, "Paris"), qa_claim(q, "Lyon")}
    assert check.accuracy.accuracy == 1.0 and check.accuracy.pairwise_accuracy == 1.0
    assert check.right[0].claims[0].evidence == ()


async def test_halueval_input_errors() -> None:
    judge, provider = judge_with(lambda premise, claim: 0.9)
    qa = Example("halueval_qa-1", "rc", "Q?", ("A",), context="Some passage.", extra={"hallucinated_answer": "B"})
    with pytest.raises(ValueError, match="must all be HaluEval summarization or all HaluEval QA"):
        await judge_accuracy_on_halueval(judge, [summ(0, "a.", "b."), qa])
    with pytest.raises(ValueError, match="hallucinated_summary"):
        await judge_accuracy_on_halueval(judge, [Example("x", "summarization", DOC, ("a.",))])
    with pytest.raises(ValueError, match="no knowledge passage"):
        await judge_accuracy_on_halueval(judge, [Example("q", "rc", "Q?", ("A",), extra={"hallucinated_answer": "B"})])
    with pytest.raises(ValueError, match="no examples"):
        await judge_accuracy_on_halueval(judge, [])
    assert provider.calls == []
