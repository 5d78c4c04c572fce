"""semcascade: black-box semantic-agreement LLM cascades.

``import semcascade`` loads the cascade itself; the research APIs
(calibration, routing, strategy memory, confidence models) load on first use.

A request goes to the cheapest tier first; the tier samples k answers, scores
their meaning-level agreement, and returns the consensus when they agree.
Only on disagreement does the request escalate to the next, stronger tier.

    import semcascade
    result = semcascade.generate_sync("Who wrote Hamlet?")
    print(result.text, result.tier, result.agreement)
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semcascade._lazy import lazy_exports
from semcascade.aggregation import Consensus, consensus, weighted_vote
from semcascade.answers import AnswerFormat, extract_answer
from semcascade.cascade import Cascade, PromptLike, normalize_messages
from semcascade.config import (
    BudgetConfig,
    CascadeConfig,
    EquivalenceConfig,
    LocalServerConfig,
    PolicyConfig,
    ScorerConfig,
    TierConfig,
    load_config,
)
from semcascade.errors import (
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    CacheError,
    CalibrationError,
    CascadeFailedError,
    ConfidenceError,
    ConfigError,
    ContentRefusedError,
    DatasetNotInstalledError,
    DeadlineExceededError,
    EmptyPromptError,
    LocalServerError,
    MalformedResponseError,
    MemoryStoreError,
    MissingAPIKeyError,
    PromptError,
    PromptTooLongError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    QuotaExceededError,
    RateLimitError,
    RouterArtifactError,
    RouterError,
    ScorerError,
    SemcascadeError,
    UnknownModelError,
)
from semcascade.policy import Decision, DeferralPolicy, ThresholdPolicy, create_policy, register_policy
from semcascade.providers import (
    Completion,
    CompletionRequest,
    LiteLLMProvider,
    MockProvider,
    Provider,
    create_provider,
    register_provider,
)
from semcascade.providers.retry import RetryConfig, RetryingProvider
from semcascade.result import CascadeResult, MemoryTrace, SampleTrace, TierTrace
from semcascade.scoring._registry import available_scorers, create_scorer, register_scorer
from semcascade.scoring.base import AgreementScorer, PairJudgement

if TYPE_CHECKING:  # the research APIs, imported on first use (see _LAZY below)
    from semcascade.calibration import (
        CalibrationReport,
        Envelope,
        ThresholdChoice,
        calibrate_run,
        calibrate_thresholds,
        model_pool,
        pairwise_envelope,
    )
    from semcascade.confidence import ConfidenceModel, LogisticConfidence, TierEvidence, load_confidence_model
    from semcascade.memory import (
        InMemoryStrategyStore,
        MemoryConfig,
        SQLiteStrategyStore,
        StrategyMemory,
        StrategyStore,
    )
    from semcascade.routing import ConstantRouter, PIKModel, PIKRouter, RoutedCascade, Router, train_pik

#: research APIs (calibration, confidence fitting and models, strategy memory, routing): name -> module.
#: ``import semcascade`` loads the cascade only; these load when first used (PEP 562).
_LAZY = {
    **dict.fromkeys(
        (
            "CalibrationReport",
            "Envelope",
            "ThresholdChoice",
            "calibrate_run",
            "calibrate_thresholds",
            "model_pool",
            "pairwise_envelope",
        ),
        "semcascade.calibration",
    ),
    **dict.fromkeys(
        ("ConfidenceModel", "LogisticConfidence", "TierEvidence", "load_confidence_model"), "semcascade.confidence"
    ),
    **dict.fromkeys(
        ("InMemoryStrategyStore", "MemoryConfig", "SQLiteStrategyStore", "StrategyMemory", "StrategyStore"),
        "semcascade.memory",
    ),
    **dict.fromkeys(
        ("ConstantRouter", "PIKModel", "PIKRouter", "RoutedCascade", "Router", "train_pik"), "semcascade.routing"
    ),
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__version__ = "0.1.0"

__all__ = [
    "AgreementScorer",
    "AnswerFormat",
    "AuthenticationError",
    "CacheError",
    "BadRequestError",
    "CalibrationError",
    "CalibrationReport",
    "BudgetConfig",
    "BudgetExceededError",
    "CASCADE_CACHE_SIZE",
    "Cascade",
    "CascadeConfig",
    "CascadeFailedError",
    "CascadeResult",
    "Completion",
    "CompletionRequest",
    "ConfidenceError",
    "ConfidenceModel",
    "ConfigError",
    "ContentRefusedError",
    "Consensus",
    "ConstantRouter",
    "DatasetNotInstalledError",
    "DeadlineExceededError",
    "Decision",
    "DeferralPolicy",
    "EmptyPromptError",
    "Envelope",
    "EquivalenceConfig",
    "InMemoryStrategyStore",
    "LiteLLMProvider",
    "LocalServerConfig",
    "LocalServerError",
    "LogisticConfidence",
    "MalformedResponseError",
    "MemoryConfig",
    "MemoryStoreError",
    "MemoryTrace",
    "MissingAPIKeyError",
    "MockProvider",
    "PIKModel",
    "PIKRouter",
    "PairJudgement",
    "PolicyConfig",
    "PromptError",
    "PromptTooLongError",
    "Provider",
    "ProviderError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "QuotaExceededError",
    "RateLimitError",
    "RoutedCascade",
    "Router",
    "RouterArtifactError",
    "RouterError",
    "SQLiteStrategyStore",
    "RetryConfig",
    "RetryingProvider",
    "SampleTrace",
    "ScorerConfig",
    "ScorerError",
    "SemcascadeError",
    "StrategyMemory",
    "StrategyStore",
    "ThresholdChoice",
    "ThresholdPolicy",
    "TierConfig",
    "TierEvidence",
    "TierTrace",
    "UnknownModelError",
    "available_scorers",
    "calibrate_run",
    "calibrate_thresholds",
    "close_cached_cascades",
    "consensus",
    "create_policy",
    "create_provider",
    "create_scorer",
    "extract_answer",
    "generate",
    "generate_sync",
    "load_confidence_model",
    "load_config",
    "model_pool",
    "normalize_messages",
    "pairwise_envelope",
    "register_policy",
    "register_provider",
    "register_scorer",
    "train_pik",
    "weighted_vote",
    "__version__",
]

ConfigLike = CascadeConfig | str | Path | Mapping[str, Any] | None

#: how many cascades the module-level helpers keep (one per distinct config, least recently used evicted)
CASCADE_CACHE_SIZE = 8


class _Cached:
    """A cascade of the module-level helpers, with the calls in flight on it."""

    def __init__(self, cascade: Cascade) -> None:
        self.cascade = cascade
        self.users = 0
        self.evicted = False


# Cascades built by the module-level helpers, one per distinct validated config (so a config's run
# budget, scorer, clients and local server live across calls), created on first use, never at import.
_CASCADES: OrderedDict[str, _Cached] = OrderedDict()
_CASCADES_LOCK = threading.Lock()


def _config_key(config: CascadeConfig) -> str:
    """A stable hash of a validated config: equal configs (however written) share a cascade."""
    return hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _acquire(config: ConfigLike) -> tuple[_Cached, list[Cascade]]:
    """The cached cascade of ``config`` (built on first use), marked in use; and the cascades to close now."""
    cfg = load_config(config)
    key = _config_key(cfg)
    to_close: list[Cascade] = []
    with _CASCADES_LOCK:
        entry = _CASCADES.get(key)
        if entry is None:
            entry = _CASCADES[key] = _Cached(Cascade(cfg))
        _CASCADES.move_to_end(key)
        entry.users += 1
        while len(_CASCADES) > CASCADE_CACHE_SIZE:
            _, old = _CASCADES.popitem(last=False)
            old.evicted = True
            if old.users == 0:
                to_close.append(old.cascade)
    return entry, to_close


def _release(entry: _Cached) -> bool:
    """Mark one call on ``entry`` finished; True when it was evicted meanwhile and is now to be closed."""
    with _CASCADES_LOCK:
        entry.users -= 1
        return entry.evicted and entry.users == 0


def _cascade_for(config: ConfigLike) -> Cascade:
    """The module-level helpers' cascade for ``config`` (for inspection; it stays cached)."""
    entry, to_close = _acquire(config)
    for c in to_close:
        c.close()
    if _release(entry):
        entry.cascade.close()
    return entry.cascade


