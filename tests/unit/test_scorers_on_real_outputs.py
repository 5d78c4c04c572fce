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

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "nq_smollm2_samples.json"
RULE = EquivalenceConfig(rule="bidirectional", threshold=0.8)


@pytest.fixture(scope="module")
def items() -> list[dict[str, Any]]:
    data = json.loads(FIXTURE.read_text())
    assert data["k"] == 5 and len(data["items"]) >= 20
    # the fixture holds only ids and model outputs; the questions come from the installed data
    questions = {e.id: e.question for e in load_open_qa("nq", "test")}
    return [{**it, "question": questions[it["id"]]} for it in data["items"]]


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
    assert all(0.0 <= x <= 1.0 for x in emb + lex)
    # Two independent views of agreement must broadly agree on which real ensembles agree.
    assert spearman(emb, lex) > 0.4


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


async def test_unanimous_real_ensemble_scores_top(items: list[dict[str, Any]], embedding: EmbeddingScorer) -> None:
    # Replace one real ensemble by five copies of its first sample: agreement must be maximal.
    it = items[0]
    copies = [it["samples"][0]] * 5
    js = await embedding.judge(it["question"], [(copies[a], copies[b]) for a, b in pair_indices(5)])
    assert consensus(5, js, RULE).score == pytest.approx(1.0, abs=1e-5)
    real = (await scores(embedding, [it]))[0]
    assert real <= 1.0 + 1e-6
