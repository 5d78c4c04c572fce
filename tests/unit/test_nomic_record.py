"""The committed MiniLM-vs-nomic record (benchmarks/results/embedders.*) is consistent and backs the default.

Replays the record, not the measurement (that is `benchmarks/embedders.py`, ~1 h on the shared machine).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RECORD = REPO / "benchmarks" / "results" / "embedders"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_embedders", REPO / "benchmarks" / "embedders.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads(RECORD.with_suffix(".json").read_text())


def test_the_markdown_is_the_json_rendered(record: dict) -> None:
    assert _script().markdown(record) == RECORD.with_suffix(".md").read_text()


def test_the_rescored_minilm_reproduces_each_run_s_committed_auroc(record: dict) -> None:
    assert record["runs"], "no run measured"
    for name, run in record["runs"].items():
        committed = json.loads((REPO / "eval" / "results" / name / "report.json").read_text())
        assert run["minilm"]["all"]["auroc"] == pytest.approx(committed["signal_quality"]["embedding"]["auroc"])
        assert run["minilm"]["all"]["n"] == run["nomic"]["all"]["n"] == run["n"]


def test_minilm_stays_the_shipped_scorer_unless_nomic_wins_on_calibration_and_holds_on_test(record: dict) -> None:
    shipped = yaml.safe_load((REPO / "semcascade" / "configs" / "local.yaml").read_text())
    backend = shipped["scorer"]["options"]["backend"]
    wins = [
        name
        for name, run in record["runs"].items()
        if run["nomic"]["calibration"]["auroc"] > run["minilm"]["calibration"]["auroc"]
        and run["nomic"]["test"]["auroc"] >= run["minilm"]["test"]["auroc"]
    ]
    assert backend == ("llama" if wins else "onnx"), f"nomic wins on {wins}: ship it there, or explain"
