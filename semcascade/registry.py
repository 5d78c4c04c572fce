"""A small name -> factory registry, shared by every pluggable seam.

Providers, agreement scorers and deferral policies are each looked up by name
(from a config) in a :class:`Registry`, never through if/elif chains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from semcascade.errors import SemcascadeError

__all__ = ["Registry"]

T = TypeVar("T")
Factory = Callable[..., T]


class Registry(Generic[T]):
    """Factories of one kind of backend, by name.

    ``error`` is the exception raised for an unknown name or bad options;
    ``loader`` (optional) imports the built-in implementations on first use,
    so their heavy dependencies are not imported with the package.
    """

    def __init__(self, kind: str, error: type[SemcascadeError], loader: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self.error = error
        self._loader = loader
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
        return sorted(self._factories)

    def create(self, name: str, **options: Any) -> T:
        """Build the backend registered under ``name`` with ``options`` as keyword arguments."""
        self._load()
        try:
            factory = self._factories[name]
        except KeyError:
            raise self.error(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}") from None
        try:
            return factory(**options)
        except TypeError as exc:
            raise self.error(f"bad options for {self.kind} {name!r}: {exc}; see the config reference") from None
