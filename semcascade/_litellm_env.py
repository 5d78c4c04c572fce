"""The environment litellm is imported in: offline, never fetching its model cost map from the network."""

from __future__ import annotations

import os

__all__ = ["prepare_litellm_env"]


def prepare_litellm_env() -> None:
    """Set ``LITELLM_LOCAL_MODEL_COST_MAP`` (unless the user did) before ``import litellm``."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
