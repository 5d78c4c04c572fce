"""Merge concurrent encode requests into one encoder call (the embedding scorer's batching).

Requests from any thread or event loop are queued; one worker thread takes
what has arrived (waiting up to ``window_s`` after the first for company,
until ``max_batch`` texts), encodes the distinct texts in one call, and hands
each request its rows. While it encodes, new requests queue up for the next
call, so a busy scorer batches even with no window. The worker exits when
idle and is started again on demand.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["EncodeBatcher"]

FloatArray = npt.NDArray[np.float32]
#: seconds an idle worker waits for new requests before it exits
_IDLE_S = 2.0


@dataclass
class _Request:
    texts: Sequence[str]
    future: concurrent.futures.Future[FloatArray] = field(default_factory=concurrent.futures.Future)


class EncodeBatcher:
    """``encode(texts)`` for many callers at once, through one ``encode_many(texts)`` call per batch.

    ``window_s``: how long the worker waits after the first request of a batch
    for others (0: take only what is queued). ``max_batch``: the most texts one
    call gets (a single larger request is encoded alone, whole).
    :attr:`calls` counts the encoder calls made.
    """

    def __init__(self, encode_many: Callable[[list[str]], FloatArray], *, window_s: float, max_batch: int) -> None:
        if window_s < 0 or max_batch < 1:
            raise ValueError(f"window_s must be >= 0 and max_batch >= 1, got {window_s}, {max_batch}")
        self._encode_many = encode_many
        self.window_s = window_s
        self.max_batch = max_batch
        self._queue: list[_Request] = []
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self.calls = 0

    def submit(self, texts: Sequence[str]) -> concurrent.futures.Future[FloatArray]:
        """Queue ``texts``; the future gets their embeddings, one row per text, in order."""
        request = _Request(list(texts))
        with self._cond:
            self._queue.append(request)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="semcascade-embed-batcher", daemon=True)
                self._worker.start()
            self._cond.notify()
        return request.future

    def encode(self, texts: Sequence[str]) -> FloatArray:
        """Blocking: the embeddings of ``texts`` (merged with whatever else is being encoded)."""
        return self.submit(texts).result()

    async def aencode(self, texts: Sequence[str]) -> FloatArray:
        """The embeddings of ``texts``, awaited in any event loop."""
        return await asyncio.wrap_future(self.submit(texts))

    # ------------------------------------------------------------------ the worker

    def _take(self) -> list[_Request] | None:
        """The next batch (``None``: idle long enough to exit)."""
        with self._cond:
            if not self._queue and not self._cond.wait_for(lambda: bool(self._queue), timeout=_IDLE_S):
                self._worker = None
                return None
            deadline = time.monotonic() + self.window_s
            while sum(len(r.texts) for r in self._queue) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    break
            batch: list[_Request] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].texts) <= self.max_batch):
                request = self._queue.pop(0)
                batch.append(request)
                size += len(request.texts)
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            live = [r for r in batch if r.future.set_running_or_notify_cancel()]  # skip cancelled waiters
            if live:
                self._encode(live)

    def _encode(self, batch: list[_Request]) -> None:
        row: dict[str, int] = {}
        for request in batch:
            for text in request.texts:
                row.setdefault(text, len(row))
        try:
            self.calls += 1
            vectors = self._encode_many(list(row))
        except BaseException as exc:  # every waiter learns of it; the worker carries on
            for request in batch:
                request.future.set_exception(exc)
            return
        for request in batch:
            request.future.set_result(vectors[[row[t] for t in request.texts]])
