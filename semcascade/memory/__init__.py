"""Inter-Cascade strategy memory: the strong tier teaches the cheap one.

See :mod:`semcascade.memory.hooks` for how the cascade uses it and
:class:`~semcascade.memory.config.MemoryConfig` for the settings (off by default).

The names below are imported from their modules on first use (PEP 562), so
``semcascade.memory.config`` (imported by the cascade config) does not load
the stores, SQLite or the embedder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from semcascade._lazy import lazy_exports

if TYPE_CHECKING:
    from semcascade.errors import MemoryStoreError
    from semcascade.memory.config import MemoryConfig, StoreConfig
    from semcascade.memory.hooks import BackgroundSpend, Embedder, MemorySession, StrategyMemory
    from semcascade.memory.sqlite_store import SQLiteStrategyStore, default_store_path
    from semcascade.memory.store import (
        BUILTIN_STORES,
        STRATEGY_STORES,
        AddResult,
        InMemoryStrategyStore,
        StrategyEntry,
        StrategyMatch,
        StrategyStore,
        available_stores,
        create_store,
        query_hash,
        register_store,
    )

_EXPORTS = {
    "MemoryStoreError": "semcascade.errors",
    "MemoryConfig": "semcascade.memory.config",
    "StoreConfig": "semcascade.memory.config",
    **dict.fromkeys(("BackgroundSpend", "Embedder", "MemorySession", "StrategyMemory"), "semcascade.memory.hooks"),
    **dict.fromkeys(("SQLiteStrategyStore", "default_store_path"), "semcascade.memory.sqlite_store"),
    **dict.fromkeys(
        (
            "BUILTIN_STORES",
            "STRATEGY_STORES",
            "AddResult",
            "InMemoryStrategyStore",
            "StrategyEntry",
            "StrategyMatch",
            "StrategyStore",
            "available_stores",
            "create_store",
            "query_hash",
            "register_store",
        ),
        "semcascade.memory.store",
    ),
}

__all__ = [
    "BUILTIN_STORES",
    "STRATEGY_STORES",
    "AddResult",
    "BackgroundSpend",
    "Embedder",
    "InMemoryStrategyStore",
    "MemoryConfig",
    "MemorySession",
    "MemoryStoreError",
    "SQLiteStrategyStore",
    "StoreConfig",
    "StrategyEntry",
    "StrategyMatch",
    "StrategyMemory",
    "StrategyStore",
    "available_stores",
    "create_store",
    "default_store_path",
    "query_hash",
    "register_store",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
