"""The llama embedding backend's client and scorer, against a fake /v1/embeddings (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from semcascade.errors import ScorerError
from semcascade.scoring import embedding
from semcascade.scoring.embedding import EmbeddingScorer
from semcascade.scoring.llama_embedding import LlamaEmbeddingClient, LlamaEncoder

#: unnormalised 3-d "embeddings" of the (unprefixed) texts the fake server knows
VECTORS = {
    "Paris": [3.0, 0.0, 4.0],
    "the city of Paris": [3.0, 0.5, 4.0],
    "bananas": [0.0, 5.0, 0.0],
}


class FakeServer:
    """Answers like llama-server: one row per input, ``index`` set, rows in reverse order to test the sort."""

    def __init__(self, dim: int = 3) -> None:
        self.requests: list[dict[str, object]] = []
        self.dim = dim

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/embeddings"
        body = json.loads(request.content)
        self.requests.append(body)
        rows = []
        for i, text in enumerate(body["input"]):
            assert text.startswith("clustering: "), text
            vec = VECTORS[text.removeprefix("clustering: ")]
            rows.append({"object": "embedding", "index": i, "embedding": (vec * 3)[: self.dim]})
        return httpx.Response(200, json={"object": "list", "model": body["model"], "data": rows[::-1]})


def _client(handler: object, **kw: object) -> LlamaEmbeddingClient:
    return LlamaEmbeddingClient(
        "http://embed.test",
        "nomic-embed-text-v1.5",
        prefix="clustering: ",
        dimension=3,
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_rows_come_back_in_input_order_normalised_and_prefixed() -> None:
    server = FakeServer()
    out = _client(server).embed(["bananas", "Paris", "the city of Paris"])
    assert out.shape == (3, 3) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out[0], [0.0, 1.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(out[1], [0.6, 0.0, 0.8], atol=1e-7)
    assert server.requests[0]["model"] == "nomic-embed-text-v1.5"


def test_large_inputs_are_split_into_requests_of_max_inputs() -> None:
    server = FakeServer()
    texts = ["Paris", "bananas", "the city of Paris"] * 3
    out = _client(server, max_inputs=4).embed(texts)
    assert [len(r["input"]) for r in server.requests] == [4, 4, 1]  # type: ignore[arg-type]
    np.testing.assert_allclose(out[3], out[0])


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(500, text="model not loaded"), "HTTP 500"),
        (httpx.Response(200, text="not json"), "malformed embeddings response"),
        (httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0, 0.0, 0.0]}]}), "1 embeddings for 2"),
        (
            httpx.Response(200, json={"data": [{"index": i, "embedding": [1.0] * 5} for i in range(2)]}),
            "5-dimensional embeddings, expected 3",
        ),
    ],
)
def test_bad_answers_are_scorer_errors(response: httpx.Response, message: str) -> None:
    with pytest.raises(ScorerError, match=message):
        _client(lambda request: response).embed(["Paris", "bananas"])


def test_an_unreachable_server_is_a_scorer_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ScorerError, match="did not answer"):
        _client(refuse).embed(["Paris"])


def test_an_unknown_model_is_named() -> None:
    with pytest.raises(ScorerError, match=r"unknown local embedding model 'e5-large'.*nomic-embed-text-v1\.5"):
        LlamaEncoder("e5-large", client=_client(FakeServer()))


@pytest.fixture
def llama_scorer(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EmbeddingScorer, FakeServer]]:
    """EmbeddingScorer(backend='llama') whose shared encoder talks to the fake server (no process started)."""
    server = FakeServer()
    encoder = LlamaEncoder("nomic-embed-text-v1.5", client=_client(server))
    encoder.dimension = 3
    monkeypatch.setitem(embedding._ENCODERS, ("llama", "nomic-embed-text-v1.5"), encoder)
    yield EmbeddingScorer(backend="llama", model="nomic-embed-text-v1.5"), server


async def test_the_scorer_judges_through_the_batcher(llama_scorer: tuple[EmbeddingScorer, FakeServer]) -> None:
    scorer, server = llama_scorer
    assert scorer.batcher is not None
    pairs = [("Paris", "the city of Paris"), ("Paris", "bananas"), ("the city of Paris", "Paris")]
    out = await scorer.judge("Where?", pairs)
    a, b = np.array(VECTORS["Paris"]), np.array(VECTORS["the city of Paris"])
    expected = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert out[0].forward == pytest.approx(expected, rel=1e-6) and out[0].backward == out[0].forward
    assert out[1].agreement == pytest.approx(0.0, abs=1e-7)
    assert out[2].forward == pytest.approx(out[0].forward)
    # each distinct text once, in one encoder call through the batcher
    assert sorted(server.requests[0]["input"]) == sorted(f"clustering: {t}" for t in VECTORS)  # type: ignore[arg-type]
    assert scorer.batcher.calls == 1


def test_the_registry_builds_the_llama_backend(llama_scorer: tuple[EmbeddingScorer, FakeServer]) -> None:
    from semcascade.scoring._registry import create_scorer

    scorer = create_scorer("embedding", backend="llama")  # model defaults to nomic-embed-text-v1.5
    assert isinstance(scorer, EmbeddingScorer) and scorer.dimension == 3
    with pytest.raises(ScorerError, match="unknown backend 'llamas'"):
        create_scorer("embedding", backend="llamas")
