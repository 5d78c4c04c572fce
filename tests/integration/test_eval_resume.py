"""A ``semcascade eval`` killed with SIGKILL mid-run and resumed loses no rows and repays no call.

The eval runs as a real subprocess (the CLI) against the loopback fault server
through the real LiteLLMProvider and the SQLite response cache. The server
answers the first requests, then holds one request unanswered (so the kill
lands at a known point: every answered call has been committed, the held one
was never paid for); the test kills the eval there with SIGKILL, runs the same
command again, and compares with an uninterrupted run on a fresh cache.

Integration-marked for its cost (two CLI subprocesses), not for the llama-server: it needs none.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from semcascade.evaluation.harness import run_eval
from semcascade.response_cache import ResponseCache
from semcascade.testing import FaultServer

REPO = Path(__file__).resolve().parents[2]
KEY_ENV = "SEMCASCADE_RESUME_TEST_KEY"
N = 8
CALLS_PER_EXAMPLE = 3  # cheap samples (n=3), cheap greedy, strong
ANSWERED_BEFORE_KILL = 10


def answer(model: str, prompt: str, index: int, rng: object) -> str:
    """Deterministic (same request, same text), so runs can be compared; the cheap tier disagrees sometimes."""
    h = int(hashlib.sha256(f"{model}|{prompt}".encode()).hexdigest(), 16)
    if model.endswith("cheap") and h % 2:
        return f"guess {index} {h % 97}"
    return f"answer {h % 1000}"


@pytest.fixture
def server() -> Any:
    with FaultServer(answer=answer, hang_s=600.0) as srv:
        yield srv


def write_config(path: Path, base_url: str) -> Path:
    def tier(name: str, **over: Any) -> dict[str, Any]:
        return {"name": name, "model": f"openai/{name}", "api_base": base_url, "api_key_env": KEY_ENV,
                "max_tokens": 8, "timeout": 120.0, "native_n": True, "input_cost_per_token": 1e-6,
                "output_cost_per_token": 2e-6, **over}  # fmt: skip

    cfg = {
        "tiers": [tier("cheap", k=3, threshold=0.6), tier("strong", k=1, temperature=0.0)],
        "scorer": {"name": "lexical"},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def eval_cmd(config: Path, cache: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "semcascade.cli", "eval", "--config", str(config), "--dataset", "nq", "--n", str(N),
            "--seed", "3", "--signals", "lexical", "--cache", str(cache), "--out", str(out)]  # fmt: skip


def rows(out: Path) -> dict[str, Any]:
    found = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    return {r["id"]: [t["samples"] + [t["greedy"]] for t in r["tiers"]] for r in found}


@pytest.mark.integration
async def test_killed_eval_resumes_without_lost_rows_or_repeated_paid_calls(
    server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "resume-test-dummy-key")
    config = write_config(tmp_path / "c.yaml", server.base_url)
    cache, out = tmp_path / "responses.sqlite", tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    # run 1: the server answers ANSWERED_BEFORE_KILL requests and holds the next one; kill -9 the eval then
    server.script(*["ok"] * ANSWERED_BEFORE_KILL, "hang")
    proc = subprocess.Popen(
        eval_cmd(config, cache, out), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while server.stats.by_fault["hang"] == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None and server.stats.by_fault["hang"] == 1, proc.communicate()[1].decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "examples.jsonl").exists()  # the run died before writing any report
    with ResponseCache(cache) as rc:
        committed_calls = len(rc.keys())
    assert committed_calls == ANSWERED_BEFORE_KILL  # every answered (paid) call survived the SIGKILL
    paid_run1 = server.stats.by_fault["ok"]
    assert paid_run1 == ANSWERED_BEFORE_KILL

    # run 2: the same command resumes from the cache
    server.reset_stats()
    resumed = subprocess.run(eval_cmd(config, cache, out), cwd=REPO, env=env, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    paid_run2 = server.stats.requests
    stats = json.loads((out / "report.json").read_text())["cache_stats"]
    assert stats["hits"] == ANSWERED_BEFORE_KILL  # what run 1 paid for was served from the cache ...
    assert stats["paid_calls"] == paid_run2  # ... and only the rest went to the provider

    # reference: the same eval, uninterrupted, on a fresh cache
    server.reset_stats()
    ref_out = tmp_path / "ref"
    ref = await run_eval(
        config, dataset="nq", n=N, seed=3, signals=("lexical",), cache_path=tmp_path / "fresh.sqlite",
        out_dir=ref_out, progress=False,
    )  # fmt: skip
    paid_ref = server.stats.requests
    assert paid_ref == N * CALLS_PER_EXAMPLE == ref.cache_stats["paid_calls"]
    assert paid_run1 + paid_run2 == paid_ref  # no call was paid twice across the kill
    assert rows(out) == rows(ref_out)  # no lost or changed rows
    assert len(rows(out)) == N
