"""The shipped default cascade end to end on the real local llama-server.

The tests assert the machinery on real model output: one trace per tier
tried, k samples, a symmetric agreement matrix with a unit diagonal, clusters
that partition the samples, a representative in the largest cluster, the
decision that the score and the threshold call for, and tokens and costs that
add up (:func:`check_trace`). Where a path must be taken, the samples are made
to agree or disagree by construction (:class:`tests.helpers.ConstantScorer`),
not by hoping a sampled small model does so. The answer-level assertions left
are on greedy (temperature 0) decoding, and were run 10 times in a row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import pytest_asyncio

from semcascade import Cascade, CascadeResult, TierTrace
from semcascade.text import contains_answer
from tests.helpers import ConstantScorer

pytestmark = pytest.mark.integration

FACTS = [
    ("What is the capital of France?", ["Paris"]),
    ("Who wrote Romeo and Juliet?", ["Shakespeare"]),
    ("What is the chemical symbol for gold?", ["Au"]),
    ("What is the largest planet in the solar system?", ["Jupiter"]),
    ("Who painted the Mona Lisa?", ["Leonardo", "da Vinci"]),
    ("How many continents are there on Earth?", ["seven", "7"]),
]

CONTEXT_Q = (
    "Context: Marie Curie was born in Warsaw in 1867. She moved to Paris in 1891, where she studied physics "
    "at the Sorbonne.\nQuestion: In which city was Marie Curie born?"
)
OPEN_ENDED = "Invent a name for a new fantasy creature and describe it in one sentence."


def check_consensus(t: TierTrace, k: int) -> None:
    """The agreement matrix, clusters and representative of one tier's k samples."""
    m = np.asarray(t.agreement_matrix, dtype=float)
    assert m.shape == (k, k), t.agreement_matrix
    assert np.allclose(m, m.T) and np.allclose(np.diag(m), 1.0), t.agreement_matrix
    assert sorted(i for c in t.clusters for i in c) == list(range(k)), t.clusters  # a partition
    sizes = [len(c) for c in t.clusters]
    assert sizes == sorted(sizes, reverse=True), t.clusters
    assert any(t.representative in c for c in t.clusters if len(c) == sizes[0]), (t.representative, t.clusters)
    if k == 1:
        assert t.agreement is None
    else:  # mean_pairwise (the shipped aggregation): the mean off-diagonal agreement (matrix rounded to 1e-4)
        assert t.agreement == pytest.approx((m.sum() - k) / (k * (k - 1)), abs=1e-3)


def check_trace(r: CascadeResult, cascade: Cascade) -> None:
    """Invariants every real result must satisfy."""
    tiers = cascade.config.tiers
    n = len(r.trace)
    # one TierTrace per tier tried, in order; every tier but the answering one escalated
    assert [t.tier for t in r.trace] == [t.name for t in tiers[:n]]
    assert [t.decision for t in r.trace] == ["escalate"] * (n - 1) + ["accept"], r.summary()
    assert r.tier == r.trace[-1].tier and r.tier_index == n - 1 and not r.abstained
    for i, t in enumerate(r.trace):
        cfg = tiers[i]
        is_last = i == len(tiers) - 1
        assert t.errors == [] and t.models == cfg.model_list
        assert [s.index for s in t.samples] == list(range(cfg.k))
        assert all(s.text.strip() and s.completion_tokens > 0 for s in t.samples)  # counted per choice
        assert t.completion_tokens == sum(s.completion_tokens for s in t.samples) and t.prompt_tokens > 0
        assert t.cost == pytest.approx(
            t.prompt_tokens * (cfg.input_cost_per_token or 0.0)
            + t.completion_tokens * (cfg.output_cost_per_token or 0.0)
        )
        check_consensus(t, cfg.k)
        # the decision is the tier's score against its threshold; the last tier answers anyway
        assert t.signal == cascade.signal(cfg.name) and t.threshold == cfg.threshold
        if t.signal == "confidence":  # decided on the fitted confidence, read from real logprobs
            assert t.score is not None and t.confidence == t.score
            assert all(s.min_logprob is not None for s in t.samples)
        else:
            assert t.score == t.agreement and t.confidence is None
        if t.score is None:
            expected = "accept" if is_last or cfg.threshold == 0 else "escalate"
        else:
            expected = "accept" if t.score >= cfg.threshold or is_last else "escalate"
        assert t.decision == expected, t.reason
    assert r.text == r.trace[-1].answer and r.agreement == r.trace[-1].agreement
    assert r.cost == pytest.approx(sum(t.cost for t in r.trace))
    assert r.prompt_tokens == sum(t.prompt_tokens for t in r.trace)
    assert r.completion_tokens == sum(t.completion_tokens for t in r.trace)
    oa = r.to_openai()
    assert oa.choices[0].message.content == r.text
    assert oa.usage is not None and oa.usage.total_tokens == r.prompt_tokens + r.completion_tokens


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def facts(local_cascade: Cascade) -> list[CascadeResult]:
    """The shipped cascade's results on FACTS, each question asked once."""
    return [await local_cascade.generate(q) for q, _ in FACTS]


