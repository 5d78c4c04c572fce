"""Shared by the benchmark scripts: write a result as JSON plus its markdown table, and print the table."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_report(stem: str | Path, report: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> str:
    """Write ``STEM.json`` and ``STEM.md`` (creating the folder), print the markdown and return it."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    md = markdown(report)
    stem.with_suffix(".md").write_text(md)
    print(md)
    return md


def machine() -> str:
    """What the figures were measured on: architecture, cores, Python, and how loaded the machine was."""
    return (
        f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average at the end {os.getloadavg()[0]:.1f}"
    )


def command(script: str) -> str:
    """How this run was started: ``[nice -n N] python benchmarks/SCRIPT ARGS`` (the niceness it ran at)."""
    niceness = os.nice(0)
    prefix = f"nice -n {niceness} " if niceness else ""
    return prefix + shlex.join(["python", f"benchmarks/{script}", *sys.argv[1:]])
