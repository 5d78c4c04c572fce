"""An LRU cache (plus an identical-text shortcut) in front of any agreement scorer.

NLI scorers are slow (a model call per direction), and a cascade judges the
same pairs again when a prompt is repeated. :class:`CachedScorer`:

* answers a pair whose two texts normalise identically
  (:func:`semcascade.text.normalize_answer`) with ``PairJudgement(1.0, 1.0, 0.0)``
  without asking the inner scorer;
* looks every other pair up by ``(question, a, b)``; a pair cached in the
  other order ``(question, b, a)`` is reused with its directions swapped;
* sends only the uncached pairs (each distinct one once) to the inner scorer,
  in a single batched ``judge`` call, and stores the results.

Two concurrent ``judge`` calls that miss on the same pair both ask the inner
scorer; the cache is not shared between processes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from semcascade.errors import ScorerError
from semcascade.scoring.base import AgreementScorer, PairJudgement, ScorerKind
from semcascade.text import normalize_answer

__all__ = ["CachedScorer"]

_Key = tuple[str, str, str]
_IDENTICAL = PairJudgement(forward=1.0, backward=1.0, contradiction=0.0)


def _swap(j: PairJudgement) -> PairJudgement:
    return PairJudgement(forward=j.backward, backward=j.forward, contradiction=j.contradiction)


class CachedScorer:
    """Wraps ``inner`` (same ``name`` and ``kind``) with an LRU cache of at most ``maxsize`` pairs.

    Counters: ``hits`` (pairs answered from the cache, including repeats within
    one call), ``shortcuts`` (identical-text pairs), ``misses`` (pairs sent to
    the inner scorer).
    """

    def __init__(self, inner: AgreementScorer, maxsize: int = 4096) -> None:
        if maxsize < 0:
            raise ScorerError(f"CachedScorer: maxsize must be >= 0, got {maxsize}; use 0 to disable caching")
        self.inner = inner
        self.name: str = inner.name
        self.kind: ScorerKind = inner.kind
        self.maxsize = maxsize
        self._cache: OrderedDict[_Key, PairJudgement] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.shortcuts = 0

    def __repr__(self) -> str:
        return f"CachedScorer({self.inner!r}, maxsize={self.maxsize})"

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        """Forget every cached judgement and reset the counters."""
        self._cache.clear()
        self.hits = self.misses = self.shortcuts = 0

    def _lookup(self, key: _Key) -> PairJudgement | None:
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        q, a, b = key
        swapped = self._cache.get((q, b, a))
        if swapped is not None:
            self._cache.move_to_end((q, b, a))
            return _swap(swapped)
        return None

    def _store(self, key: _Key, judgement: PairJudgement) -> None:
        if self.maxsize == 0:
            return
        self._cache[key] = judgement
        self._cache.move_to_end(key)
        while len(self._cache) > self.maxsize:
            self._cache.popitem(last=False)

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        results: list[PairJudgement | None] = [None] * len(pairs)
        pending: dict[_Key, list[int]] = {}  # distinct uncached key -> positions wanting it
        for i, (a, b) in enumerate(pairs):
            if a == b or normalize_answer(a) == normalize_answer(b):
                results[i] = _IDENTICAL
                self.shortcuts += 1
                continue
            key = (question, a, b)
            cached = self._lookup(key)
            if cached is not None:
                results[i] = cached
                self.hits += 1
            elif key in pending:
                pending[key].append(i)
                self.hits += 1
            elif (question, b, a) in pending:
                pending[(question, b, a)].append(-1 - i)  # negative: wants the swapped judgement
                self.hits += 1
            else:
                pending[key] = [i]
                self.misses += 1
        if pending:
            keys = list(pending)
            fresh = await self.inner.judge(question, [(a, b) for _, a, b in keys])
            if len(fresh) != len(keys):
                raise ScorerError(
                    f"scorer {self.name!r} returned {len(fresh)} judgements for {len(keys)} pairs; "
                    "a scorer must return exactly one judgement per pair"
                )
            for key, judgement in zip(keys, fresh, strict=True):
                self._store(key, judgement)
                for pos in pending[key]:
                    if pos >= 0:
                        results[pos] = judgement
                    else:
                        results[-1 - pos] = _swap(judgement)
        out = [r for r in results if r is not None]
        assert len(out) == len(pairs)
        return out
