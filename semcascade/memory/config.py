"""Settings of the strategy memory (Inter-Cascade); only pydantic here, so config.py can import it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from semcascade._named import NamedOptions

__all__ = ["STORE_RULES", "MemoryConfig", "StoreConfig"]

#: memory-level settings every store factory receives (a store's own ``options`` may set them instead)
STORE_RULES = ("path", "dedup_similarity", "max_entries", "eviction")


class StoreConfig(NamedOptions):
    """Which strategy store to use, by registry name (``sqlite``, ``memory`` or a registered one), with its
    options (``memory.store: sqlite`` also works)."""

    name: str = Field(default="sqlite", min_length=1, description="registry name of the strategy store")


class MemoryConfig(BaseModel):
    """Inter-Cascade strategy memory: the strong tier teaches the cheap one (off by default).

    When a query escalates and the last tier answers with agreement >=
    ``min_agreement_to_learn``, the last tier's model is asked for a short,
    general strategy for that kind of question (not its answer), which is
    stored with the query's embedding. A later query whose embedding has
    cosine similarity >= ``min_similarity`` with stored ones gets the ``top_k``
    best strategies added to the cheap tier's system prompt.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    store: StoreConfig = Field(
        default_factory=StoreConfig,
        description="strategy store: {name, options} by registry name (sqlite, memory); a bare name also works",
    )
    path: str | None = Field(default=None, description="store file; None = <cache dir>/strategies.sqlite")
    top_k: int = Field(default=2, ge=1, le=20, description="strategies added to a cheap-tier prompt at most")
    min_similarity: float = Field(default=0.5, ge=-1.0, le=1.0, description="query cosine needed to retrieve")
    dedup_similarity: float = Field(
        default=0.92, ge=-1.0, le=1.0, description="a new strategy this close (cosine) to a stored one is skipped"
    )
    max_entries: int = Field(default=1000, ge=1, description="store cap; the excess is evicted")
    eviction: Literal["lru", "oldest"] = Field(
        default="lru", description="lru: least recently retrieved first; oldest: first stored first"
    )
    min_agreement_to_learn: float = Field(default=0.8, ge=0.0, le=1.0)
    learn_single_sample: bool = Field(
        default=True,
        description="learn from a last tier with k=1 (it has no agreement signal); False = never from such a tier",
    )
    skip_learning_above: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="don't ask for a new strategy when one was retrieved for a question at least this similar "
        "(cosine): saves the strong tier's teaching call on covered questions; None = always learn",
    )
    learn_in_background: bool = Field(
        default=False,
        description="return the answer at once and write the strategy in a background task (its spend is in "
        "StrategyMemory.spend, not in the result); the cascade waits for it on close / at the end of generate_sync",
    )
    strategy_max_tokens: int = Field(default=128, ge=8, le=4096)
    strategy_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    embedding_model: str | None = Field(
        default=None, description="embedding scorer model (None = the bundled all-MiniLM-L6-v2)"
    )
    embedding_backend: Literal["onnx", "sentence-transformers"] = "onnx"

    @model_validator(mode="after")
    def _consistent(self) -> MemoryConfig:
        if self.path is not None and not self.path.strip():
            raise ValueError("path must not be empty; omit it for the default <cache dir>/strategies.sqlite")
        twice = sorted(k for k in STORE_RULES if k in self.model_fields_set and k in self.store.options)
        if twice:
            raise ValueError(f"{', '.join(twice)} given both in memory and in memory.store.options; set each once")
        return self

    def store_options(self) -> dict[str, Any]:
        """The keyword arguments of the store factory: the memory-level rules, then the store's own options."""
        return {**{k: getattr(self, k) for k in STORE_RULES}, **self.store.options}
