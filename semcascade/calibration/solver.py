"""Choose cascade thresholds from recorded tier outputs: best quality under a cost budget,
or least cost at a quality target.

Two tiers: an exact search over every distinct threshold the records allow
(one candidate between each pair of adjacent observed scores). ``k`` tiers: a
single shadow price ``λ`` (quality per unit of cost) for the Lagrangian
``quality - λ·cost``; for a given ``λ`` every boundary's threshold is a best
response to the others, so at the fixed point the marginal quality per
marginal cost is ``λ`` at every stage boundary. Sweeping ``λ`` traces the
concave hull of the frontier; the feasible best point is returned.

Costs are relative to the final tier alone on the same records (``budget=0.5``:
half of what the strongest tier costs answering everything); quality is the
per-example mean. Reported figures come from :mod:`semcascade.evaluation.replay`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from semcascade.config import TierConfig
from semcascade.errors import CalibrationError
from semcascade.evaluation.replay import ExampleRecord, _answer, cascade_outcomes, summarize, tier_alone
from semcascade.policy import DeferralPolicy, ThresholdPolicy, accept_matrix

__all__ = [
    "StageTable",
    "ThresholdChoice",
    "calibrate_thresholds",
    "candidate_thresholds",
    "pair_curve",
    "shadow_price_thresholds",
]

FloatArray = np.ndarray
#: shadow prices swept by the k-tier solver (quality per unit of cost relative to the final tier alone)
LAMBDAS: tuple[float, ...] = (0.0, *np.logspace(-3, 3, 121).tolist(), 1e9)


def candidate_thresholds(scores: FloatArray) -> FloatArray:
    """Every threshold that routes the observed ``scores`` differently, within [0, 1].

    ``0`` (answer all), the midpoint between each pair of adjacent distinct
    scores, and a point above the largest score when it is below 1 (answer
    none). NaN (unscored) entries never answer, whatever the threshold.
    """
    u = np.unique(scores[~np.isnan(scores)])
    mids = (u[:-1] + u[1:]) / 2 if len(u) > 1 else np.empty(0)
    top = [(u[-1] + 1.0) / 2] if len(u) and u[-1] < 1.0 else []
    return np.unique(np.clip(np.concatenate([[0.0], mids, top]), 0.0, 1.0))


@dataclass(frozen=True)
class StageTable:
    """A cascade over recorded outputs as arrays, one row per tier and one column per example.

    ``quality[i]`` is what answering at tier ``i`` scores, ``step_cost[i]`` what
    visiting tier ``i`` costs (generation + agreement scoring), ``score[i]`` the
    signal's score (NaN when the tier has no score), ``complete[i]`` whether every
    requested sample arrived. Which examples a tier accepts at a threshold is
    the deferral policy's decision (:func:`semcascade.policy.accept_matrix`, the
    rule the live cascade applies): with the threshold policy a NaN score
    escalates unless the threshold is 0 and the tier is complete.
    """

    score: FloatArray
    quality: FloatArray
    step_cost: FloatArray
    complete: FloatArray | None = None
    policy: DeferralPolicy = field(default_factory=ThresholdPolicy)

    @classmethod
    def from_records(
        cls, records: Sequence[ExampleRecord], signal: str, *, policy: DeferralPolicy | None = None
    ) -> StageTable:
        if not records:
            raise CalibrationError("no examples to calibrate on; pass a results folder with examples")
        k = len(records[0].tiers)
        score = np.full((k, len(records)), np.nan)
        quality = np.zeros((k, len(records)))
        cost = np.zeros((k, len(records)))
        complete = np.zeros((k, len(records)), dtype=bool)
        for j, rec in enumerate(records):
            for i, t in enumerate(rec.tiers):
                s = t.scores.get(signal)
                if s is not None and i < k - 1 and not t.failed:
                    score[i, j] = s
                complete[i, j] = not t.failed and len(t.samples) >= t.requested
                quality[i, j] = _answer(t, signal)[0]
                cost[i, j] = t.cost + t.scoring_cost.get(signal, 0.0)
        return cls(score, quality, cost, complete, policy or ThresholdPolicy())

    def accepts(self, i: int, thresholds: Sequence[float] | FloatArray) -> np.ndarray:
        """``(len(thresholds), n)`` bool: which examples tier ``i`` answers at each threshold."""
        done = self.complete[i] if self.complete is not None else np.ones(self.n, dtype=bool)
        stand_in = TierConfig.model_construct(name=f"tier{i}", model="replay", k=1, threshold=0.0)
        return accept_matrix(self.policy, stand_in, self.score[i], thresholds, done)

    @property
    def k(self) -> int:
        return int(self.score.shape[0])

    @property
    def n(self) -> int:
        return int(self.score.shape[1])

    def stops(self, thresholds: Sequence[float], start: int = 0) -> np.ndarray:
        """The tier answering each example when it enters at tier ``start``."""
        stop = np.full(self.n, self.k - 1)
        open_ = np.ones(self.n, dtype=bool)
        for i in range(start, self.k - 1):
            ans = open_ & self.accepts(i, [thresholds[i]])[0]
            stop[ans] = i
            open_ &= ~ans
        return stop

    def evaluate(self, thresholds: Sequence[float]) -> tuple[float, float]:
        """(mean quality, total cost) of the cascade with ``thresholds``."""
        stop = self.stops(thresholds)
        cols = np.arange(self.n)
        paid = np.cumsum(self.step_cost, axis=0)[stop, cols]
        return float(self.quality[stop, cols].mean()), float(paid.sum())

    def final_alone_cost(self) -> float:
        return float(self.step_cost[-1].sum())


def pair_curve(table: StageTable) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Exact two-tier sweep: (thresholds, mean quality, total cost, deferral rate) at every candidate."""
    if table.k != 2:
        raise ValueError("pair_curve needs a two-tier table")
    th = candidate_thresholds(table.score[0])
    answer = table.accepts(0, th)  # (m, n)
    q = (answer @ table.quality[0] + (~answer) @ table.quality[1]) / table.n
    c = table.step_cost[0].sum() + (~answer) @ table.step_cost[1]
    deferral = (~answer).mean(axis=1)
    return th, q, c, deferral


