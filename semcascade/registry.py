"""A small name -> factory registry, shared by every pluggable seam.

Providers, agreement scorers, deferral policies and strategy stores are each
looked up by name (from a config) in a :class:`Registry`, never through
if/elif chains.

Built-in implementations are listed *by name* (``"module:attribute"``) and
imported on first use, so their heavy dependencies are not imported with the
package, and their modules need not import the registry to register
themselves (which would make registry and implementation import each other).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from semcascade.errors import SemcascadeError

__all__ = ["Registry"]

T = TypeVar("T")
Factory = Callable[..., T]


class Registry(Generic[T]):
    """Factories of one kind of backend, by name.

    ``error`` is the exception raised for an unknown name or bad options.
    ``builtins`` maps names to ``"package.module:attribute"`` factories,
    imported on first use. ``loader`` (optional, kept for registries that
    register their built-ins by importing modules) runs once before the first
    lookup. A name registered with :meth:`register` wins over a built-in.
    """

    def __init__(
        self,
        kind: str,
        error: type[SemcascadeError],
        loader: Callable[[], None] | None = None,
        *,
        builtins: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.error = error
        self._loader = loader
        self._builtins = dict(builtins or {})
        self._factories: dict[str, Factory[T]] = {}

    def register(self, name: str) -> Callable[[Factory[T]], Factory[T]]:
        """Decorator: make ``name`` constructible by :meth:`create`."""

        def deco(factory: Factory[T]) -> Factory[T]:
            self._factories[name] = factory
            return factory

        return deco

    def _load(self) -> None:
        if self._loader is not None:
            loader, self._loader = self._loader, None
            loader()

    def names(self) -> list[str]:
        self._load()
        return sorted(set(self._factories) | set(self._builtins))

    def factory(self, name: str) -> Factory[T]:
        """The factory registered (or built in) under ``name``; ``error`` when there is none."""
        self._load()
        if name in self._factories:
            return self._factories[name]
        if name not in self._builtins:
            raise self.error(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        module, _, attribute = self._builtins[name].partition(":")
        factory: Factory[T] = getattr(importlib.import_module(module), attribute)
        return factory

    def create(self, name: str, **options: Any) -> T:
        """Build the backend registered under ``name`` with ``options`` as keyword arguments."""
        factory = self.factory(name)
        try:
            return factory(**options)
        except TypeError as exc:
            raise self.error(f"bad options for {self.kind} {name!r}: {exc}; see the config reference") from None
