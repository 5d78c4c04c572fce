"""Lazy package attributes (PEP 562): a name is imported from its module on first access.

A package's ``__init__`` lists what it exports and where each name lives; the
module behind a name is imported only when the name is first used, then the
value is cached on the package (so later lookups are plain attribute reads)::

    __getattr__, __dir__ = lazy_exports(__name__, {"StrategyMemory": "semcascade.memory.hooks"})

``__all__`` stays the full list and ``dir()`` shows every name. Type checkers
see the same names through an ``if TYPE_CHECKING:`` block of real imports.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps each lazy name to its module."""
    table = dict(exports)

    def __getattr__(name: str) -> Any:
        try:
            source = table[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(source), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
