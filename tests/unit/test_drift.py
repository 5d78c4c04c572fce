"""Escalation-drift monitoring: the stated false-alarm budget holds and real shifts are found."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from semcascade import Cascade, ConfigError, MockProvider
from semcascade.drift import DriftAlarm, DriftBaseline, DriftMonitor, EscalationCusum, ks_pvalue
from semcascade.providers import Completion, CompletionRequest


def _stream(monitor: DriftMonitor, esc: np.ndarray, scores: np.ndarray) -> list[DriftAlarm]:
    out: list[DriftAlarm] = []
    for e, s in zip(esc, scores, strict=True):
        out += monitor.observe(bool(e), float(s))
    return out


def test_stationary_stream_stays_within_the_false_alarm_budget() -> None:
    rng = np.random.default_rng(7)
    base = DriftBaseline.from_outcomes(list(rng.random(500) < 0.2), list(rng.beta(5, 2, 500)))
    n = 200_000
    monitor = DriftMonitor(base, false_alarms_per_10k=2.0)
    alarms = _stream(monitor, rng.random(n) < 0.2, rng.beta(5, 2, n))
    assert len(alarms) / (n / 10_000) <= 2.0  # the configured budget (Lorden's bound for the CUSUM, alpha for KS)
    assert monitor.requests == n


def test_a_rise_of_the_escalation_rate_is_found_quickly() -> None:
    rng = np.random.default_rng(1)
    cusum = EscalationCusum(0.2, shift=0.1, arl0=20_000)
    delay = next(i for i, x in enumerate(rng.random(5_000) < 0.45) if cusum.update(bool(x)) == "up")
    assert delay < 200
    cusum = EscalationCusum(0.4, shift=0.1, arl0=20_000)
    fall = next(i for i, x in enumerate(rng.random(5_000) < 0.1) if cusum.update(bool(x)) == "down")
    assert fall < 300


def test_ks_separates_shifted_scores_only() -> None:
    rng = np.random.default_rng(3)
    a, b, c = rng.normal(0, 1, 300), rng.normal(0, 1, 300), rng.normal(0.5, 1, 300)
    (d_same, same), (d_moved, moved) = ks_pvalue(a, b), ks_pvalue(c, b)
    assert same > 0.05 and moved < 0.01
    stats = pytest.importorskip("scipy.stats")  # the eval extra has it: the statistic is the textbook one
    assert d_same == pytest.approx(stats.ks_2samp(a, b).statistic)
    assert d_moved == pytest.approx(stats.ks_2samp(c, b).statistic)


def test_alarm_reaches_the_log_and_the_callback(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[DriftAlarm] = []
    base = DriftBaseline(escalation_rate=0.1, scores=[0.9] * 50, n=50)
    monitor = DriftMonitor(base, window=20, on_alarm=seen.append, task="rc")
    with caplog.at_level(logging.WARNING, logger="semcascade.drift"):
        _stream(monitor, np.ones(200, dtype=bool), np.full(200, 0.2))
    kinds = {a.kind for a in seen}
    assert kinds == {"escalation_rate", "score_distribution"}
    assert seen[0].task == "rc" and "semcascade calibrate" in seen[0].message()
    assert any("drift alarm" in r.message and "task 'rc'" in r.message for r in caplog.records)


CFG: dict[str, Any] = {
    "tiers": [
        {"name": "cheap", "model": "openai/cheap", "k": 3, "threshold": 0.9},
        {"name": "strong", "model": "openai/strong", "k": 1, "temperature": 0.0},
    ],
    "scorer": {"name": "lexical"},
}


def handler(req: CompletionRequest) -> Completion:
    q = str(req.messages[-1]["content"])
    if req.model == "openai/cheap" and q.startswith("easy"):
        return MockProvider.texts(req.model, ["same"] * req.n)
    return MockProvider.texts(req.model, [f"x{i}" for i in range(req.n)])


async def test_the_cascade_feeds_a_configured_monitor_through_the_hooks() -> None:
    cfg = {**CFG, "drift": {"enabled": True, "baseline": {"escalation_rate": 0.0, "scores": [1.0] * 30, "n": 30}}}
    async with Cascade(cfg, provider=MockProvider(handler)) as cascade:
        assert cascade.drift is not None and cascade.drift in cascade.hooks
        for q in ["easy 1", "hard 1", "easy 2", "hard 2"]:
            await cascade.generate(q)
    assert cascade.drift.requests == 4 and cascade.drift.escalations == 2


def test_enabled_without_a_baseline_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"drift\.baseline"):
        Cascade({**CFG, "drift": {"enabled": True}}, provider=MockProvider(handler))


def _certificate(eps: float) -> Any:
    from semcascade.certificate import RiskCertificate

    return RiskCertificate(
        loss="quality_drop", eps=eps, delta=0.1, n=300, date="2026-01-01", calibration_loss=eps / 2, p_value=0.05,
        p_value_method="binomial", correction="fixed_sequence", candidates=201,
    )  # fmt: skip


def test_labelled_losses_within_the_certificate_raise_no_more_alarms_than_the_budget() -> None:
    rng = np.random.default_rng(2)
    base = DriftBaseline.from_outcomes([False, True] * 50, [0.5] * 100)
    mon = DriftMonitor(base, false_alarms_per_10k=2.0, certificate=_certificate(0.05))
    n = 200_000
    alarms = [a for x in rng.random(n) < 0.05 for a in mon.observe_loss(float(x))]
    assert mon.labelled == n
    assert len(alarms) / (n / 10_000) <= 2.0  # the loss test's level per window is the score test's


def test_a_breach_of_the_certified_loss_is_an_alarm() -> None:
    rng = np.random.default_rng(4)
    base = DriftBaseline.from_outcomes([False, True] * 50, [0.5] * 100)
    seen: list[DriftAlarm] = []
    mon = DriftMonitor(base, certificate=_certificate(0.05), on_alarm=seen.append)
    alarms = [a for x in rng.random(1_000) < 0.15 for a in mon.observe_loss(float(x))]
    assert alarms and alarms[0].kind == "certified_loss" and seen == alarms
    assert alarms[0].baseline == 0.05 and alarms[0].observed > 0.1
    assert "breaches the certified 0.05" in alarms[0].message()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mon.observe_loss(1.5)
    assert DriftMonitor(base).observe_loss(1.0) == []  # no certificate: nothing to check


def test_the_cascade_monitor_carries_the_configs_certificate() -> None:
    cert = _certificate(0.05)
    cfg = {
        "tiers": [{"name": "a", "model": "openai/x", "k": 1}, {"name": "b", "model": "openai/y", "k": 1}],
        "drift": {"enabled": True, "baseline": {"escalation_rate": 0.3, "n": 10}},
        "certificate": cert.model_dump(mode="json"),
    }
    cascade = Cascade(cfg, provider=MockProvider(lambda r: "x"))
    assert cascade.drift is not None and cascade.drift.certificate == cert
