"""Black-box P(IK) predictors and the pre-generation router.

* :func:`train_pik` fits, per tier, P(this tier answers correctly | query) from
  a harness run's ``examples.jsonl``; :class:`PIKModel` saves/loads it as a
  versioned JSON artifact (``semcascade train-router``).
* :class:`Router` (one method, ``predict``), :data:`ROUTERS` registry,
  :class:`PIKRouter`, :class:`ConstantRouter`.
* :class:`RoutedCascade` picks the tier before any generation.
"""

from semcascade.routing.features import CHEAP_FEATURES, DEFAULT_EMBEDDING_MODEL, cheap_features, query_features
from semcascade.routing.pik import (
    ARTIFACT_FORMAT,
    ARTIFACT_VERSION,
    LoggedExample,
    PIKModel,
    RouterArtifactError,
    RouterError,
    TierModel,
    load_examples,
    split_examples,
    train_pik,
)
from semcascade.routing.router import (
    ROUTERS,
    ConstantRouter,
    PIKRouter,
    RoutedCascade,
    RoutedCascadeResult,
    RouteDecision,
    Router,
    available_routers,
    choose_tier,
    create_router,
    register_router,
)

__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_VERSION",
    "CHEAP_FEATURES",
    "DEFAULT_EMBEDDING_MODEL",
    "ROUTERS",
    "ConstantRouter",
    "LoggedExample",
    "PIKModel",
    "PIKRouter",
    "RouteDecision",
    "RoutedCascade",
    "RoutedCascadeResult",
    "Router",
    "RouterArtifactError",
    "RouterError",
    "TierModel",
    "available_routers",
    "cheap_features",
    "choose_tier",
    "create_router",
    "load_examples",
    "query_features",
    "register_router",
    "split_examples",
    "train_pik",
]
