"""The CLI turns every user error into one line on stderr and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from semcascade.cli import main

REPO = Path(__file__).resolve().parents[2]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("semcascade: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_missing_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["generate", "--config", "nope.yaml", "hi"], capsys)
    assert code == 2
    assert "nope.yaml: config file not found" in one_line_error(err)


def test_invalid_config_names_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers:\n  - {name: a, model: openai/x, k: 0}\n")
    code, _, err = run(["generate", "--config", str(bad), "hi"], capsys)
    assert code == 2 and "tiers[0].k" in one_line_error(err)


def test_missing_key_env_var(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, _, err = run(["generate", "--config", str(REPO / "configs" / "openai.yaml"), "hi"], capsys)
    assert code == 2 and "$OPENAI_API_KEY, which is not set" in one_line_error(err)


def test_unknown_local_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tiers:\n  - {name: a, model: local/gpt-5-nano}\n")
    code, _, err = run(["generate", "--config", str(cfg), "hi"], capsys)
    assert code == 2 and "unknown local model 'gpt-5-nano'" in one_line_error(err)


def test_empty_prompt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tiers:\n  - {name: a, model: openai/gpt-4o-mini}\n")
    code, _, err = run(["generate", "--config", str(cfg), "   "], capsys)
    assert code == 2 and "the prompt is empty" in one_line_error(err)


def test_console_script_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "semcascade.cli", "generate", "--config", "missing.yaml", "x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("semcascade: error: missing.yaml")


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("generate", "demo", "local"):
        assert cmd in out
