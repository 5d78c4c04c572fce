"""Every exception class semcascade defines lives in semcascade/errors.py (re-exported where it used to be).

The walk parses each module with ``ast`` (nothing is imported), so it is fast and
sees modules whose heavy dependencies are not installed.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import pkgutil
from pathlib import Path

import pytest

import semcascade
import semcascade.errors as errors

PACKAGE = Path(semcascade.__file__).resolve().parent

#: internal control-flow signals, not errors a user sees: (module, class) -> why they stay where they are
ALLOWED_ELSEWHERE: dict[tuple[str, str], str] = {
    # raised and caught inside semcascade._deadline's own context managers; never escapes to a caller
    ("semcascade._deadline", "DeadlineReached"): "private control-flow signal of the deadline guard",
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="semcascade."):
        spec = info.module_finder.find_spec(info.name, None)  # type: ignore[call-arg]
        assert spec is not None and spec.origin is not None
        out.append((info.name, Path(spec.origin)))
    return out


def _exception_names() -> set[str]:
    """Names that denote exception classes: the builtins' and errors.py's."""
    names = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
    names |= {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, BaseException)}
    return names


def _base_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _exception_classes(tree: ast.Module, known: set[str]) -> list[str]:
    """Classes in ``tree`` that derive (directly or via a class of the same module) from an exception."""
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for c in classes:
            if c.name in found:
                continue
            bases = {_base_name(b) for b in c.bases}
            if bases & (known | found) or any(b and (b.endswith("Error") or b.endswith("Exception")) for b in bases):
                found.add(c.name)
                changed = True
    return sorted(found)


def test_no_exception_class_is_defined_outside_errors_py() -> None:
    known = _exception_names()
    misplaced = []
    modules = _modules()
    assert len(modules) > 40  # the walk really saw the package
    for name, path in modules:
        if name == "semcascade.errors":
            continue
        for cls in _exception_classes(ast.parse(path.read_text(encoding="utf-8")), known):
            if (name, cls) not in ALLOWED_ELSEWHERE:
                misplaced.append(f"{name}.{cls}")
    assert misplaced == [], f"define these in semcascade/errors.py (re-export them from the old module): {misplaced}"


def test_every_error_derives_from_semcascade_error_and_is_listed() -> None:
    classes = {n: v for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, BaseException)}
    assert set(errors.__all__) == set(classes)
    assert all(issubclass(v, errors.SemcascadeError) for v in classes.values())


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("semcascade.response_cache", "CacheError"),
        ("semcascade.evaluation.datasets", "DatasetNotInstalledError"),
        ("semcascade.routing.pik", "RouterError"),
        ("semcascade.routing.pik", "RouterArtifactError"),
        ("semcascade.routing", "RouterError"),
        ("semcascade.memory.store", "MemoryStoreError"),
        ("semcascade.memory", "MemoryStoreError"),
    ],
)
def test_moved_errors_are_still_importable_from_their_old_modules(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)
