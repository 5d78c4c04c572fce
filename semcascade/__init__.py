"""semcascade: black-box semantic-agreement LLM cascades.

A request goes to the cheapest tier first; the tier samples k answers, scores
their meaning-level agreement, and returns the consensus when they agree.
Only on disagreement does the request escalate to the next, stronger tier.

    import semcascade
    result = semcascade.generate_sync("Who wrote Hamlet?")
    print(result.text, result.tier, result.agreement)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from semcascade._budget import BudgetConfig
from semcascade.aggregation import Consensus, consensus, weighted_vote
from semcascade.answers import AnswerFormat, extract_answer
from semcascade.calibration import (
    CalibrationReport,
    Envelope,
    ThresholdChoice,
    calibrate_run,
    calibrate_thresholds,
    model_pool,
    pairwise_envelope,
)
from semcascade.cascade import Cascade, PromptLike, normalize_messages
from semcascade.confidence import ConfidenceModel, LogisticConfidence, TierEvidence, load_confidence_model
from semcascade.config import (
    CascadeConfig,
    EquivalenceConfig,
    LocalServerConfig,
    ScorerConfig,
    TierConfig,
    load_config,
)
from semcascade.errors import (
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    CalibrationError,
    CascadeFailedError,
    ConfidenceError,
    ConfigError,
    ContentRefusedError,
    DeadlineExceededError,
    EmptyPromptError,
    LocalServerError,
    MalformedResponseError,
    MissingAPIKeyError,
    PromptError,
    PromptTooLongError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    ScorerError,
    SemcascadeError,
    UnknownModelError,
)
from semcascade.memory import (
    InMemoryStrategyStore,
    MemoryConfig,
    MemoryStoreError,
    SQLiteStrategyStore,
    StrategyMemory,
    StrategyStore,
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
from semcascade.routing import (
    ConstantRouter,
    PIKModel,
    PIKRouter,
    RoutedCascade,
    Router,
    RouterArtifactError,
    RouterError,
    train_pik,
)
from semcascade.scoring._registry import available_scorers, create_scorer, register_scorer
from semcascade.scoring.base import AgreementScorer, PairJudgement

__version__ = "0.1.0"

__all__ = [
    "AgreementScorer",
    "AnswerFormat",
    "AuthenticationError",
    "BadRequestError",
    "CalibrationError",
    "CalibrationReport",
    "BudgetConfig",
    "BudgetExceededError",
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
    "PromptError",
    "PromptTooLongError",
    "Provider",
    "ProviderError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
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

# Cascades built by the module-level helpers, keyed by config, created lazily
# on first use (never at import) so scorers and servers load once per process.
_CASCADES: dict[str, Cascade] = {}
_CASCADES_LOCK = threading.Lock()


def _cascade_for(config: ConfigLike) -> Cascade:
    if isinstance(config, Mapping | CascadeConfig):
        return Cascade(config)  # unhashable/ad hoc configs are not cached
    key = str(Path(config).resolve()) if config is not None else "<default>"
    with _CASCADES_LOCK:
        if key not in _CASCADES:
            _CASCADES[key] = Cascade(config)
        return _CASCADES[key]


async def generate(prompt: PromptLike, config: ConfigLike = None) -> CascadeResult:
    """Run the cascade on ``prompt`` (a string or OpenAI-style messages).

    ``config`` is a YAML path, a mapping, a :class:`CascadeConfig`, or ``None``
    for the embedded local default (``configs/local.yaml``). For many calls,
    build one :class:`Cascade` and reuse it.
    """
    return await _cascade_for(config).generate(prompt)


def generate_sync(prompt: PromptLike, config: ConfigLike = None) -> CascadeResult:
    """Blocking twin of :func:`generate`."""
    return _cascade_for(config).generate_sync(prompt)
