"""Settings of the shared state (``state:`` in a config); only pydantic here, so config.py can import it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from semcascade._named import NamedOptions

__all__ = ["AnswerCacheConfig", "StateConfig"]


class AnswerCacheConfig(BaseModel):
    """The answer cache: a request's final answer, keyed by its normalised messages, the config hash and the
    generation settings; a hit skips the cascade (``CascadeResult.answer_cache_hit``). Off by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="answer repeated requests from the answer cache")
    ttl_s: float = Field(default=86400.0, gt=0.0, description="seconds a cached answer stays valid")
    cache_abstentions: bool = Field(
        default=False, description="also cache abstentions (default: only answers; early stops are never cached)"
    )


class StateConfig(NamedOptions):
    """Where budgets, limits, caches and strategy memory live, by registry name (``sqlite``, ``memory``,
    ``redis`` or a registered one) with the backend's ``options`` (``redis``: ``url``; ``sqlite``: ``path``).

    ``sqlite`` (the default) is one machine as before: budgets and limits per process, caches and strategy
    memory in SQLite files. ``redis`` shares all of them between processes and machines.
    """

    name: str = Field(default="sqlite", min_length=1, description="registry name: sqlite, memory or redis")
    namespace: str | None = Field(
        default=None,
        description="key prefix shared by the processes that share state; None = a hash of the config "
        "(processes with the same config share budgets, limits and caches)",
    )
    lease_s: float = Field(
        default=600.0,
        gt=0.0,
        description="a budget reservation or concurrency slot a process does not settle within this many "
        "seconds (it died) is reclaimed: a reservation is charged in full, a slot freed",
    )
    response_cache: bool = Field(
        default=False,
        description="put the response cache (every sampled choice) in front of the providers, in this backend; "
        "semcascade batch always uses it",
    )
    answer_cache: AnswerCacheConfig = Field(
        default_factory=AnswerCacheConfig, description="final answers of repeated requests (off by default)"
    )
