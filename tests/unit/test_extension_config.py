"""Extension points are ``{name, options}`` in a config: scorer, policy, strategy store (issue 11).

A bare string is still the name (configs written before ``policy`` and
``memory.store`` took options load unchanged).
"""

from __future__ import annotations

from typing import Any, Literal

import pytest

from semcascade import Cascade, MockProvider
from semcascade.config import load_config
from semcascade.errors import ConfigError, MemoryStoreError
from semcascade.memory import STRATEGY_STORES, InMemoryStrategyStore, StrategyMemory, StrategyStore
from semcascade.policy import POLICIES, Decision, ThresholdPolicy


def config(**over: Any) -> dict[str, Any]:
    return {"tiers": [{"name": "only", "model": "m", "k": 1}], "scorer": {"name": "lexical"}, **over}


def mock() -> MockProvider:
    return MockProvider(lambda r: MockProvider.texts(r.model, ["Paris"] * r.n))


def test_policy_takes_a_name_and_options_or_a_bare_name() -> None:
    assert load_config(config()).policy.name == "threshold"
    assert load_config(config(policy="threshold")).policy.name == "threshold"
    cfg = load_config(config(policy={"name": "threshold"}))
    assert cfg.policy.name == "threshold" and cfg.policy.options == {}
    assert load_config(config(scorer="lexical")).scorer == load_config(config()).scorer  # the scorer alike
    with pytest.raises(ConfigError, match=r"policy\.extra: unknown field"):
        load_config(config(policy={"name": "threshold", "extra": 1}))
    with pytest.raises(ConfigError, match=r"policy\.options"):
        load_config(config(policy={"name": "threshold", "options": {"x": float("nan")}}))


class Strict(ThresholdPolicy):
    def __init__(self, margin: float = 0.0) -> None:
        self.margin = margin

    def decide(self, tier: Any, agreement: float | None, **kw: Any) -> Decision:
        return super().decide(tier, None if agreement is None else agreement - self.margin, **kw)


captured: dict[str, Any] = {}


def _capturing(
    path: str | None = None,
    dedup_similarity: float = 0.92,
    max_entries: int = 1000,
    eviction: Literal["lru", "oldest"] = "lru",
    namespace: str = "default",
) -> StrategyStore:
    captured.update(path=path, dedup_similarity=dedup_similarity, max_entries=max_entries, namespace=namespace)
    return InMemoryStrategyStore(dedup_similarity=dedup_similarity, max_entries=max_entries, eviction=eviction)


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test-only extensions, unregistered again after each test (other tests list the registries)."""
    monkeypatch.setitem(POLICIES._factories, "test-strict", Strict)
    monkeypatch.setitem(STRATEGY_STORES._factories, "test-capturing", _capturing)


def test_policy_options_reach_the_registered_factory() -> None:
    cascade = Cascade(config(policy={"name": "test-strict", "options": {"margin": 0.25}}), provider=mock())
    assert isinstance(cascade.policy, Strict) and cascade.policy.margin == 0.25
    with pytest.raises(ConfigError, match=r"bad options for policy 'test-strict'"):
        Cascade(config(policy={"name": "test-strict", "options": {"nope": 1}}), provider=mock())
    with pytest.raises(ConfigError, match=r"unknown policy 'nope'; choose one of: .*threshold"):
        Cascade(config(policy="nope"), provider=mock())


def test_memory_store_takes_a_name_and_options_or_a_bare_name() -> None:
    old = load_config(config(memory={"enabled": True, "store": "memory"})).memory
    new = load_config(config(memory={"enabled": True, "store": {"name": "memory"}})).memory
    assert old == new and old.store.name == "memory"
    assert load_config(config()).memory.store.name == "sqlite"  # the default store
    memory = StrategyMemory.from_config(old)
    assert memory is not None and isinstance(memory.store, InMemoryStrategyStore)


def test_store_options_reach_the_factory_with_the_memory_level_rules() -> None:
    captured.clear()
    store = {"name": "test-capturing", "options": {"namespace": "team-a", "max_entries": 5}}
    mem = load_config(config(memory={"enabled": True, "store": store, "dedup_similarity": 0.5})).memory
    StrategyMemory(mem)
    assert captured == {"path": None, "dedup_similarity": 0.5, "max_entries": 5, "namespace": "team-a"}
    with pytest.raises(ConfigError, match=r"max_entries given both in memory and in memory\.store\.options"):
        load_config(config(memory={"store": store, "max_entries": 10}))
    with pytest.raises(MemoryStoreError, match="unknown strategy store 'nope'"):
        StrategyMemory(load_config(config(memory={"enabled": True, "store": "nope"})).memory)


def test_a_store_path_can_be_a_store_option(tmp_path: Any) -> None:
    path = tmp_path / "s.sqlite"
    mem = load_config(config(memory={"enabled": True, "store": {"name": "sqlite", "options": {"path": str(path)}}}))
    memory = StrategyMemory(mem.memory)
    try:
        assert memory.store.count() == 0 and path.is_file()
    finally:
        memory.close()
