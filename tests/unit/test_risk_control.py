"""Risk-controlled thresholds: valid p-values, the family-wise correction, the fallback, the written certificate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semcascade.calibration.risk import (
    GRID,
    bonferroni,
    calibrate_risk,
    calibrate_risk_run,
    cheapest,
    fixed_sequence,
    loss_table,
    ltt_reject,
    write_certified_config,
)
from semcascade.certificate import RiskCertificate, binomial_cdf, hb_pvalue, risk_pvalue, upper_tail_pvalue
from semcascade.config import load_config
from semcascade.errors import CalibrationError
from semcascade.evaluation.records import load_run
from semcascade.evaluation.replay import cascade_outcomes, tier_alone

REPO = Path(__file__).resolve().parents[2]
DELTA = 0.1


def _rejection_rate(draw: object, eps: float, method: str, n: int, reps: int) -> float:
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(reps):
        losses = draw(rng, n)  # type: ignore[operator]
        hits += risk_pvalue(float(np.mean(losses)), n, eps, method) <= DELTA  # type: ignore[arg-type]
    return hits / reps


@pytest.mark.parametrize("method", ["binomial", "hoeffding_bentkus"])
def test_pvalues_are_valid_at_the_boundary_of_the_null(method: str) -> None:
    """Risk exactly eps (the hardest null): 'risk <= eps' is certified in at most delta of the draws."""
    eps, n, reps = 0.1, 200, 4000
    rate = _rejection_rate(lambda rng, n: rng.random(n) < eps, eps, method, n, reps)
    assert rate <= DELTA + 3 * np.sqrt(DELTA * (1 - DELTA) / reps)
    assert rate > 0.0 if method == "binomial" else True  # the exact test spends its level


def test_hb_pvalue_is_valid_for_graded_losses() -> None:
    eps, n, reps = 0.1, 100, 4000
    rate = _rejection_rate(lambda rng, n: rng.beta(1.0, 9.0, n), eps, "hoeffding_bentkus", n, reps)  # mean 0.1
    assert rate <= DELTA + 3 * np.sqrt(DELTA * (1 - DELTA) / reps)


def test_pvalues_have_power_well_inside_the_null() -> None:
    assert risk_pvalue(0.02, 400, 0.1, "binomial") < 1e-6
    assert hb_pvalue(0.02, 400, 0.1) < 1e-4
    assert risk_pvalue(0.12, 400, 0.1, "binomial") > 0.5 and hb_pvalue(0.12, 400, 0.1) == 1.0


def test_binomial_cdf_matches_direct_sums() -> None:
    from math import comb

    for k, n, p in [(0, 10, 0.1), (3, 20, 0.3), (17, 40, 0.5)]:
        want = sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))
        assert binomial_cdf(k, n, p) == pytest.approx(want, rel=1e-9)


def test_fixed_sequence_stops_at_the_first_acceptance() -> None:
    p = [0.01, 0.02, 0.5, 0.001, 0.03]
    assert fixed_sequence(p, 0.05) == [0, 1]  # 3 and 4 would reject alone, but the sequence stopped at 2
    assert fixed_sequence([0.2, 0.0], 0.05) == []
    assert bonferroni(p, 0.05) == [0, 3]  # level 0.05 / 5 = 0.01


def test_ltt_controls_the_risk_of_the_chosen_point() -> None:
    """Many calibration draws of a synthetic cascade: the cheapest certified point's true risk exceeds eps
    in at most delta of them, while the uncorrected choice (cheapest with empirical risk <= eps) fails often."""
    true_risk = np.linspace(0.0, 0.3, 61)  # path: most conservative first, cost falls along it
    eps, n, reps = 0.1, 300, 1000
    rng = np.random.default_rng(5)
    bad = naive_bad = 0
    for _ in range(reps):
        u = rng.random(n)
        loss = (u[None, :] < true_risk[:, None]).astype(float)  # nested: monotone per example, like a threshold
        rejected, _, method = ltt_reject(loss, eps, DELTA)
        assert method == "binomial"
        if rejected and true_risk[max(rejected)] > eps:
            bad += 1
        ok = np.flatnonzero(loss.mean(axis=1) <= eps)
        naive_bad += bool(len(ok)) and true_risk[ok.max()] > eps
    assert bad / reps <= DELTA + 3 * np.sqrt(DELTA * (1 - DELTA) / reps)
    assert naive_bad / reps > 0.3


@pytest.fixture(scope="module")
def halueval() -> object:
    return load_run(REPO / "eval" / "results" / "halueval_qa")


def test_loss_table_is_the_replayed_loss(halueval: object) -> None:
    run = halueval
    recs = run.records[:120]  # type: ignore[attr-defined]
    ths = [(0.9,), (0.5,), (0.1,)]
    strong = tier_alone(recs, 1, mode="consensus", signal="confidence")
    for loss in ("quality_drop", "error"):
        table = loss_table(recs, "confidence", loss, ths)  # type: ignore[arg-type]
        for row, th in enumerate(ths):
            outs = cascade_outcomes(recs, "confidence", list(th))
            q = np.array([0.0 if o.failed else o.quality for o in outs])
            qs = np.array([0.0 if o.failed else o.quality for o in strong])
            want = np.clip(qs - q, 0, 1) if loss == "quality_drop" else 1 - q
            assert np.allclose(table.loss[row], want)
            assert np.allclose(table.cost[row], [o.cost for o in outs])


def test_no_point_qualifies_returns_the_strong_tier_alone(tmp_path: Path) -> None:
    rep = calibrate_risk_run(REPO / "eval" / "results" / "nq", eps=0.5, delta=DELTA, loss="error")
    assert not rep.choice.certified and rep.choice.thresholds is None
    assert "no operating point qualifies" in rep.text()
    path = write_certified_config(rep, tmp_path / "strong.yaml")
    cfg = load_config(path)
    assert [t.name for t in cfg.tiers] == ["qwen-1.5b"] and cfg.certificate is None
    with pytest.raises(CalibrationError, match="no operating point qualified"):
        rep.choice.certificate()


def test_certified_point_is_written_with_its_certificate(tmp_path: Path) -> None:
    rep = calibrate_risk_run(REPO / "eval" / "results" / "halueval_qa", eps=0.05, delta=DELTA)
    c = rep.choice
    assert c.certified and c.calibration_loss <= 0.05 and c.p_value <= DELTA
    assert c.thresholds is not None and c.thresholds[0] in GRID
    path = write_certified_config(rep, tmp_path / "cert.yaml", date="2026-01-02")
    cfg = load_config(path)
    assert cfg.tiers[0].threshold == c.thresholds[0]
    cert = cfg.certificate
    assert cert is not None
    assert (cert.loss, cert.eps, cert.delta, cert.n, cert.date) == ("quality_drop", 0.05, DELTA, c.n, "2026-01-02")
    assert cert.correction == "fixed_sequence" and cert.p_value_method == "binomial"


def test_a_task_carries_its_own_certificate() -> None:
    cert = RiskCertificate(
        loss="error", eps=0.2, delta=0.1, n=100, date="2026-01-01", calibration_loss=0.1, p_value=0.01,
        p_value_method="binomial", correction="fixed_sequence", candidates=201,
    )  # fmt: skip
    cfg = load_config(
        {
            "tiers": [{"name": "a", "model": "openai/x"}],
            "tasks": {"math": {"certificate": cert.model_dump(mode="json")}},
        }
    )
    assert cfg.certificate is None and cfg.task_config("math").certificate == cert


def test_bad_targets_are_calibration_errors(halueval: object) -> None:
    recs = halueval.records  # type: ignore[attr-defined]
    with pytest.raises(CalibrationError, match="--risk"):
        calibrate_risk(recs, "confidence", eps=0.0, delta=0.1)
    with pytest.raises(CalibrationError, match="--delta"):
        calibrate_risk(recs, "confidence", eps=0.1, delta=1.0)
    with pytest.raises(CalibrationError, match="vibes"):
        calibrate_risk(recs, "vibes", eps=0.1, delta=0.1)
    cnn = load_run(REPO / "eval" / "results" / "cnn_dailymail")
    with pytest.raises(CalibrationError, match="right/wrong answers"):
        calibrate_risk(cnn.records, "confidence", eps=0.1, delta=0.1, loss="hallucination")


def test_three_tiers_use_a_path_from_the_solver_on_a_held_part() -> None:
    run = load_run(REPO / "eval" / "results" / "halueval_qa-pool3")
    c = calibrate_risk(run.records, "p_mean", eps=0.1, delta=DELTA)
    assert c.n_path + c.n == len(run.records) and c.n_path > 0
    if c.thresholds is not None:
        assert len(c.thresholds) == 2


def test_cheapest_prefers_lower_cost() -> None:
    from semcascade.calibration.risk import LossTable

    t = LossTable([(0.9,), (0.5,)], np.zeros((2, 3)), np.array([[3.0, 3, 3], [1.0, 1, 1]]), np.zeros(3),
                  np.ones(3), True)  # fmt: skip
    assert cheapest(t, [0, 1]) == 1 and cheapest(t, [0]) == 0 and cheapest(t, []) is None


def test_upper_tail_pvalue_flags_breaches_only() -> None:
    assert upper_tail_pvalue(0.05, 200, 0.1, binary=True) == 1.0
    assert upper_tail_pvalue(0.2, 200, 0.1, binary=True) < 1e-4
    assert upper_tail_pvalue(0.2, 200, 0.1, binary=False) < 0.05


def test_cli_risk_target_writes_a_certified_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from semcascade import cli

    out = tmp_path / "c.yaml"
    code = cli.main(["calibrate", str(REPO / "eval/results/halueval_qa"), "--risk", "0.05", "--delta", "0.1",
                     "--fwer", "bonferroni", "--out", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0 and "bonferroni" in text and "certified thresholds" in text
    cert = load_config(out).certificate
    assert cert is not None and cert.correction == "bonferroni" and cert.eps == 0.05
