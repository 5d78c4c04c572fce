"""The strategy-memory benchmark script runs end to end on its MockProvider path (no models)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_mock_stream_learns_then_injects(tmp_path: Path) -> None:
    stem = tmp_path / "out" / "memory"
    env = {**os.environ, "PYTHONPATH": str(REPO), "SEMCASCADE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "strategy_memory.py"), "--mock", "--n", "8", "--window", "4",
         "--out", str(stem)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(stem.with_suffix(".json").read_text())
    plain, mem = report["plain"], report["with_memory"]
    assert [w["questions"] for w in mem["windows"]] == ["1-4", "5-8"]
    # the first window teaches (one strategy per topic, each paid for), the second is answered by the cheap tier
    assert mem["windows"][0]["learned"] == 4 and mem["windows"][0]["memory_cost"] > 0
    assert mem["windows"][1]["injected_share"] == 1.0 and mem["windows"][1]["strong_call_rate"] == 0.0
    assert plain["total"]["strong_call_rate"] == 1.0 and plain["total"]["memory_cost"] == 0.0
    assert mem["total"]["cost"] == sum(s["cost"] for s in report["steps"]["with_memory"])
    assert "| with_memory | **all** |" in stem.with_suffix(".md").read_text()
