"""How a cascade takes its state from the ``StateStore``: the store itself, the strategy memory, the answer cache.

Kept here so the cascade's own module only calls these three functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from semcascade.state.base import config_hash, create_state_store

if TYPE_CHECKING:
    from semcascade.config import CascadeConfig
    from semcascade.hooks import Hook
    from semcascade.memory.hooks import StrategyMemory
    from semcascade.state.base import StateStore

__all__ = ["answer_cache_hook", "memory_from_state", "open_state"]


def open_state(config: CascadeConfig, given: StateStore | None) -> tuple[StateStore, bool]:
    """(the store, whether the caller owns it): ``given``, else the one ``config.state`` names."""
    if given is not None:
        return given, False
    return create_state_store(config), True


def memory_from_state(config: CascadeConfig, state: StateStore) -> StrategyMemory | None:
    """The strategy memory ``config.memory`` asks for (``None`` when off).

    Its store is the state backend's (e.g. Redis: shared across processes) unless ``memory.store``
    names one explicitly; with the default ``sqlite`` state it is ``memory.store`` as before.
    """
    memory = config.memory
    if not memory.enabled:
        return None
    from semcascade.memory.hooks import StrategyMemory

    if state.name == "sqlite" or "store" in memory.model_fields_set:
        return StrategyMemory(memory)
    return StrategyMemory(memory, store=state.strategy_store(memory))


def answer_cache_hook(config: CascadeConfig, state: StateStore) -> list[Hook]:
    """``[the answer cache hook]`` when ``state.answer_cache.enabled``, else ``[]``."""
    if not config.state.answer_cache.enabled:
        return []
    from semcascade.state.answer_cache import AnswerCacheHook

    return [AnswerCacheHook(state.kv("answers"), config.state.answer_cache, config_hash(config))]
