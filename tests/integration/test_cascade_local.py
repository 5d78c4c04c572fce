"""The shipped default cascade end to end on the real local llama-server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from semcascade import Cascade, CascadeResult
from semcascade.text import contains_answer

pytestmark = pytest.mark.integration

FACTS = [
    ("What is the capital of France?", ["Paris"]),
    ("Who wrote Romeo and Juliet?", ["Shakespeare"]),
    ("What is the chemical symbol for gold?", ["Au"]),
    ("What is the largest planet in the solar system?", ["Jupiter"]),
    ("Who painted the Mona Lisa?", ["Leonardo", "da Vinci"]),
    ("How many continents are there on Earth?", ["seven", "7"]),
]


def check_trace(r: CascadeResult, cascade: Cascade) -> None:
    """Invariants every real result must satisfy."""
    assert r.text.strip()
    assert r.trace and r.trace[-1].tier == r.tier
    for i, t in enumerate(r.trace):
        cfg = cascade.config.tiers[i]
        assert len(t.samples) == cfg.k
        assert all(s.completion_tokens > 0 for s in t.samples)  # counted per choice, not once
        assert t.completion_tokens == sum(s.completion_tokens for s in t.samples)
        assert t.prompt_tokens > 0 and t.cost > 0 and t.latency_s > 0
        if cfg.confidence_model is not None:  # decided on the fitted confidence, not on agreement
            assert t.confidence is not None and 0.0 <= t.confidence <= 1.0
            assert all(s.min_logprob is not None for s in t.samples)  # P(T) read from real logprobs
            expected = "accept" if t.confidence >= cfg.threshold or i == len(r.trace) - 1 else "escalate"
            assert t.decision == expected, t.reason
        elif cfg.k > 1:
            assert t.agreement is not None and 0.0 <= t.agreement <= 1.0
            assert len(t.agreement_matrix) == cfg.k
            assert sorted(i for c in t.clusters for i in c) == list(range(cfg.k))
            expected = "accept" if t.agreement >= cfg.threshold or i == len(r.trace) - 1 else "escalate"
            assert t.decision == expected, t.reason
    assert r.cost == pytest.approx(sum(t.cost for t in r.trace))


@pytest.mark.parametrize(("question", "refs"), FACTS)
async def test_factual_questions_end_to_end(local_cascade: Cascade, question: str, refs: list[str]) -> None:
    r = await local_cascade.generate(question)
    check_trace(r, local_cascade)
    assert r.tier in {t.name for t in local_cascade.config.tiers}


async def test_most_factual_answers_are_right(local_cascade: Cascade) -> None:
    results = [await local_cascade.generate(q) for q, _ in FACTS]
    right = sum(contains_answer(r.text, refs) for r, (_, refs) in zip(results, FACTS, strict=True))
    assert right >= 4, [r.text for r in results]


CONTEXT_Q = (
    "Context: Marie Curie was born in Warsaw in 1867. She moved to Paris in 1891, where she studied physics "
    "at the Sorbonne.\nQuestion: In which city was Marie Curie born?"
)


async def test_shipped_cheap_tier_answers_a_grounded_question_itself(local_cascade: Cascade) -> None:
    r = await local_cascade.generate(CONTEXT_Q)
    check_trace(r, local_cascade)
    assert r.tier == local_cascade.config.tiers[0].name and not r.escalated, r.summary()
    assert r.text == "Warsaw"  # the answer span, not the model's whole output
    assert r.trace[0].confidence is not None and r.trace[0].confidence >= 0.5


async def test_shipped_cheap_tier_escalates_an_open_ended_request(local_cascade: Cascade) -> None:
    r = await local_cascade.generate("Invent a name for a new fantasy creature and describe it in one sentence.")
    check_trace(r, local_cascade)
    assert r.escalated and r.trace[0].decision == "escalate" and "confidence" in r.trace[0].reason, r.summary()


def agreement_tier(**over: object) -> dict[str, object]:
    """The cheap tier switched from its confidence model to sampled semantic agreement."""
    return {"k": 5, "temperature": 0.7, "include_greedy": True, "confidence_model": None, "threshold": 0.8, **over}


async def test_cheap_tier_answers_an_easy_question(local_cascade: Cascade, variant: Callable[..., Cascade]) -> None:
    # low temperature: the samples then vary in wording only
    cascade = variant(local_cascade, **agreement_tier(threshold=0.5, temperature=0.3))
    r = await cascade.generate(CONTEXT_Q)
    check_trace(r, cascade)
    assert r.tier == cascade.config.tiers[0].name and not r.escalated, r.summary()
    assert "warsaw" in r.text.lower()
    assert r.trace[0].samples[0].greedy and r.trace[0].representative == 0  # the greedy sample answers


async def test_open_ended_disagreement_escalates(local_cascade: Cascade, variant: Callable[..., Cascade]) -> None:
    cascade = variant(local_cascade, **agreement_tier(threshold=0.97, temperature=1.2, max_tokens=48))
    r = await cascade.generate("Invent a name for a new fantasy creature and describe it in one sentence.")
    check_trace(r, cascade)
    assert r.escalated and r.tiers_tried == [t.name for t in cascade.config.tiers], r.summary()
    assert r.trace[0].decision == "escalate" and "< threshold" in r.trace[0].reason
    assert len({s.text for s in r.trace[0].samples}) > 1


async def test_openai_shape_from_real_result(local_cascade: Cascade) -> None:
    r = await local_cascade.generate([{"role": "user", "content": "What is 2 + 2?"}])
    oa = r.to_openai()
    assert oa.choices[0].message.content == r.text
    assert oa.usage is not None and oa.usage.total_tokens == r.prompt_tokens + r.completion_tokens