def _best_response(table: StageTable, th: list[float], i: int, lam: float, base: float) -> float:
    """The threshold at boundary ``i`` maximising quality - λ·cost given the other thresholds."""
    reach = table.stops(th) >= i
    cols = np.arange(table.n)
    down = table.stops(th, start=i + 1)
    cum = np.cumsum(table.step_cost, axis=0)
    esc_q = table.quality[down, cols]
    esc_c = cum[down, cols] - cum[i]
    cand = candidate_thresholds(table.score[i])
    answer = table.accepts(i, cand)
    esc = (~answer) & reach[None, :]
    ans = answer & reach[None, :]
    q = (ans @ table.quality[i] + esc @ esc_q) / table.n
    c = (esc @ esc_c) / base
    obj = q - lam * c
    best = obj.max()
    ties = np.flatnonzero(obj >= best - 1e-12 * max(1.0, abs(best)))
    return float(cand[ties[np.argmin(c[ties])]])  # ties: the cheaper threshold


def _lagrangian(table: StageTable, lam: float, base: float, start: list[float], max_passes: int = 50) -> list[float]:
    th = list(start)
    for _ in range(max_passes):
        before = list(th)
        for i in reversed(range(table.k - 1)):
            th[i] = _best_response(table, th, i, lam, base)
        if th == before:
            break
    return th


def _objective(table: StageTable, th: Sequence[float], lam: float, base: float) -> tuple[float, float]:
    q, c = table.evaluate(th)
    return q - lam * c / base, -c


def shadow_price_thresholds(table: StageTable, lam: float, base: float) -> list[float]:
    """Thresholds at which every stage boundary trades quality for cost at rate ``lam`` (a local optimum
    of quality - λ·cost/base, the best of three starts: answer early, escalate all, and all-zero)."""
    starts = [
        [0.0] * (table.k - 1),
        [float(candidate_thresholds(table.score[i])[-1]) for i in range(table.k - 1)],
        [float(np.nanmedian(table.score[i])) if np.isfinite(table.score[i]).any() else 0.0 for i in range(table.k - 1)],
    ]
    sols = [_lagrangian(table, lam, base, s) for s in starts]
    return max(sols, key=lambda th: _objective(table, th, lam, base))


@dataclass(frozen=True)
class ThresholdChoice:
    """Thresholds for the non-final tiers and what they achieve on the records they were chosen on."""

    signal: str
    thresholds: tuple[float, ...]
    quality: float
    cost: float
    #: cost divided by the final tier alone on the same records
    cost_ratio: float
    #: per non-final tier: share of the requests reaching it that it escalated
    deferral: tuple[float, ...]
    #: final tier alone on the same records: its quality and cost
    final_quality: float
    final_cost: float
    method: str
    #: the shadow price λ (quality per unit relative cost) the k-tier solver settled on
    shadow_price: float | None
    n: int
    #: tiers with no score for the signal: they always escalate, their threshold is irrelevant
    unscored: tuple[int, ...] = ()


def _tidy(table: StageTable, thresholds: Sequence[float]) -> tuple[float, ...]:
    """Each threshold with the fewest decimals that route every example exactly as before."""
    out = list(thresholds)
    want = table.stops(thresholds)
    for i, t in enumerate(thresholds):
        for digits in range(2, 18):
            out[i] = round(t, digits)
            if 0.0 <= out[i] <= 1.0 and np.array_equal(table.stops(out), want):
                break
        else:
            out[i] = t
    return tuple(float(x) for x in out)


