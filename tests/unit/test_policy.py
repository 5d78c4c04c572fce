from __future__ import annotations

import pytest

from semcascade.config import TierConfig
from semcascade.errors import ConfigError
from semcascade.policy import ThresholdPolicy, available_policies, create_policy

T = TierConfig(name="t", model="m", threshold=0.7)


@pytest.mark.parametrize(
    ("agreement", "is_last", "final", "action"),
    [
        (0.7, False, "answer", "accept"),  # threshold is inclusive
        (0.69, False, "answer", "escalate"),
        (0.2, True, "answer", "accept"),
        (0.2, True, "abstain", "abstain"),
        (0.9, True, "abstain", "accept"),
        (None, False, "answer", "escalate"),
        (None, True, "abstain", "accept"),
    ],
)
def test_threshold_policy(agreement: float | None, is_last: bool, final: str, action: str) -> None:
    d = ThresholdPolicy().decide(
        T, agreement, n_samples=1 if agreement is None else 5, is_last=is_last, final_action=final
    )  # type: ignore[arg-type]
    assert d.action == action
    assert d.reason


def test_zero_threshold_accepts_single_sample() -> None:
    t0 = TierConfig(name="t", model="m", threshold=0.0, k=1)
    assert ThresholdPolicy().decide(t0, None, n_samples=1, is_last=False, final_action="answer").action == "accept"


def test_registry() -> None:
    assert "threshold" in available_policies()
    assert isinstance(create_policy("threshold"), ThresholdPolicy)
    with pytest.raises(ConfigError, match="unknown policy 'nope'"):
        create_policy("nope")
