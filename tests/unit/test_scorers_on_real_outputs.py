"""Scorers on real SmolLM2-135M samples (k=5) for NQ questions, saved as a fixture.

The fixture is written by benchmarks/agreement_signals.py from a real run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semcascade.aggregation import consensus, pair_indices
from semcascade.config import EquivalenceConfig
from semcascade.evaluation.datasets import load_open_qa
from semcascade.scoring.embedding import EmbeddingScorer
from semcascade.scoring.lexical import LexicalScorer
from semcascade.text import contains_answer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "nq_smollm2_samples.json"
RULE = EquivalenceConfig(rule="bidirectional", threshold=0.8)


@pytest.fixture(scope="module")
def items() -> list[dict[str, Any]]:
    data = json.loads(FIXTURE.read_text())
    assert data["k"] == 5 and len(data["items"]) >= 20
    # the fixture holds only ids and model outputs; the questions come from the installed data
    questions = {e.id: e.question for e in load_open_qa("nq", "test")}
    return [{**it, "question": questions[it["id"]]} for it in data["items"]]


def by_id(items: list[dict[str, Any]], id_: str) -> dict[str, Any]:
    return next(it for it in items if it["id"] == id_)


def answers_to_other_questions(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each question with five real samples drawn from five different questions' ensembles (its own first)."""
    n = len(items)
    return [{**it, "samples": [items[(i + d) % n]["samples"][d] for d in range(5)]} for i, it in enumerate(items)]


@pytest.fixture(scope="module")
def embedding() -> EmbeddingScorer:
    return EmbeddingScorer()


async def scores(scorer: Any, items: list[dict[str, Any]]) -> list[float]:
    out = []
    for it in items:
        s = it["samples"]
        js = await scorer.judge(it["question"], [(s[a], s[b]) for a, b in pair_indices(len(s))])
        c = consensus(len(s), js, RULE)
        assert c.score is not None
        out.append(c.score)
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


async def test_embedding_and_lexical_rank_real_ensembles_alike(
    items: list[dict[str, Any]], embedding: EmbeddingScorer
) -> None:
    emb = await scores(embedding, items)
    lex = await scores(LexicalScorer(), items)
    # Two independent views of agreement must broadly agree on which real ensembles agree.
    assert spearman(emb, lex) > 0.4


async def test_real_ensembles_agree_more_than_answers_to_other_questions(
    items: list[dict[str, Any]], embedding: EmbeddingScorer
) -> None:
    others = answers_to_other_questions(items)
    emb, emb_others = await scores(embedding, items), await scores(embedding, others)
    # recorded: real ensembles 0.23..0.96, mixed ones 0.006..0.084 -- every question, with a margin
    worst = min(zip(emb, emb_others, [it["id"] for it in items], strict=True), key=lambda t: t[0] - t[1])
    assert worst[0] > worst[1] + 0.1, worst
    lex, lex_others = await scores(LexicalScorer(), items), await scores(LexicalScorer(), others)
    # lexical overlap is noisier per question (4 of 30 invert) but twice as high on average (0.134 vs 0.055)
    assert np.mean(lex) > 2 * np.mean(lex_others), (np.mean(lex), np.mean(lex_others))


#: the bundled MiniLM's mean-pairwise agreement on three real ensembles (benchmarks/agreement_signals.py run)
RECORDED_EMBEDDING = {
    "nq-test-3458": 0.9560,  # five paraphrases of "The common name for gravitational force is ..."
    "nq-test-388": 0.8189,  # five takes on "The largest city in the United States is ..."
    "nq-test-3210": 0.2301,  # an apology, a question echo, two made-up names
}


async def test_embedding_agreement_matches_the_recorded_values(
    items: list[dict[str, Any]], embedding: EmbeddingScorer
) -> None:
    chosen = [by_id(items, i) for i in RECORDED_EMBEDDING]
    got = dict(zip(RECORDED_EMBEDDING, await scores(embedding, chosen), strict=True))
    assert got == pytest.approx(RECORDED_EMBEDDING, abs=0.01)


async def test_the_right_answer_cluster_ranks_first_on_real_ensembles(
    items: list[dict[str, Any]], embedding: EmbeddingScorer
) -> None:
    refs = {e.id: list(e.references) for e in load_open_qa("nq", "test")}
    # nq-test-2181: samples 0, 1, 2 (and 4) say China; nq-test-1242: 1, 3, 4 say London (0 says Wimbledon, England)
    for id_, largest, rep in (("nq-test-2181", [0, 1, 2], 0), ("nq-test-1242", [0, 1, 2, 3], 3)):
        it = by_id(items, id_)
        s = it["samples"]
        c = consensus(5, await embedding.judge(it["question"], [(s[a], s[b]) for a, b in pair_indices(5)]), RULE)
        assert c.clusters[0] == largest and c.representative == rep, (id_, c.clusters, c.representative)
        assert contains_answer(s[c.representative], refs[id_]), (id_, s[c.representative])


async def test_real_matrices_are_symmetric_and_consistent(
    items: list[dict[str, Any]], embedding: EmbeddingScorer
) -> None:
    for it in items[:10]:
        s = it["samples"]
        pairs = [(s[a], s[b]) for a, b in pair_indices(5)]
        js = await embedding.judge(it["question"], pairs)
        rev = await embedding.judge(it["question"], [(b, a) for a, b in pairs])
        assert [j.agreement for j in js] == pytest.approx([j.agreement for j in rev], abs=1e-6)
        c = consensus(5, js, RULE)
        assert sorted(i for cl in c.clusters for i in cl) == list(range(5))
        assert c.representative in c.clusters[0]


async def test_copies_beat_paraphrases_beat_answers_to_other_questions(
    items: list[dict[str, Any]], embedding: EmbeddingScorer
) -> None:
    it = by_id(items, "nq-test-3458")  # five real paraphrases of one (wrong) answer
    copies = {**it, "samples": [it["samples"][0]] * 5}
    others = answers_to_other_questions(items)[items.index(it)]
    unanimous, paraphrases, mixed = await scores(embedding, [copies, it, others])
    assert unanimous == pytest.approx(1.0, abs=1e-5)
    assert unanimous - 0.01 > paraphrases > 0.9 > 0.1 > mixed, (unanimous, paraphrases, mixed)
