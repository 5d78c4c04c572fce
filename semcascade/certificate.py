"""The risk certificate of a calibrated operating point, and the tail bounds it rests on.

``semcascade calibrate RUN --risk EPS --delta DELTA`` (:mod:`semcascade.calibration.risk`)
writes a :class:`RiskCertificate` into the config (``certificate:``, per task too):
with probability at least ``1 - delta`` over the calibration draw, the expected
``loss`` of the written thresholds on new traffic from the same distribution is
at most ``eps``. The drift monitor (:mod:`semcascade.drift`) checks labelled
traffic against it.

The p-values here are valid for a mean of ``n`` i.i.d. losses in ``[0, 1]``
under the null ``E[loss] > eps`` (a large risk), as Learn-then-Test needs
(Angelopoulos et al., 2021, "Learn then Test"):

* :func:`binomial_pvalue`: exact for 0/1 losses, ``P(Binom(n, eps) <= n·R̂)``;
* :func:`hb_pvalue`: Hoeffding–Bentkus for bounded losses,
  ``min(exp(-n·h(R̂ ∧ eps, eps)), e·P(Binom(n, eps) <= ⌈n·R̂⌉))``.

:func:`upper_tail_pvalue` is the opposite test (null ``E[loss] <= eps``), used
to raise an alarm when labelled traffic breaches a certificate.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "LossName",
    "RiskCertificate",
    "binomial_cdf",
    "binomial_pvalue",
    "hb_pvalue",
    "risk_pvalue",
    "upper_tail_pvalue",
]

LossName = Literal["quality_drop", "error", "hallucination"]
PValueName = Literal["binomial", "hoeffding_bentkus"]


class RiskCertificate(BaseModel):
    """What a risk-controlled calibration certified about the config's thresholds (``certificate:``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    loss: LossName = Field(
        description="per-request loss in [0, 1]: quality_drop = max(0, strong alone's quality - the cascade's), "
        "error = 1 - quality, hallucination = a wrong answer was returned (failures excluded)"
    )
    eps: float = Field(gt=0.0, lt=1.0, description="certified bound on the expected loss on new traffic")
    delta: float = Field(gt=0.0, lt=1.0, description="probability over the calibration draw that the bound fails")
    n: int = Field(ge=1, description="calibration examples the certificate was computed on")
    date: str = Field(min_length=1, description="when it was computed (ISO date, UTC)")
    calibration_loss: float = Field(ge=0.0, le=1.0, description="mean loss of the chosen point on the calibration draw")
    p_value: float = Field(ge=0.0, le=1.0, description="p-value of 'risk > eps' at the chosen point")
    p_value_method: PValueName = Field(description="binomial (0/1 losses) or hoeffding_bentkus (bounded losses)")
    correction: Literal["fixed_sequence", "bonferroni"] = Field(
        description="family-wise error control over the candidate points (Learn-then-Test)"
    )
    candidates: int = Field(ge=1, description="candidate operating points in the tested family")
    signal: str = Field(default="", description="the deferral signal the thresholds apply to")
    source: str = Field(default="", description="the eval results the certificate was computed from")


@lru_cache(maxsize=256)
def _cdf_table(n: int, p: float) -> tuple[float, ...]:
    """``P(Binom(n, p) <= k)`` for k = 0..n, from the log pmf (stable for n in the tens of thousands)."""
    i = np.arange(n + 1)
    logc = np.array([math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) for k in range(n + 1)])
    logpmf = logc + i * math.log(p) + (n - i) * math.log1p(-p)
    top = float(logpmf.max())
    pmf = np.exp(logpmf - top)
    cdf = np.cumsum(pmf) / pmf.sum()
    return tuple(float(min(1.0, x)) for x in cdf)


def binomial_cdf(k: int, n: int, p: float) -> float:
    """``P(Binom(n, p) <= k)``."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    return _cdf_table(n, float(p))[k]


def binomial_pvalue(losses_sum: float, n: int, eps: float) -> float:
    """Exact p-value of ``risk > eps`` for ``n`` 0/1 losses summing to ``losses_sum``."""
    return binomial_cdf(round(losses_sum), n, eps)


def _kl(a: float, b: float) -> float:
    """Bernoulli KL divergence ``h(a, b)`` (0·log 0 = 0)."""
    out = 0.0
    if a > 0:
        out += a * math.log(a / b)
    if a < 1:
        out += (1 - a) * math.log((1 - a) / (1 - b))
    return out


def hb_pvalue(mean_loss: float, n: int, eps: float) -> float:
    """Hoeffding–Bentkus p-value of ``risk > eps`` for ``n`` losses in [0, 1] with mean ``mean_loss``."""
    r = min(max(mean_loss, 0.0), 1.0)
    hoeffding = math.exp(-n * _kl(min(r, eps), eps))
    bentkus = math.e * binomial_cdf(math.ceil(n * r - 1e-9), n, eps)
    return float(min(1.0, hoeffding, bentkus))


def risk_pvalue(mean_loss: float, n: int, eps: float, method: PValueName) -> float:
    """The p-value of ``risk > eps`` by ``method``."""
    if method == "binomial":
        return binomial_pvalue(mean_loss * n, n, eps)
    return hb_pvalue(mean_loss, n, eps)


def upper_tail_pvalue(mean_loss: float, n: int, eps: float, *, binary: bool) -> float:
    """p-value of ``risk <= eps`` (a breach test): ``P(Binom(n, eps) >= n·R̂)`` for 0/1 losses,
    Hoeffding's ``exp(-n·h(R̂, eps))`` for ``R̂ > eps`` otherwise."""
    if n <= 0 or mean_loss <= eps:
        return 1.0
    if binary:
        return float(max(0.0, 1.0 - binomial_cdf(round(mean_loss * n) - 1, n, eps)))
    return float(min(1.0, math.exp(-n * _kl(min(mean_loss, 1.0), eps))))