def close_cached_cascades() -> None:
    """Close every cascade the module-level helpers built (also run at interpreter exit)."""
    with _CASCADES_LOCK:
        entries = list(_CASCADES.values())
        _CASCADES.clear()
    for e in entries:
        e.evicted = True
        if e.users == 0:
            try:
                e.cascade.close()
            except Exception as exc:  # at exit: close the others anyway
                logging.getLogger("semcascade").warning("closing a cached cascade failed: %s", exc)


atexit.register(close_cached_cascades)


async def generate(prompt: PromptLike, config: ConfigLike = None, *, task: str | None = None) -> CascadeResult:
    """Run the cascade on ``prompt`` (a string or OpenAI-style messages).

    ``config`` is a YAML path, a mapping, a :class:`CascadeConfig`, or ``None``
    for the embedded local default (``configs/local.yaml``). Calls with equal
    configs share one :class:`Cascade` (its run budget, scorer, clients and
    local server); the last :data:`CASCADE_CACHE_SIZE` distinct configs are
    kept, an older one is closed. :func:`close_cached_cascades` closes them all.
    ``task`` runs one of the config's ``tasks``.
    """
    entry, to_close = _acquire(config)
    try:
        for c in to_close:
            await c.aclose()
        return await entry.cascade.generate(prompt, task=task)
    finally:
        if _release(entry):
            await entry.cascade.aclose()


def generate_sync(prompt: PromptLike, config: ConfigLike = None, *, task: str | None = None) -> CascadeResult:
    """Blocking twin of :func:`generate` (through :meth:`Cascade.generate_sync`)."""
    entry, to_close = _acquire(config)
    try:
        for c in to_close:
            c.close()
        return entry.cascade.generate_sync(prompt, task=task)
    finally:
        if _release(entry):
            entry.cascade.close()
