"""Shared state: one ``StateStore`` seam behind budgets, limits, caches and strategy memory.

Backends by registry name (``state: {name, options}`` in a config): ``sqlite`` (the default: one
machine, budgets and limits per process, caches and strategy memory in SQLite files), ``memory``
(all in this process, for tests) and ``redis`` (shared by processes and machines; the ``redis``
extra). See :mod:`semcascade.state.base` for the seam and the failure semantics.

Names are imported from their modules on first use, so ``semcascade.state.config`` (imported by the
cascade config) loads no backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from semcascade._lazy import lazy_exports

if TYPE_CHECKING:
    from semcascade.state.answer_cache import AnswerCacheHook, answer_key
    from semcascade.state.base import (
        STATE_STORES,
        KeyValueCache,
        StateHealth,
        StateStore,
        config_hash,
        create_state_store,
        register_state_store,
    )
    from semcascade.state.config import AnswerCacheConfig, StateConfig

_EXPORTS = {
    **dict.fromkeys(("AnswerCacheHook", "answer_key"), "semcascade.state.answer_cache"),
    **dict.fromkeys(
        (
            "STATE_STORES",
            "KeyValueCache",
            "StateHealth",
            "StateStore",
            "config_hash",
            "create_state_store",
            "register_state_store",
        ),
        "semcascade.state.base",
    ),
    **dict.fromkeys(("AnswerCacheConfig", "StateConfig"), "semcascade.state.config"),
}

__all__ = [
    "STATE_STORES",
    "AnswerCacheConfig",
    "AnswerCacheHook",
    "KeyValueCache",
    "StateConfig",
    "StateHealth",
    "StateStore",
    "answer_key",
    "config_hash",
    "create_state_store",
    "register_state_store",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