def _describe_target(budget: float | None, quality: float | None) -> str:
    return f"cost <= {budget:g} x the final tier alone" if budget is not None else f"quality >= {quality:.4g}"


def check_records(records: Sequence[ExampleRecord], signal: str) -> int:
    """The records' number of tiers, after checking they can be calibrated on ``signal``."""
    if not records:
        raise CalibrationError("no examples to calibrate on; pass a results folder with examples")
    k = len(records[0].tiers)
    if k < 2:
        raise CalibrationError("a one-tier run has no thresholds to calibrate; evaluate a config with >= 2 tiers")
    known = {s for r in records for t in r.tiers[:-1] for s, v in t.scores.items() if v is not None}
    if signal not in known:
        raise CalibrationError(
            f"no scores for signal {signal!r} in these results; choose one of {', '.join(sorted(known)) or '(none)'}"
        )
    return k


def calibrate_thresholds(
    records: Sequence[ExampleRecord],
    signal: str,
    *,
    budget: float | None = None,
    quality: float | None = None,
    quality_relative: bool = False,
    method: str = "auto",
) -> ThresholdChoice:
    """Thresholds for ``signal`` that maximise quality with cost <= ``budget`` x the final tier alone,
    or minimise cost with quality >= ``quality`` (x the final tier alone's quality if ``quality_relative``).

    ``method``: ``"exact"`` (every candidate threshold; two tiers), ``"shadow-price"`` (λ sweep; any number
    of tiers) or ``"auto"`` (exact for two tiers). Raises :class:`CalibrationError` when no thresholds
    meet the target, naming the closest achievable value.
    """
    if (budget is None) == (quality is None):
        raise CalibrationError("give exactly one target: a cost budget or a quality target")
    if budget is not None and not budget > 0:
        raise CalibrationError(f"budget must be a positive multiple of the final tier's cost, got {budget}")
    k = check_records(records, signal)
    if method == "auto":
        method = "exact" if k == 2 else "shadow-price"
    if method not in ("exact", "shadow-price"):
        raise CalibrationError(f"unknown method {method!r}; choose exact, shadow-price or auto")
    if method == "exact" and k != 2:
        raise CalibrationError(f"the exact search handles two tiers, these results have {k}; use shadow-price")
    table = StageTable.from_records(records, signal)
    base = table.final_alone_cost()
    if base <= 0:
        raise CalibrationError("the final tier cost nothing in these results; set its prices in the config and re-run")
    final = summarize(tier_alone(records, k - 1, mode="consensus", signal=signal), k)
    target_q = None if quality is None else (quality * final.quality if quality_relative else quality)

    # candidate threshold vectors with their (quality, cost, λ)
    cands: list[tuple[tuple[float, ...], float, float, float | None]] = []
    if method == "exact":
        th, q, c, _ = pair_curve(table)
        cands = [((float(t),), float(qq), float(cc), None) for t, qq, cc in zip(th, q, c, strict=True)]
    else:
        for lam in LAMBDAS:
            sol = tuple(shadow_price_thresholds(table, lam, base))
            qq, cc = table.evaluate(sol)
            cands.append((sol, qq, cc, lam))

    eps = 1e-12
    if budget is not None:
        feasible = [x for x in cands if x[2] / base <= budget + eps]
        if not feasible:
            cheapest = min(x[2] for x in cands) / base
            raise CalibrationError(
                f"no thresholds meet {_describe_target(budget, None)}: the cheapest cascade costs {cheapest:.3f} x; "
                f"raise the budget to at least {np.ceil(cheapest * 1000) / 1000:.3f}"
            )
        best = max(feasible, key=lambda x: (x[1], -x[2]))
    else:
        assert target_q is not None
        feasible = [x for x in cands if x[1] >= target_q - eps]
        if not feasible:
            top = max(x[1] for x in cands)
            rel = f" ({top / final.quality:.3f} x the final tier alone)" if final.quality else ""
            raise CalibrationError(
                f"no thresholds meet {_describe_target(None, target_q)}: the best cascade reaches {top:.4f}{rel}; "
                "lower the quality target"
            )
        best = min(feasible, key=lambda x: (x[2], -x[1]))
    thresholds, _, _, price = best
    sm = summarize(cascade_outcomes(records, signal, list(thresholds)), k)
    unscored = tuple(i for i in range(k - 1) if not np.isfinite(table.score[i]).any())
    return ThresholdChoice(
        signal=signal,
        thresholds=_tidy(table, thresholds),
        quality=sm.quality,
        cost=sm.cost,
        cost_ratio=sm.cost / final.cost if final.cost else float("nan"),
        deferral=tuple(sm.deferral),
        final_quality=final.quality,
        final_cost=final.cost,
        method=method,
        shadow_price=price,
        n=len(records),
        unscored=unscored,
    )
