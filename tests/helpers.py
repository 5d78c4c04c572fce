"""Test doubles and builders shared by the test modules: ``from tests.helpers import ...``.

``tests/__init__.py`` makes ``tests`` a regular package, so pytest puts the
repository root on ``sys.path`` and this module wins over any installed
top-level ``tests`` package (pyserini ships one).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from semcascade import PairJudgement
from semcascade.config import LocalServerConfig

__all__ = [
    "ConstantScorer",
    "ExactScorer",
    "executable",
    "install_fake_build",
    "install_fake_llama_server",
    "local_server_config",
    "shell_script",
    "two_tier_config",
]


class ExactScorer:
    """Similarity 1 for answers equal after stripping and lower-casing, else 0: predictable clusters.

    ``calls`` counts its ``judge()`` calls.
    """

    name = "exact"
    kind = "similarity"

    def __init__(self) -> None:
        self.calls = 0

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        self.calls += 1
        out = []
        for a, b in pairs:
            s = 1.0 if a.strip().lower() == b.strip().lower() else 0.0
            out.append(PairJudgement(s, s))
        return out


class ConstantScorer:
    """Judges every pair alike: ``ConstantScorer(0.0)`` makes all samples disagree, ``ConstantScorer(1.0)`` agree."""

    name = "constant"
    kind = "similarity"

    def __init__(self, agreement: float) -> None:
        self.agreement = agreement

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        return [PairJudgement(self.agreement, self.agreement) for _ in pairs]


def two_tier_config(
    *, cheap: Mapping[str, Any] | None = None, strong: Mapping[str, Any] | None = None, **over: Any
) -> dict[str, Any]:
    """A priced two-tier config (a fresh dict each call, safe to mutate).

    ``cheap`` (``openai/cheap``) samples k=4 and accepts at agreement 0.5;
    ``strong`` (``openai/strong``) answers once, greedily. ``cheap`` / ``strong``
    update the tiers; ``over`` updates the top level.
    """
    return {
        "tiers": [
            {
                "name": "cheap",
                "model": "openai/cheap",
                "k": 4,
                "threshold": 0.5,
                "input_cost_per_token": 1e-6,
                "output_cost_per_token": 2e-6,
                **(cheap or {}),
            },
            {
                "name": "strong",
                "model": "openai/strong",
                "k": 1,
                "temperature": 0.0,
                "input_cost_per_token": 1e-5,
                "output_cost_per_token": 2e-5,
                **(strong or {}),
            },
        ],
        **over,
    }


def local_server_config(**kw: object) -> LocalServerConfig:
    """The managed server's settings, with a startup timeout a fake server meets on a loaded machine."""
    return LocalServerConfig.model_validate({"startup_timeout": 15.0, **kw})


def executable(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` and make it executable."""
    path.write_text(text)
    path.chmod(0o755)
    return path


def shell_script(path: Path, body: str) -> Path:
    """An executable ``/bin/sh`` script running ``body``."""
    return executable(path, f"#!/bin/sh\n{body}\n")


def install_fake_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the real llama.cpp compile by one that installs a working shell script; returns its targets."""
    from semcascade.local import build

    calls: list[Path] = []

    def fake(target: Path, log_path: Path, progress: bool) -> None:
        calls.append(target)
        log_path.write_text("fake build\n")
        build.install_binary(shell_script(tmp_path / "built", 'echo "version: fake"'), target, log_path)

    monkeypatch.setattr(build, "_build", fake)
    return calls


def install_fake_llama_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> Path:
    """A cache in ``tmp_path``, ``source`` (a Python script template, ``{python}`` for the shebang's
    interpreter) as ``$SEMCASCADE_LLAMA_SERVER``, and model assembly that only touches the files.

    The caller stops what it starts (``stop_running_server``).
    """
    from semcascade.local import server as server_mod
    from semcascade.local.models import models_dir

    monkeypatch.setenv("SEMCASCADE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "bin").mkdir()
    binary = executable(tmp_path / "bin" / "llama-server", source.format(python=sys.executable))
    monkeypatch.setenv("SEMCASCADE_LLAMA_SERVER", str(binary))
    monkeypatch.delenv("FAKE_LLAMA_MODE", raising=False)

    def fake_ensure_model(name: str, progress: bool = True) -> Path:
        path = models_dir() / f"{name}.gguf"
        path.touch()
        return path

    monkeypatch.setattr(server_mod, "ensure_model", fake_ensure_model)
    return binary
