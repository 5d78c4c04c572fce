"""The install is reproducible: constraints.txt pins every package at a version the declared ranges admit.

Offline and fast: it reads pyproject.toml, constraints.txt, requirements-local.txt
and the Makefile. ``make lock-check`` does the real resolve against the index.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "constraints.txt"
FIX = "run `make lock` (then `make test`) and commit constraints.txt"


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def lock_lines() -> list[tuple[int, str]]:
    out = []
    for no, raw in enumerate(LOCK.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            out.append((no, line))
    return out


def lock_pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for _, line in lock_lines():
        name, _, version = line.partition("==")
        pins[canonicalize_name(name)] = Version(version)
    return pins


def declared() -> list[tuple[str, Requirement]]:
    """Every requirement of the project and of each extra, as (where, requirement)."""
    project = pyproject()["project"]
    reqs = [("dependencies", Requirement(r)) for r in project["dependencies"]]
    for extra, items in project.get("optional-dependencies", {}).items():
        reqs += [(f"[{extra}]", Requirement(r)) for r in items]
    return reqs


def makefile_var(name: str) -> str:
    match = re.search(rf"^{name}\s*:=\s*(.+)$", (REPO / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"Makefile defines no {name} :="
    return match.group(1).strip()


def test_lock_is_exact_pins_each_package_once() -> None:
    seen: dict[str, int] = {}
    for no, line in lock_lines():
        name, sep, version = line.partition("==")
        assert sep and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name), (
            f"constraints.txt:{no}: {line!r} is not NAME==VERSION; {FIX}"
        )
        try:
            Version(version)
        except InvalidVersion:
            pytest.fail(f"constraints.txt:{no}: {version!r} is not a version; {FIX}")
        key = canonicalize_name(name)
        assert key not in seen, f"constraints.txt pins {key} twice (lines {seen[key]} and {no}); {FIX}"
        seen[key] = no
    assert "semcascade" not in seen, "constraints.txt must not pin semcascade itself (pip cannot install -e . then)"
    assert len(seen) > 50, "constraints.txt should pin every installed package, not just the direct ones"


def test_every_declared_requirement_is_locked_within_its_range() -> None:
    pins = lock_pins()
    problems = []
    for where, req in declared():
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # not for the Python/platform the lock is resolved for
        key = canonicalize_name(req.name)
        if key not in pins:
            problems.append(f"{req} ({where}) is not pinned")
        elif not req.specifier.contains(pins[key], prereleases=True):
            problems.append(f"{req} ({where}) but the lock pins {key}=={pins[key]}")
    assert not problems, "constraints.txt disagrees with pyproject.toml: " + "; ".join(problems) + f"; {FIX}"


def test_local_requirements_are_locked_at_their_pins() -> None:
    pins = lock_pins()
    for line in (REPO / "requirements-local.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"requirements-local.txt: pin {line!r} exactly (==)"
        key = canonicalize_name(req.name)
        assert key in pins and req.specifier.contains(pins[key], prereleases=True), (
            f"requirements-local.txt pins {line} but constraints.txt has {pins.get(key)}; {FIX}"
        )


def test_torch_pin_agrees_with_lock() -> None:
    torch = Requirement(makefile_var("TORCH"))
    pins = lock_pins()
    assert torch.specifier.contains(pins["torch"]), f"Makefile installs {torch}, the lock pins torch=={pins['torch']}"


def test_setup_installs_everything_through_the_lock() -> None:
    assert makefile_var("LOCK") == "constraints.txt"
    assert "-c $(LOCK)" in makefile_var("PIP_INSTALL")
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = text[text.index("$(STAMP):") : text.index("touch $@")]
    assert "$(LOCK)" in recipe.splitlines()[0], "the install stamp must depend on the lock (a new lock reinstalls)"
    for line in recipe.splitlines()[1:]:
        assert "pip install" not in line, f"install through $(PIP_INSTALL) (which adds -c $(LOCK)): {line.strip()}"
    assert recipe.count("$(PIP_INSTALL)") == 3


def _floor(spec: SpecifierSet) -> tuple[int, int]:
    lows = [Version(s.version) for s in spec if s.operator == ">="]
    assert len(lows) == 1, f"requires-python {spec} should have exactly one '>=' floor"
    return lows[0].major, lows[0].minor


def test_python_floor_agrees_everywhere() -> None:
    data = pyproject()
    spec = SpecifierSet(data["project"]["requires-python"])
    major, minor = _floor(spec)
    floor = f"{major}.{minor}"
    assert (major, minor) >= (3, 11), "the code uses asyncio.timeout (3.11); requires-python must say >=3.11"
    assert data["tool"]["ruff"]["target-version"] == f"py{major}{minor}", "ruff's target-version != requires-python"
    assert data["tool"]["mypy"]["python_version"] == floor, "mypy's python_version != requires-python"
    assert makefile_var("PY_FLOOR") == floor, "the Makefile's PY_FLOOR (vermin's target) != requires-python"
    # the Makefile reads the lock's Python from this header line (LOCK_PY) and checks the venv against it
    locked = re.search(r" for CPython ([0-9.]+) on ", LOCK.read_text(encoding="utf-8"))
    assert locked, f"constraints.txt's header does not say which Python it is resolved for; {FIX}"
    assert locked.group(1) == floor, f"constraints.txt is resolved on Python {locked.group(1)}, not the floor {floor}"


def test_vermin_runs_in_lint_at_the_floor() -> None:
    lint = (REPO / "Makefile").read_text(encoding="utf-8").split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "vermin --target=$(PY_FLOOR)- --violations" in lint
    assert "ruff format --check" in lint
    dev = [canonicalize_name(Requirement(r).name) for r in pyproject()["project"]["optional-dependencies"]["dev"]]
    assert "vermin" in dev
