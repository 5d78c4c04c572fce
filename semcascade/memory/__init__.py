"""Inter-Cascade strategy memory: the strong tier teaches the cheap one.

See :mod:`semcascade.memory.hooks` for how the cascade uses it and
:class:`~semcascade.memory.config.MemoryConfig` for the settings (off by default).
"""

from semcascade.memory.config import MemoryConfig
from semcascade.memory.hooks import BackgroundSpend, Embedder, MemorySession, StrategyMemory
from semcascade.memory.sqlite_store import SQLiteStrategyStore, default_store_path
from semcascade.memory.store import (
    STRATEGY_STORES,
    AddResult,
    InMemoryStrategyStore,
    MemoryStoreError,
    StrategyEntry,
    StrategyMatch,
    StrategyStore,
    available_stores,
    create_store,
    query_hash,
    register_store,
)

__all__ = [
    "STRATEGY_STORES",
    "AddResult",
    "BackgroundSpend",
    "Embedder",
    "InMemoryStrategyStore",
    "MemoryConfig",
    "MemorySession",
    "MemoryStoreError",
    "SQLiteStrategyStore",
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