@pytest.mark.parametrize("i", range(len(FACTS)), ids=[q for q, _ in FACTS])
def test_factual_questions_end_to_end(local_cascade: Cascade, facts: list[CascadeResult], i: int) -> None:
    check_trace(facts[i], local_cascade)


def test_most_factual_answers_are_right(facts: list[CascadeResult]) -> None:
    # greedy decoding at both tiers; passed 10 of 10 runs in a row (see the module docstring)
    right = sum(contains_answer(r.text, refs) for r, (_, refs) in zip(facts, FACTS, strict=True))
    assert right >= 4, [r.text for r in facts]


async def test_shipped_cheap_tier_answers_a_grounded_question_itself(local_cascade: Cascade) -> None:
    r = await local_cascade.generate(CONTEXT_Q)
    check_trace(r, local_cascade)
    assert r.tier == local_cascade.config.tiers[0].name and not r.escalated, r.summary()
    assert r.text == "Warsaw"  # the answer span, not the model's whole output
    assert r.trace[0].confidence is not None and r.trace[0].confidence >= 0.5


async def test_shipped_cheap_tier_escalates_an_open_ended_request(local_cascade: Cascade) -> None:
    r = await local_cascade.generate(OPEN_ENDED)
    check_trace(r, local_cascade)
    assert r.escalated and r.trace[0].decision == "escalate" and "confidence" in r.trace[0].reason, r.summary()


def agreement_tier(**over: object) -> dict[str, object]:
    """The cheap tier switched from its confidence model to sampled semantic agreement, seeded."""
    return {"k": 5, "temperature": 0.7, "seed": 1234, "include_greedy": True, "confidence_model": None, **over}


async def test_sampled_agreement_tier_on_real_samples(local_cascade: Cascade, variant: Callable[..., Cascade]) -> None:
    # the shipped embedding scorer on five real samples, whatever they say
    cascade = variant(local_cascade, **agreement_tier(threshold=0.8))
    r = await cascade.generate(CONTEXT_Q)
    check_trace(r, cascade)
    t = r.trace[0]
    assert [s.greedy for s in t.samples] == [True, False, False, False, False]
    unique_largest = len(t.clusters) == 1 or len(t.clusters[0]) > len(t.clusters[1])
    if unique_largest and 0 in t.clusters[0]:
        assert t.representative == 0  # the greedy sample answers for it


async def test_agreeing_samples_are_answered_by_the_cheap_tier(
    local_cascade: Cascade, variant: Callable[..., Cascade]
) -> None:
    cascade = variant(local_cascade, scorer=ConstantScorer(1.0), **agreement_tier(k=3, threshold=0.99, max_tokens=16))
    r = await cascade.generate(CONTEXT_Q)
    check_trace(r, cascade)
    t = r.trace[0]
    assert r.tiers_tried == [cascade.config.tiers[0].name] and t.decision == "accept", r.summary()
    assert t.agreement == 1.0 and t.clusters == [[0, 1, 2]] and t.agreement_matrix == [[1.0] * 3] * 3
    assert t.representative == 0 and t.samples[0].greedy and r.text == t.samples[0].answer  # the greedy sample


async def test_disagreeing_samples_escalate(local_cascade: Cascade, variant: Callable[..., Cascade]) -> None:
    cascade = variant(local_cascade, scorer=ConstantScorer(0.0), **agreement_tier(k=3, threshold=0.5, max_tokens=16))
    r = await cascade.generate([{"role": "user", "content": CONTEXT_Q}])  # OpenAI-style messages in
    check_trace(r, cascade)
    t = r.trace[0]
    assert r.escalated and r.tiers_tried == [c.name for c in cascade.config.tiers], r.summary()
    assert t.decision == "escalate" and "agreement 0.000 < threshold 0.5" in t.reason
    assert t.agreement == 0.0 and t.clusters == [[0], [1], [2]]
    assert r.text == r.trace[-1].samples[0].answer  # the strong tier's one sample answers
