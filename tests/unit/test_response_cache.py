from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from semcascade.errors import RateLimitError, SemcascadeError
from semcascade.providers import Choice, Completion, CompletionRequest, MockProvider, Provider, TokenLogprob
from semcascade.response_cache import (
    CacheError,
    CachingProvider,
    ResponseCache,
    request_key,
)

REPO = Path(__file__).resolve().parents[2]


def req(content: str = "What is 2+2?", **kw: Any) -> CompletionRequest:
    return CompletionRequest(model="tiny", messages=[{"role": "user", "content": content}], **kw)


class Drawer:
    """Mock handler: every choice is a fresh, unique draw ('<content>#<k>')."""

    def __init__(self, prompt_tokens: int = 7, delay: float = 0.0) -> None:
        self.draws = 0
        self.prompt_tokens = prompt_tokens
        self.delay = delay

    async def __call__(self, request: CompletionRequest) -> Completion:
        if self.delay:
            await asyncio.sleep(self.delay)
        texts = []
        for _ in range(request.n):
            self.draws += 1
            texts.append(f"{request.messages[-1]['content']}#{self.draws}")
        return MockProvider.texts(request.model + "-served", texts, prompt_tokens=self.prompt_tokens)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ResponseCache]:
    c = ResponseCache(tmp_path / "sub" / "dir" / "responses.sqlite")
    yield c
    c.close()


def texts(c: Completion) -> list[str]:
    return [ch.text for ch in c.choices]


# --------------------------------------------------------------------------- keys


def test_key_ignores_transport_and_n() -> None:
    base = request_key(req())
    assert len(base) == 64
    assert request_key(req(api_key="sk-one")) == base
    assert request_key(req(api_key="sk-two", timeout=3.0, api_base="http://other:1/v1", tier="cheap", n=9)) == base
    assert request_key(req(extra={"api_key": "sk-x", "timeout": 5, "headers": {"A": "b"}})) == base
    # same values in other container types / spellings
    assert request_key(req(temperature=1)) == request_key(req(temperature=1.0))
    assert request_key(req(stop=("a", "b"))) == request_key(req(stop=["a", "b"]))
    assert request_key(req(stop=[])) == base
    assert request_key(req(top_logprobs=5)) == base  # not sent without logprobs


@pytest.mark.parametrize(
    "change",
    [
        {"model": "other"},
        {"messages": [{"role": "user", "content": "What is 2+3?"}]},
        {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "What is 2+2?"}]},
        {"temperature": 0.0},
        {"max_tokens": 17},
        {"seed": 1},
        {"stop": ["\n"]},
        {"logprobs": True},
        {"extra": {"top_p": 0.9}},
    ],
)
def test_key_changes_with_sampling_params(change: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"model": "tiny", "messages": [{"role": "user", "content": "What is 2+2?"}]}
    fields.update(change)
    assert request_key(CompletionRequest(**fields)) != request_key(req())


def test_key_distinguishes_top_logprobs_when_logprobs_on() -> None:
    assert request_key(req(logprobs=True, top_logprobs=3)) != request_key(req(logprobs=True, top_logprobs=5))


def test_unkeyable_extra_is_a_clear_error() -> None:
    with pytest.raises(CacheError, match="extra"):
        request_key(req(extra={"fn": object()}))


# --------------------------------------------------------------------------- hit / miss


async def test_second_identical_call_is_served_from_cache(cache: ResponseCache) -> None:
    drawer = Drawer(prompt_tokens=11)
    inner = MockProvider(drawer)
    provider = CachingProvider(inner, cache)
    assert isinstance(provider, Provider)

    first = await provider.complete(req(n=2))
    assert provider.last_cached is False
    second = await provider.complete(req(n=2, api_key="sk-different", timeout=1.0))
    assert provider.last_cached is True
    assert len(inner.calls) == 1
    assert second == first  # same texts, tokens, finish reasons, model, prompt_tokens
    assert second.prompt_tokens == 11 and second.model == "tiny-served"
    assert (provider.stats.hits, provider.stats.misses, provider.stats.paid_calls) == (1, 1, 1)
    assert provider.stats.cached_samples == 2 and provider.stats.paid_samples == 2

    third = await provider.complete(req(n=2, temperature=0.2))  # different params -> miss
    assert len(inner.calls) == 2
    assert texts(third) != texts(first)
    assert provider.stats.misses == 2


async def test_cache_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as c1:
        p1 = CachingProvider(MockProvider(Drawer()), c1)
        first = await p1.complete(req(n=3))
    with ResponseCache(path) as c2:
        inner = MockProvider(Drawer())
        again = await CachingProvider(inner, c2).complete(req(n=3))
    assert inner.calls == []
    assert again == first


