"""Test doubles and builders shared by the test modules: ``from tests.helpers import ...``.

``tests/__init__.py`` makes ``tests`` a regular package, so pytest puts the
repository root on ``sys.path`` and this module wins over any installed
top-level ``tests`` package (pyserini ships one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from semcascade import PairJudgement

__all__ = [
    "ExactScorer",
    "two_tier_config",
]


class ExactScorer:
    """Similarity 1 for answers equal after stripping and lower-casing, else 0: predictable clusters.

    ``calls`` counts its ``judge()`` calls.
    """

    name = "exact"
    kind = "similarity"

    def __init__(self) -> None:
        self.calls = 0

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        self.calls += 1
        out = []
        for a, b in pairs:
            s = 1.0 if a.strip().lower() == b.strip().lower() else 0.0
            out.append(PairJudgement(s, s))
        return out


def two_tier_config(
    *, cheap: Mapping[str, Any] | None = None, strong: Mapping[str, Any] | None = None, **over: Any
) -> dict[str, Any]:
    """A priced two-tier config (a fresh dict each call, safe to mutate).

    ``cheap`` (``openai/cheap``) samples k=4 and accepts at agreement 0.5;
    ``strong`` (``openai/strong``) answers once, greedily. ``cheap`` / ``strong``
    update the tiers; ``over`` updates the top level.
    """
    return {
        "tiers": [
            {
                "name": "cheap",
                "model": "openai/cheap",
                "k": 4,
                "threshold": 0.5,
                "input_cost_per_token": 1e-6,
                "output_cost_per_token": 2e-6,
                **(cheap or {}),
            },
            {
                "name": "strong",
                "model": "openai/strong",
                "k": 1,
                "temperature": 0.0,
                "input_cost_per_token": 1e-5,
                "output_cost_per_token": 2e-5,
                **(strong or {}),
            },
        ],
        **over,
    }
