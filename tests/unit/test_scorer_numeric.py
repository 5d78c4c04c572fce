"""The numeric agreement scorer: pairs agree on their final number, never on their wording."""

from __future__ import annotations

import pytest

from semcascade.aggregation import consensus, pair_indices
from semcascade.config import EquivalenceConfig
from semcascade.errors import ScorerError
from semcascade.scoring._registry import available_scorers, create_scorer
from semcascade.scoring.base import AgreementScorer
from semcascade.scoring.numeric import NumericScorer


def test_registered_and_a_protocol_instance() -> None:
    assert "numeric" in available_scorers()
    scorer = create_scorer("numeric")
    assert isinstance(scorer, NumericScorer)
    assert isinstance(scorer, AgreementScorer)
    assert scorer.kind == "similarity"


async def test_same_number_in_different_words_agrees() -> None:
    pairs = [
        ("The answer is 12.", "12"),
        ("She has 3 + 4 = 7 apples left.\n#### 7", "7"),
        ("#### 1,200", "The answer is $1200.00"),
        ("(400 * 3)", "1200"),  # a program-of-thought expression, evaluated
        ("Answer: 0.75", "3/4"),
    ]
    out = await NumericScorer().judge("How many?", pairs)
    assert [j.forward for j in out] == [1.0] * len(pairs)
    assert [j.backward for j in out] == [1.0] * len(pairs)
    assert all(j.contradiction == 0.0 for j in out)


async def test_different_numbers_disagree_even_when_the_text_is_almost_identical() -> None:
    pairs = [
        ("12", "13"),
        ("The answer is 12.", "The answer is 13."),  # a text scorer would call these near-identical
        ("#### 1,200", "#### 1,201"),
        ("(400 * 3)", "(400 * 3) + 1"),
    ]
    out = await NumericScorer().judge("How many?", pairs)
    assert [j.agreement for j in out] == [0.0] * len(pairs)
    assert all(j.contradiction == 1.0 for j in out)


async def test_no_number_never_agrees() -> None:
    pairs = [("I don't know.", "I don't know."), ("", "12"), ("12", "no idea"), ("9**9**9", "9")]
    out = await NumericScorer().judge("How many?", pairs)
    assert [j.agreement for j in out] == [0.0] * len(pairs)
    assert all(j.contradiction is None for j in out)


async def test_relative_tolerance() -> None:
    out = await NumericScorer().judge("", [("1000000", "1000000.5"), ("1000000", "1000002"), ("0.1+0.2", "0.3")])
    assert [j.agreement for j in out] == [1.0, 0.0, 1.0]
    loose = await NumericScorer(rel_tol=0.01).judge("", [("100", "100.5")])
    assert loose[0].agreement == 1.0


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.1", True])
def test_bad_tolerance_is_a_scorer_error(bad: object) -> None:
    with pytest.raises(ScorerError, match="rel_tol"):
        NumericScorer(rel_tol=bad)  # type: ignore[arg-type]


async def test_consensus_becomes_a_majority_vote() -> None:
    # Six samples: three say 36 (in three styles), two say 40, one has no number.
    samples = ["#### 36", "The answer is 36.", "(12 * 3)", "40", "Answer: 40", "no idea"]
    scorer = NumericScorer()
    judgements = await scorer.judge("q", [(samples[a], samples[b]) for a, b in pair_indices(len(samples))])
    rule = EquivalenceConfig(rule="bidirectional", threshold=0.5)
    cons = consensus(len(samples), judgements, rule, "largest_cluster")
    assert sorted(map(sorted, cons.clusters)) == [[0, 1, 2], [3, 4], [5]]
    assert cons.representative in (0, 1, 2)
    assert cons.score == pytest.approx(3 / 6)
    # the greedy sample wins only when it is in the majority
    assert consensus(len(samples), judgements, rule, "largest_cluster", prefer=3).representative in (0, 1, 2)
    assert consensus(len(samples), judgements, rule, "largest_cluster", prefer=2).representative == 2