async def test_choices_round_trip_exactly(cache: ResponseCache) -> None:
    lps = (
        TokenLogprob("Four", -0.25, {"Four": -0.25, "4": -1.5}),
        TokenLogprob(".", -math.inf, {}),
    )
    original = Completion(
        model="m",
        choices=(
            Choice("Four.", 2, "stop", lps, False),
            Choice("", 0, None, None, True),
            Choice("naïve – ünïcode ✓", 5, "length", None, True),
        ),
        prompt_tokens=123,
    )
    inner = MockProvider(lambda r: original)
    provider = CachingProvider(inner, cache)
    got = await provider.complete(req(n=3, logprobs=True))
    cached = await provider.complete(req(n=3, logprobs=True))
    assert len(inner.calls) == 1
    assert got == original
    assert cached == original
    assert cached.choices[0].logprobs is not None and cached.choices[0].logprobs[1].logprob == -math.inf


async def test_partial_top_up_only_pays_for_missing_samples(cache: ResponseCache) -> None:
    inner = MockProvider(Drawer(prompt_tokens=9))
    provider = CachingProvider(inner, cache)
    three = await provider.complete(req(n=3))
    five = await provider.complete(req(n=5))
    assert [c.n for c in inner.calls] == [3, 2]
    assert len(five.choices) == 5
    assert five.choices[:3] == three.choices
    assert len(set(texts(five))) == 5
    assert provider.stats.partial_hits == 1 and provider.stats.paid_samples == 5
    # fewer than cached: a hit on the prefix, no call
    two = await provider.complete(req(n=2))
    assert two.choices == three.choices[:2]
    assert len(inner.calls) == 2
    # the 5 are now all cached
    again = await provider.complete(req(n=5))
    assert again.choices == five.choices and len(inner.calls) == 2
    assert cache.count(request_key(req())) == 5


async def test_provider_returning_fewer_choices_is_topped_up_later(cache: ResponseCache) -> None:
    calls: list[int] = []

    def stingy(r: CompletionRequest) -> Completion:
        calls.append(r.n)
        return MockProvider.texts(r.model, [f"x{len(calls)}"])  # always one choice

    provider = CachingProvider(MockProvider(stingy), cache)
    got = await provider.complete(req(n=3))
    assert texts(got) == ["x1"]
    got = await provider.complete(req(n=3))
    assert calls == [3, 2]
    assert texts(got) == ["x1", "x2"]


async def test_errors_propagate_and_nothing_is_cached(cache: ResponseCache) -> None:
    boom = RateLimitError("rate-limited; retry later", model="tiny")
    fail = True

    def handler(r: CompletionRequest) -> Completion:
        if fail:
            raise boom
        return MockProvider.texts(r.model, ["ok"] * r.n)

    inner = MockProvider(handler)
    provider = CachingProvider(inner, cache)
    with pytest.raises(RateLimitError) as info:
        await provider.complete(req(n=2))
    assert info.value is boom
    assert cache.count() == 0
    assert provider.stats.failed_calls == 1 and provider.stats.paid_calls == 0

    fail = False
    got = await provider.complete(req(n=2))
    assert texts(got) == ["ok", "ok"] and len(inner.calls) == 2


async def test_concurrent_tasks_on_one_key_pay_once(cache: ResponseCache) -> None:
    inner = MockProvider(Drawer(delay=0.02))
    provider = CachingProvider(inner, cache)
    results = await asyncio.gather(*(provider.complete(req(n=2)) for _ in range(10)))
    assert len(inner.calls) == 1
    assert all(r == results[0] for r in results)
    others = await asyncio.gather(*(provider.complete(req(f"q{i}")) for i in range(10)))
    assert len(inner.calls) == 11 and len({texts(o)[0] for o in others}) == 10


async def test_recorded_latency_replays_the_original_call(cache: ResponseCache) -> None:
    provider = CachingProvider(MockProvider(Drawer(delay=0.05)), cache)
    assert await provider.recorded_latency(req(n=2)) is None
    paid = await provider.complete_with_info(req(n=2))
    assert not paid.cached and paid.latency_s >= 0.05 and paid.paid_samples == 2
    hit = await provider.complete_with_info(req(n=2))
    assert hit.cached and hit.cached_samples == 2 and hit.paid_samples == 0
    assert hit.latency_s == pytest.approx(paid.latency_s)
    assert provider.last_latency_s == pytest.approx(paid.latency_s)
    assert await provider.recorded_latency(req(n=2)) == pytest.approx(paid.latency_s)
    assert await provider.recorded_latency(req(n=3)) is None  # sample 2 was never drawn


