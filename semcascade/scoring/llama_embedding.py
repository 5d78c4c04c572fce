"""The ``llama`` embedding backend: a local GGUF embedding model behind ``llama-server --embedding``.

:class:`LlamaEmbeddingClient` posts texts to the OpenAI-style ``/v1/embeddings``
route (httpx, sync: the embedding scorer calls it from its worker thread),
prepends the model's symmetric task prefix (``"clustering: "`` for
nomic-embed-text-v1.5, the same on both sides of a pair), and L2-normalises
the rows. :class:`LlamaEncoder` owns a managed
:class:`~semcascade.local.embed_server.EmbeddingServer` (started in its
constructor, stopped at exit) or talks to a server at ``base_url``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from semcascade.errors import ScorerError

__all__ = ["DEFAULT_LLAMA_EMBEDDING_MODEL", "LlamaEmbeddingClient", "LlamaEncoder"]

FloatArray = npt.NDArray[np.float32]

#: the ``model`` of ``{backend: llama}`` when none is given
DEFAULT_LLAMA_EMBEDDING_MODEL = "nomic-embed-text-v1.5"


class LlamaEmbeddingClient:
    """``embed(texts)`` through ``POST {base_url}/v1/embeddings``, at most ``max_inputs`` texts a request."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        prefix: str = "",
        dimension: int | None = None,
        timeout: float = 300.0,
        max_inputs: int = 64,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if max_inputs < 1:
            raise ScorerError(f"llama embedding client: max_inputs must be >= 1, got {max_inputs}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.prefix = prefix
        self.dimension = dimension
        self.max_inputs = max_inputs
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def embed(self, texts: Sequence[str], max_inputs: int | None = None) -> FloatArray:
        """One L2-normalised row per text, in order (``prefix`` prepended to each)."""
        texts = list(texts)
        step = max_inputs or self.max_inputs
        rows: list[FloatArray] = []
        for start in range(0, len(texts), step):
            rows.append(self._post([self.prefix + t for t in texts[start : start + step]]))
        if not rows:
            return np.zeros((0, self.dimension or 0), dtype=np.float32)
        return np.concatenate(rows, axis=0)

    def _post(self, inputs: list[str]) -> FloatArray:
        where = f"{self.base_url}/v1/embeddings"
        try:
            response = self._client.post("/v1/embeddings", json={"model": self.model, "input": inputs})
        except httpx.HTTPError as exc:
            raise ScorerError(
                f"embedding scorer: the llama embedding server at {where} did not answer ({exc.__class__.__name__}: "
                f"{exc}); is it running? (backend llama starts one unless base_url is given)"
            ) from None
        if response.status_code != 200:
            raise ScorerError(
                f"embedding scorer: {where} answered HTTP {response.status_code}: {response.text[:200]!r}"
            )
        return self._parse(response, len(inputs), where)

    def _parse(self, response: httpx.Response, n: int, where: str) -> FloatArray:
        try:
            payload: Any = response.json()
            data = sorted(payload["data"], key=lambda d: int(d["index"]))
            matrix = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise ScorerError(
                f"embedding scorer: {where} sent a malformed embeddings response ({exc.__class__.__name__}: {exc})"
            ) from None
        if matrix.ndim != 2 or matrix.shape[0] != n:
            raise ScorerError(f"embedding scorer: {where} returned {matrix.shape[0]} embeddings for {n} texts")
        if self.dimension is not None and matrix.shape[1] != self.dimension:
            raise ScorerError(
                f"embedding scorer: {where} returned {matrix.shape[1]}-dimensional embeddings, "
                f"expected {self.dimension} (a different model behind that server?)"
            )
        if not np.all(np.isfinite(matrix)):
            raise ScorerError(f"embedding scorer: {where} returned non-finite embeddings")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        out: FloatArray = (matrix / np.clip(norms, 1e-12, None)).astype(np.float32)
        return out


class LlamaEncoder:
    """The embedding scorer's encoder for ``backend: llama`` (see :mod:`semcascade.scoring.embedding`).

    ``base_url=None`` starts a managed embedding server for ``model`` (extracting the GGUF once);
    otherwise the server at ``base_url`` must serve ``model``. ``threads``: the managed server's
    CPU threads. ``client``: a ready client (tests pass one on an ``httpx.MockTransport``).
    """

    def __init__(
        self,
        model: str = DEFAULT_LLAMA_EMBEDDING_MODEL,
        *,
        base_url: str | None = None,
        threads: int = 1,
        client: LlamaEmbeddingClient | None = None,
    ) -> None:
        from semcascade.errors import LocalServerError
        from semcascade.local.embedders import embedding_model_spec

        try:
            spec = embedding_model_spec(model)
        except LocalServerError as exc:
            raise ScorerError(f"embedding scorer: {exc}") from None
        self.model = spec.name
        self.dimension = spec.dimension
        self.server: Any = None
        if client is None:
            if base_url is None:
                from semcascade.local.embed_server import EmbeddingServer

                try:
                    self.server = EmbeddingServer(spec.name, threads=threads).start()
                except LocalServerError as exc:
                    raise ScorerError(f"embedding scorer (backend llama): {exc}") from None
                base_url = self.server.url
            client = LlamaEmbeddingClient(base_url, spec.name, prefix=spec.symmetric_prefix, dimension=spec.dimension)
        self.client = client
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int) -> FloatArray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:  # one request at a time: the server already uses its threads
            return self.client.embed(texts, max_inputs=batch_size)

    def close(self) -> None:
        self.client.close()
        if self.server is not None:
            self.server.stop()
