"""semcascade batch on the local engine against the fault server: each id once, resumable, nothing paid twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fault_fixtures import cascade_config, fault_server_fixture, fault_server_session, tier  # noqa: F401

from semcascade.batch.requests import read_requests
from semcascade.batch.run import run_batch
from semcascade.errors import BatchInputError
from semcascade.testing import FaultServer


def _input(path: Path, n: int) -> Path:
    lines = []
    for i in range(n):
        if i % 3 == 0:
            lines.append({"id": f"r{i}", "messages": [{"role": "user", "content": f"question {i}?"}]})
        else:
            lines.append({"id": f"r{i}", "prompt": f"question {i}?"})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]


def _config(server: FaultServer, tmp_path: Path) -> dict[str, Any]:
    return cascade_config(tier(server, "cheap", k=2), state={"name": "sqlite", "options": {"path": str(tmp_path)}})


def test_batch_writes_every_id_once_and_resumes_without_paying_twice(fault_server: FaultServer, tmp_path: Path):
    fault_server.script("500", "429", "503", "drop")  # transient faults, retried below the response cache
    fault_server.base_latency_s = 0.01
    inp, out = _input(tmp_path / "in.jsonl", 12), tmp_path / "out.jsonl"
    cfg = _config(fault_server, tmp_path)
    s = run_batch(inp, out, config=cfg, concurrency=4, progress=False)
    assert s.written == 12 and s.failed == 0 and s.skipped == 0
    assert sorted(_ids(out)) == sorted(f"r{i}" for i in range(12))
    first = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(x["trace"] and x["trace"][0]["samples"] == 2 for x in first)
    paid = fault_server.stats.by_fault["ok"]  # answered upstream calls: what was paid
    assert paid == 24
    # interrupted mid-write: keep 5 lines and half of the 6th
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:5]) + lines[5][:10])
    s2 = run_batch(inp, out, config=cfg, concurrency=4, progress=False)
    assert s2.skipped == 5 and s2.written == 7
    ids = _ids(out)
    assert len(ids) == 12 and sorted(ids) == sorted(f"r{i}" for i in range(12))  # each exactly once
    assert fault_server.stats.by_fault["ok"] == paid  # the rerun came from the response cache
    again = {x["id"]: x for x in (json.loads(line) for line in out.read_text().splitlines())}
    assert all(again[x["id"]]["text"] == x["text"] for x in first)
    s3 = run_batch(inp, out, config=cfg, progress=False)  # all done: nothing to do
    assert s3.written == 0 and s3.skipped == 12


def test_budget_errors_are_lines_and_the_run_goes_on(fault_server: FaultServer, tmp_path: Path):
    inp, out = _input(tmp_path / "in.jsonl", 6), tmp_path / "out.jsonl"
    cfg = {**_config(fault_server, tmp_path), "budget": {"max_cost_per_run": 0.00012}}
    s = run_batch(inp, out, config=cfg, concurrency=1, progress=False)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 6 and s.failed == sum("error" in r for r in rows) > 0
    assert {r["error_type"] for r in rows if "error" in r} == {"BudgetExceededError"}
    assert sum(r.get("cost", 0.0) for r in rows) <= 0.00012


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n', "id '1' repeats line 1"),
        ('{"prompt": "a", "messages": []}\n', "exactly one of"),
        ('{"prompt": ""}\n', "non-empty text"),
        ('{"messages": "hi"}\n', "non-empty list"),
        ('["a"]\n', "JSON object"),
        ('{"prompt": "a", "colour": 1}\n', "unknown field(s) colour"),
        ("\n\n", "no requests"),
    ],
)
def test_bad_input_lines_name_the_line(tmp_path: Path, text: str, expected: str) -> None:
    p = tmp_path / "in.jsonl"
    p.write_text(text)
    with pytest.raises(BatchInputError, match=None) as info:
        read_requests(p)
    assert expected in str(info.value) and str(p) in str(info.value)


def test_an_output_file_that_is_not_batch_output_is_refused(fault_server: FaultServer, tmp_path: Path) -> None:
    inp, out = _input(tmp_path / "in.jsonl", 1), tmp_path / "out.jsonl"
    out.write_text('{"something": "else"}\n')
    with pytest.raises(BatchInputError, match="not a semcascade batch output line"):
        run_batch(inp, out, config=_config(fault_server, tmp_path), progress=False)