async def test_write_failure_still_returns_the_paid_completion(cache: ResponseCache, monkeypatch: Any) -> None:
    def broken_put(*a: Any, **k: Any) -> Any:
        raise CacheError("cannot write: disk I/O error", path=cache.path)

    monkeypatch.setattr(cache, "put", broken_put)
    provider = CachingProvider(MockProvider(Drawer()), cache)
    with pytest.warns(RuntimeWarning, match="uncached"):
        got = await provider.complete(req(n=2))
    assert len(got.choices) == 2 and provider.stats.write_errors == 1


async def test_api_keys_are_never_written(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    secret, secret2 = "sk-SECRET-abcdef123456", "sk-EXTRA-987654zyx"
    with ResponseCache(path) as cache:
        provider = CachingProvider(MockProvider(Drawer()), cache)
        await provider.complete(req(n=2, api_key=secret, extra={"api_key": secret2}))
        blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        assert b"#1" in blob  # the rows are really in these files
        assert secret.encode() not in blob and secret2.encode() not in blob


# --------------------------------------------------------------------------- file validation


def test_new_cache_uses_wal_and_versioned_schema(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.sqlite"
    with ResponseCache(path) as cache:
        assert cache.journal_mode == "wal"
    con = sqlite3.connect(path)
    meta = dict(con.execute("SELECT key, value FROM semcascade_meta").fetchall())
    con.close()
    assert meta["format"] == "semcascade.response_cache" and meta["schema_version"] == "1"


def _assert_cache_error(path: Path) -> CacheError:
    with pytest.raises(CacheError) as info:
        ResponseCache(path)
    err = info.value
    assert isinstance(err, SemcascadeError)
    assert str(path) in str(err) and err.path == str(path)
    assert "delete" in str(err)
    return err


def test_garbage_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is definitely not a database\n" * 200)
    _assert_cache_error(path)
    assert path.read_bytes().startswith(b"this is definitely")  # left untouched


def test_corrupt_sqlite_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with ResponseCache(path):
        pass
    data = bytearray(path.read_bytes())
    data[100:] = b"\xa5" * (len(data) - 100)  # keep the 'SQLite format 3' header, smash the pages
    path.write_bytes(bytes(data))
    _assert_cache_error(path)


def test_foreign_sqlite_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    err = _assert_cache_error(path)
    assert "not a semcascade response cache" in str(err)


def test_wrong_schema_version_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with ResponseCache(path):
        pass
    con = sqlite3.connect(path)
    con.execute("UPDATE semcascade_meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    err = _assert_cache_error(path)
    assert "'99'" in str(err)


def test_closed_cache_raises(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.close()
    with pytest.raises(CacheError, match="closed"):
        cache.count()


# --------------------------------------------------------------------------- processes


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


HAMMER = textwrap.dedent(
    """
    import asyncio, json, random, sys
    from semcascade.providers import CompletionRequest, MockProvider
    from semcascade.response_cache import CachingProvider, ResponseCache

    db, wid, out, prompts = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    rng = random.Random(wid)
    draws = 0

    async def handler(req):
        global draws
        await asyncio.sleep(rng.random() * 0.004)
        texts = []
        for _ in range(req.n):
            draws += 1
            texts.append(f"w{wid}-d{draws}")
        return MockProvider.texts(req.model, texts)

    async def main():
        cache = ResponseCache(db)  # all workers open a not-yet-existing file at once
        provider = CachingProvider(MockProvider(handler), cache)
        plan = [(p, rng.randint(1, 4)) for p in range(prompts) for _ in range(3)]
        rng.shuffle(plan)
        sem = asyncio.Semaphore(6)
        results = []

        async def one(p, n):
            async with sem:
                req = CompletionRequest(model="m", messages=[{"role": "user", "content": f"q{p}"}], n=n)
                c = await provider.complete(req)
                results.append([p, n, [ch.text for ch in c.choices]])

        await asyncio.gather(*(one(p, n) for p, n in plan))
        cache.close()
        with open(out, "w") as f:
            json.dump({"results": results, "paid": provider.stats.paid_calls}, f)

    asyncio.run(main())
    """
)


def test_four_processes_share_one_cache_file(tmp_path: Path) -> None:
    db = tmp_path / "shared" / "cache.sqlite"
    script = tmp_path / "hammer.py"
    script.write_text(HAMMER)
    prompts = 25
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(db), str(w), str(tmp_path / f"out{w}.json"), str(prompts)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for w in range(4)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()
        assert b"Traceback" not in err, err.decode()

    outputs = [json.loads((tmp_path / f"out{w}.json").read_text()) for w in range(4)]
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = con.execute("SELECT request_key, sample_index, text FROM choices").fetchall()
    dupes = con.execute(
        "SELECT count(*) FROM (SELECT 1 FROM choices GROUP BY request_key, sample_index HAVING count(*) > 1)"
    ).fetchone()[0]
    con.close()
    assert dupes == 0
    stored = {(k, i): t for k, i, t in rows}
    assert len(stored) == len(rows)

    key_of = {
        p: request_key(CompletionRequest(model="m", messages=[{"role": "user", "content": f"q{p}"}]))
        for p in range(prompts)
    }
    max_n = {p: 0 for p in range(prompts)}
    for o in outputs:
        for p, n, got in o["results"]:
            max_n[p] = max(max_n[p], n)
            # every reader sees sample i of a key as the same text, whoever drew it
            assert got == [stored[(key_of[p], i)] for i in range(n)]
    for p in range(prompts):
        assert sorted(i for k, i in stored if k == key_of[p]) == list(range(max_n[p]))
    assert len(stored) == sum(max_n.values())
    # each worker paid at most once per (prompt, call); all together drew every stored sample
    assert sum(o["paid"] for o in outputs) >= prompts


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from semcascade.providers import CompletionRequest, MockProvider
    from semcascade.response_cache import CachingProvider, ResponseCache

    db, prompts = sys.argv[1], int(sys.argv[2])

    async def handler(req):
        await asyncio.sleep(0.002)
        q = req.messages[0]["content"]
        return MockProvider.texts(req.model, [f"{q}-answer-{i}" for i in range(req.n)], prompt_tokens=5)

    async def main():
        provider = CachingProvider(MockProvider(handler), ResponseCache(db))
        for p in range(prompts):
            req = CompletionRequest(model="m", messages=[{"role": "user", "content": f"q{p}"}], n=3)
            await provider.complete(req)
            print(p, flush=True)

    asyncio.run(main())
    """
)


async def test_kill_9_loses_no_committed_rows_and_resume_pays_only_for_missing(tmp_path: Path) -> None:
    db = tmp_path / "cache.sqlite"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    prompts = 600
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(prompts)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    reported: list[int] = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while len(reported) < 60:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"writer exited early: {proc.wait()} {proc.stderr.read().decode() if proc.stderr else ''}")
        reported.append(int(line))
        assert time.monotonic() < deadline
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    proc.stdout.close()
    if proc.stderr:
        proc.stderr.close()

    def key(p: int) -> str:
        return request_key(CompletionRequest(model="m", messages=[{"role": "user", "content": f"q{p}"}]))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache = ResponseCache(db)  # opens fine after kill -9 (recovers the WAL)
    try:
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.close()
        present = cache.keys()
        # every reported call is there, intact
        for p in reported:
            got = cache.get(key(p), 3)
            assert [s.choice.text for s in got] == [f"q{p}-answer-{i}" for i in range(3)]
            assert all(s.prompt_tokens == 5 and s.model == "m" for s in got)
        # a call's samples are committed together: never a key with 1 or 2 rows
        assert set(present.values()) == {3}
        assert len(present) >= len(reported)
        assert len(present) < prompts, "the writer finished before it was killed; the test proved nothing"

        inner = MockProvider(lambda r: MockProvider.texts(r.model, [f"resumed-{i}" for i in range(r.n)]))
        provider = CachingProvider(inner, cache)
        sem = asyncio.Semaphore(16)

        async def one(p: int) -> Completion:
            async with sem:
                return await provider.complete(
                    CompletionRequest(model="m", messages=[{"role": "user", "content": f"q{p}"}], n=3)
                )

        results = await asyncio.gather(*(one(p) for p in range(prompts)))
        assert len(inner.calls) == prompts - len(present)
        assert provider.stats.hits == len(present)
        for p, r in enumerate(results):
            expected = f"q{p}-answer-0" if key(p) in present else "resumed-0"
            assert r.choices[0].text == expected
        assert cache.count() == 3 * prompts
    finally:
        cache.close()


async def test_single_sample_calls_of_one_tier_are_cached_as_different_samples(tmp_path: Path) -> None:
    """A backend without native n gets k identical n=1 calls: the cache must keep k samples, not one."""
    import itertools

    from semcascade import Cascade, MockProvider
    from semcascade.response_cache import CachingProvider, ResponseCache

    counter = itertools.count()

    def answer(req: CompletionRequest) -> Completion:
        return MockProvider.texts(req.model, [f"sample {next(counter)}"])

    cfg = {"tiers": [{"name": "t", "model": "anthropic/m", "k": 3, "native_n": False, "threshold": 0.0}],
           "scorer": {"name": "lexical"}}  # fmt: skip
    cached = CachingProvider(MockProvider(answer), ResponseCache(tmp_path / "c.sqlite"))
    first = await Cascade(cfg, provider=cached).generate("q")
    texts = sorted(s.text for s in first.trace[0].samples)
    assert texts == ["sample 0", "sample 1", "sample 2"]
    again = await Cascade(cfg, provider=cached).generate("q")  # served from the cache, still 3 samples
    assert sorted(s.text for s in again.trace[0].samples) == texts and next(counter) == 3
