"""The summary hallucination judge on the real local strong model (llama-server)."""

from __future__ import annotations

import pytest

from semcascade import Cascade
from semcascade.evaluation.datasets import load_dataset
from semcascade.evaluation.hallucination import FactualityJudge, judge_accuracy_on_halueval

pytestmark = pytest.mark.integration

JUDGE = "local/qwen2.5-coder-1.5b"

DOC = (
    "A storm hit the town of Dover on Monday night. "
    "Officials closed three primary schools on Tuesday because of flooding. "
    "Wind speeds peaked at 90 miles per hour near the harbour. "
    "Nobody was injured, the police said. "
    "The mayor, Ann Lee, said repairs would cost about two million pounds."
)


@pytest.fixture(scope="module")
def judge(local_cascade: Cascade) -> FactualityJudge:
    resolved = local_cascade.resolve_model(JUDGE)
    return FactualityJudge.from_model(
        resolved.litellm_model, api_base=resolved.api_base, api_key="local", max_concurrency=4
    )


async def test_copied_facts_pass_and_a_contradicted_fact_is_flagged(judge: FactualityJudge) -> None:
    faithful = "Officials closed three primary schools on Tuesday because of flooding. Nobody was injured."
    invented = (
        "Officials closed three primary schools on Tuesday. The mayor said repairs would cost fifty million dollars."
    )
    ok, bad = await judge.judge_summaries([DOC, DOC], [faithful, invented])
    assert not ok.hallucinated, [(c.claim, c.p_supported) for c in ok.claims]
    assert bad.hallucinated, [(c.claim, c.p_supported) for c in bad.claims]
    assert "two million pounds" in bad.claims[1].premise  # the contradicting sentence was retrieved
    assert bad.score < ok.score


async def test_right_summaries_score_above_hallucinated_ones_on_halueval(judge: FactualityJudge) -> None:
    examples = load_dataset("cnn_dailymail", 3, seed=0, split="calibration")
    check = await judge_accuracy_on_halueval(judge, examples)
    above = sum(r.score > h.score for r, h in zip(check.right, check.hallucinated, strict=True))
    assert above >= 2, [(r.score, h.score) for r, h in zip(check.right, check.hallucinated, strict=True)]
    assert check.calls == sum(len(v.claims) for v in (*check.right, *check.hallucinated))
