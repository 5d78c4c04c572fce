from __future__ import annotations

from collections.abc import Sequence

import pytest

from semcascade.errors import ScorerError
from semcascade.scoring.base import AgreementScorer, PairJudgement, ScorerKind
from semcascade.scoring.cache import CachedScorer


class FakeNLI:
    """Directional fake: forward = len(a) / 100, backward = len(b) / 100; records every call."""

    name = "fake"
    kind: ScorerKind = "nli"

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]]]] = []

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        self.calls.append((question, list(pairs)))
        return [PairJudgement(len(a) / 100, len(b) / 100, 0.25) for a, b in pairs]


@pytest.fixture
def inner() -> FakeNLI:
    return FakeNLI()


async def test_second_call_is_served_from_cache(inner: FakeNLI) -> None:
    cached = CachedScorer(inner)
    pairs = [("Paris", "Lyon"), ("Paris", "Berlin")]
    first = await cached.judge("q", pairs)
    second = await cached.judge("q", pairs)
    assert first == second == [PairJudgement(0.05, 0.04, 0.25), PairJudgement(0.05, 0.06, 0.25)]
    assert len(inner.calls) == 1
    assert (cached.hits, cached.misses, cached.shortcuts) == (2, 2, 0)


async def test_only_uncached_pairs_go_to_inner_in_one_batch(inner: FakeNLI) -> None:
    cached = CachedScorer(inner)
    await cached.judge("q", [("Paris", "Lyon")])
    out = await cached.judge("q", [("Paris", "Lyon"), ("Rome", "Oslo"), ("Paris", "Berlin")])
    assert inner.calls[1] == ("q", [("Rome", "Oslo"), ("Paris", "Berlin")])
    assert [j.forward for j in out] == [0.05, 0.04, 0.05]  # order preserved


async def test_identical_text_shortcut_skips_inner(inner: FakeNLI) -> None:
    cached = CachedScorer(inner)
    out = await cached.judge("q", [("Paris", "paris."), ("The Paris", "Paris"), ("x", "x")])
    assert out == [PairJudgement(1.0, 1.0, 0.0)] * 3
    assert inner.calls == []
    assert cached.shortcuts == 3 and cached.misses == 0


async def test_swapped_pair_reuses_cache_with_directions_swapped(inner: FakeNLI) -> None:
    cached = CachedScorer(inner)
    (ab,) = await cached.judge("q", [("Paris", "Berlin")])
    (ba,) = await cached.judge("q", [("Berlin", "Paris")])
    assert len(inner.calls) == 1
    assert (ba.forward, ba.backward, ba.contradiction) == (ab.backward, ab.forward, ab.contradiction)


async def test_duplicates_within_one_call_are_sent_once(inner: FakeNLI) -> None:
    cached = CachedScorer(inner)
    out = await cached.judge("q", [("ab", "abcd"), ("ab", "abcd"), ("abcd", "ab")])
    assert inner.calls == [("q", [("ab", "abcd")])]
    assert out[0] == out[1] == PairJudgement(0.02, 0.04, 0.25)
    assert out[2] == PairJudgement(0.04, 0.02, 0.25)
    assert cached.misses == 1 and cached.hits == 2


async def test_key_includes_question(inner: FakeNLI) -> None:
    cached = CachedScorer(inner)
    await cached.judge("q1", [("a", "b")])
    await cached.judge("q2", [("a", "b")])
    assert [c[0] for c in inner.calls] == ["q1", "q2"]


async def test_lru_eviction(inner: FakeNLI) -> None:
    cached = CachedScorer(inner, maxsize=2)
    await cached.judge("q", [("a", "b"), ("c", "d")])
    await cached.judge("q", [("a", "b")])  # refreshes (a, b): (c, d) is now least recent
    await cached.judge("q", [("e", "f")])  # evicts (c, d)
    assert len(cached) == 2
    await cached.judge("q", [("a", "b")])
    assert len(inner.calls) == 2
    await cached.judge("q", [("c", "d")])
    assert len(inner.calls) == 3 and inner.calls[-1][1] == [("c", "d")]


async def test_maxsize_zero_disables_caching(inner: FakeNLI) -> None:
    cached = CachedScorer(inner, maxsize=0)
    await cached.judge("q", [("a", "b")])
    await cached.judge("q", [("a", "b")])
    assert len(inner.calls) == 2 and len(cached) == 0


async def test_clear_and_empty(inner: FakeNLI) -> None:
    cached = CachedScorer(inner)
    assert await cached.judge("q", []) == []
    await cached.judge("q", [("a", "b")])
    cached.clear()
    assert len(cached) == 0 and cached.misses == 0
    await cached.judge("q", [("a", "b")])
    assert len(inner.calls) == 2


async def test_wrong_number_of_judgements_is_an_error() -> None:
    class Broken(FakeNLI):
        async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
            return []

    with pytest.raises(ScorerError, match="exactly one judgement per pair"):
        await CachedScorer(Broken()).judge("q", [("a", "b")])


def test_forwards_name_and_kind(inner: FakeNLI) -> None:
    cached = CachedScorer(inner)
    assert isinstance(cached, AgreementScorer)
    assert (cached.name, cached.kind) == ("fake", "nli")
    assert cached.inner is inner
    assert "maxsize=4096" in repr(cached)
    with pytest.raises(ScorerError, match="maxsize"):
        CachedScorer(inner, maxsize=-1)


async def test_wraps_a_real_scorer() -> None:
    from semcascade.scoring.lexical import LexicalScorer

    cached = CachedScorer(LexicalScorer(question_mode="ignore"))
    out = await cached.judge("q", [("red car", "red bus"), ("Red car!", "red car")])
    assert out[0].forward == pytest.approx(0.5)
    assert out[1] == PairJudgement(1.0, 1.0, 0.0)
    assert cached.name == "lexical" and cached.kind == "similarity"
