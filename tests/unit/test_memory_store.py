"""Strategy stores: retrieval threshold, dedup, cap/eviction, persistence across processes, bad files."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semcascade.memory import (
    InMemoryStrategyStore,
    MemoryConfig,
    MemoryStoreError,
    SQLiteStrategyStore,
    StrategyEntry,
    StrategyStore,
    available_stores,
    create_store,
    query_hash,
)

REPO = Path(__file__).resolve().parents[2]


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def entry(q: np.ndarray, s: np.ndarray, text: str, query: str | None = None) -> StrategyEntry:
    return StrategyEntry(
        query_embedding=q,
        strategy_embedding=s,
        strategy=text,
        source_model="openai/strong",
        source_tier="strong",
        agreement=0.9,
        query_hash=query_hash(query or text),
    )


MakeStore = Callable[..., StrategyStore]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    made: list[StrategyStore] = []

    def make(**kw: Any) -> StrategyStore:
        if request.param == "memory":
            st: StrategyStore = InMemoryStrategyStore(**kw)
        else:
            st = SQLiteStrategyStore(tmp_path / f"s{len(made)}.sqlite", **kw)
        made.append(st)
        return st

    yield make
    for st in made:
        st.close()


def test_search_respects_threshold_and_top_k(make_store: MakeStore) -> None:
    st = make_store()
    st.add(entry(unit(1, 0, 0), unit(1, 0, 0), "A", "qa"))
    st.add(entry(unit(1, 1, 0), unit(0, 1, 0), "B", "qb"))  # cos with (1,0,0) = 0.707
    st.add(entry(unit(0, 0, 1), unit(0, 0, 1), "C", "qc"))  # cos 0
    hits = st.search(unit(1, 0, 0), top_k=5, min_similarity=0.5)
    assert [h.entry.strategy for h in hits] == ["A", "B"]
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-6)
    assert hits[1].similarity == pytest.approx(0.7071, abs=1e-3)
    assert [h.entry.strategy for h in st.search(unit(1, 0, 0), top_k=1, min_similarity=0.5)] == ["A"]
    assert [h.entry.strategy for h in st.search(unit(1, 0, 0), top_k=5, min_similarity=0.8)] == ["A"]
    assert st.search(unit(0, 1, -1), top_k=5, min_similarity=0.8) == []
    assert hits[0].entry.source_model == "openai/strong" and hits[0].entry.agreement == pytest.approx(0.9)


def test_near_duplicate_strategies_are_skipped(make_store: MakeStore) -> None:
    st = make_store(dedup_similarity=0.9)
    first = st.add(entry(unit(1, 0, 0), unit(1, 0, 0), "Recall the author.", "q1"))
    assert first.added and first.id is not None
    dup = st.add(entry(unit(0, 1, 0), unit(1, 0.1, 0), "Recall the author!", "q2"))  # strategy cos 0.995
    assert not dup.added and dup.id == first.id and "near-duplicate" in dup.reason
    other = st.add(entry(unit(0, 1, 0), unit(1, 1, 0), "Something else.", "q3"))  # cos 0.707 < 0.9
    assert other.added
    same_query = st.add(entry(unit(0, 0, 1), unit(0, 0, 1), "New advice.", "q1"))
    assert not same_query.added and "same query" in same_query.reason
    assert st.count() == 2


def test_cap_evicts_oldest(make_store: MakeStore) -> None:
    st = make_store(max_entries=2, eviction="oldest", dedup_similarity=0.99)
    for i, v in enumerate([unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)]):
        r = st.add(entry(v, v, f"S{i}", f"q{i}"))
        assert r.added and r.evicted == (1 if i == 2 else 0)
    assert st.count() == 2
    left = {h.entry.strategy for h in st.search(unit(1, 1, 1), top_k=5, min_similarity=-1.0)}
    assert left == {"S1", "S2"}


def test_cap_evicts_least_recently_used(make_store: MakeStore) -> None:
    st = make_store(max_entries=2, eviction="lru", dedup_similarity=0.99)
    st.add(entry(unit(1, 0, 0), unit(1, 0, 0), "S0", "q0"))
    st.add(entry(unit(0, 1, 0), unit(0, 1, 0), "S1", "q1"))
    assert [h.entry.strategy for h in st.search(unit(1, 0, 0), top_k=1, min_similarity=0.9)] == ["S0"]  # S0 used
    st.add(entry(unit(0, 0, 1), unit(0, 0, 1), "S2", "q2"))
    left = {h.entry.strategy for h in st.search(unit(1, 1, 1), top_k=5, min_similarity=-1.0)}
    assert left == {"S0", "S2"}  # S1 was never retrieved: evicted first


def test_embedding_size_mismatch_is_a_typed_error(make_store: MakeStore) -> None:
    st = make_store()
    st.add(entry(unit(1, 0, 0), unit(1, 0, 0), "A", "qa"))
    with pytest.raises(MemoryStoreError, match="embedding size 4"):
        st.search(unit(1, 0, 0, 0), top_k=1, min_similarity=0.0)
    with pytest.raises(MemoryStoreError, match="embedding size 4"):
        st.add(entry(unit(1, 0, 0, 0), unit(1, 0, 0, 0), "B", "qb"))
    with pytest.raises(MemoryStoreError, match="NaN"):
        st.search(np.array([np.nan, 1, 0], dtype=np.float32), top_k=1, min_similarity=0.0)
    with pytest.raises(MemoryStoreError, match="top_k"):
        st.search(unit(1, 0, 0), top_k=0, min_similarity=0.0)


def test_bad_store_options_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(MemoryStoreError, match="max_entries"):
        InMemoryStrategyStore(max_entries=0)
    with pytest.raises(MemoryStoreError, match="eviction"):
        SQLiteStrategyStore(tmp_path / "x.sqlite", eviction="random")  # type: ignore[arg-type]
    with pytest.raises(MemoryStoreError, match="unknown strategy store 'redis'; choose one of: memory, sqlite"):
        create_store("redis")
    assert available_stores() == ["memory", "sqlite"]


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(MemoryStoreError, match="is not a semcascade strategy store"):
        SQLiteStrategyStore(path)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(MemoryStoreError, match=r"garbage\.sqlite"):
        SQLiteStrategyStore(garbage)


def test_default_path_is_under_the_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMCASCADE_CACHE", str(tmp_path / "cache"))
    st = create_store("sqlite")
    assert isinstance(st, SQLiteStrategyStore)
    assert st.path == tmp_path / "cache" / "strategies.sqlite" and st.path.exists()
    st.close()


def test_memory_config_validation() -> None:
    assert MemoryConfig().enabled is False  # off by default
    with pytest.raises(ValueError, match="path must not be empty"):
        MemoryConfig(path=" ")
    with pytest.raises(ValueError):
        MemoryConfig(top_k=0)


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from semcascade.memory import SQLiteStrategyStore, StrategyEntry, query_hash
    path, text, x = sys.argv[1], sys.argv[2], float(sys.argv[3])
    v = np.asarray([x, 1.0 - x, 0.0], dtype=np.float32)
    with SQLiteStrategyStore(path) as st:
        r = st.add(StrategyEntry(query_embedding=v, strategy_embedding=v, strategy=text, source_model="m",
                                 source_tier="strong", agreement=1.0, query_hash=query_hash(text)))
        print(r.added)
    """
)
_READER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from semcascade.memory import SQLiteStrategyStore
    with SQLiteStrategyStore(sys.argv[1]) as st:
        hits = st.search(np.asarray([1.0, 0.0, 0.0], dtype=np.float32), top_k=5, min_similarity=0.5)
        print(json.dumps({"count": st.count(), "hits": [h.entry.strategy for h in hits]}))
    """
)


def _py(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_store_persists_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    assert _py(_WRITER, path, "Advice one.", "1.0") == "True"
    # this process's open store sees the other process's write (its cached matrix is reloaded)
    mine = SQLiteStrategyStore(path)
    assert [h.entry.strategy for h in mine.search(unit(1, 0, 0), top_k=5, min_similarity=0.0)] == ["Advice one."]
    assert _py(_WRITER, path, "Advice two.", "0.0") == "True"
    assert _py(_WRITER, path, "Advice one.", "1.0") == "False"  # same query hash from another process: skipped
    assert {h.entry.strategy for h in mine.search(unit(1, 1, 0), top_k=5, min_similarity=0.0)} == {
        "Advice one.",
        "Advice two.",
    }
    mine.close()
    assert json.loads(_py(_READER, path)) == {"count": 2, "hits": ["Advice one."]}
