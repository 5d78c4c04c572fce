"""Risk-controlled thresholds: the cheapest operating point whose loss on new traffic is certified.

    rep = calibrate_risk_run("eval/results/halueval_qa", eps=0.05, delta=0.1, loss="quality_drop")
    print(rep.text())

Learn-then-Test (Angelopoulos, Bates, Candès, Jordan, Lei, 2021): each candidate
operating point ``λ_j`` (thresholds of every non-final tier) is a null
hypothesis ``H_j: R(λ_j) > eps``, where ``R`` is the expected per-request loss
in [0, 1] on traffic from the calibration distribution. A valid p-value per
candidate (:mod:`semcascade.certificate`: exact binomial for 0/1 losses,
Hoeffding–Bentkus otherwise) and a family-wise correction (fixed-sequence
testing along a path fixed before the data are seen, most conservative first;
or Bonferroni) reject a set of hypotheses whose family-wise error is at most
``delta``. Every rejected point has ``R <= eps`` with probability at least
``1 - delta`` jointly, so the cheapest of them is certified. When none is
rejected, the answer is the strong tier alone.

The candidate path: for two tiers a fixed grid of thresholds (1.000, 0.995, ...,
0) independent of the data, so the whole calibration draw tests. For more
tiers the path comes from the k-tier solver (:func:`shadow_price_thresholds`,
one point per shadow price) fitted on a first share of the calibration draw,
and only the rest tests (the split keeps the path independent of the test
part). Which examples a tier accepts at a threshold is the deferral policy's
(:meth:`StageTable.accepts`, the rule the live cascade applies), and the
figures reported are replayed by :mod:`semcascade.evaluation.replay`.
See ``docs/risk_control.md``.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from semcascade.calibration.run import (
    CalibrationReport,
    HeldOut,
    calibration_split,
    run_config_path,
    write_calibrated_config,
)
from semcascade.calibration.solver import LAMBDAS, StageTable, ThresholdChoice, check_records, shadow_price_thresholds
from semcascade.certificate import LossName, PValueName, RiskCertificate, risk_pvalue
from semcascade.errors import CalibrationError
from semcascade.evaluation.records import EvalRun
from semcascade.evaluation.replay import ExampleRecord, cascade_outcomes, summarize, tier_alone

__all__ = [
    "GRID",
    "LOSSES",
    "LossTable",
    "RiskChoice",
    "RiskReport",
    "bonferroni",
    "calibrate_risk",
    "calibrate_risk_run",
    "cheapest",
    "fixed_sequence",
    "loss_table",
    "ltt_reject",
    "plain_choice",
    "write_certified_config",
]

LOSSES: tuple[LossName, ...] = ("quality_drop", "error", "hallucination")
Correction = Literal["fixed_sequence", "bonferroni"]
#: the two-tier candidate path, most conservative (escalate the most) first; fixed before any data
GRID: tuple[float, ...] = tuple(float(x) for x in np.round(np.linspace(1.0, 0.0, 201), 3))


@dataclass(frozen=True)
class LossTable:
    """Per candidate point (rows, in test order) and example (columns): loss in [0, 1] and cost paid."""

    candidates: list[tuple[float, ...]]
    loss: np.ndarray
    cost: np.ndarray
    #: the strong (final) tier alone on the same examples
    strong_loss: np.ndarray
    strong_cost: np.ndarray
    #: every loss is 0 or 1 (the exact binomial p-value applies)
    binary: bool

    def columns(self, idx: np.ndarray) -> LossTable:
        """The same table restricted to examples ``idx``."""
        return LossTable(
            self.candidates, self.loss[:, idx], self.cost[:, idx], self.strong_loss[idx], self.strong_cost[idx],
            self.binary,
        )  # fmt: skip


def _per_example_loss(loss: LossName, q: np.ndarray, failed: np.ndarray, strong_q: np.ndarray) -> np.ndarray:
    """The loss of answers of quality ``q`` (``failed``: no answer) against the strong tier's ``strong_q``.

    * ``quality_drop``: ``max(0, q_strong - q)`` with a failure scoring 0 (for 0/1 quality:
      1 exactly when the strong tier alone is right and the cascade is not);
    * ``error``: ``1 - q``, a failure 1;
    * ``hallucination``: 1 when an answer was returned and it is wrong (``q < 1/2``); a failure is no answer.
    """
    qq = np.where(failed, 0.0, q)
    if loss == "quality_drop":
        return np.asarray(np.clip(strong_q - qq, 0.0, 1.0), dtype=float)
    if loss == "error":
        return np.asarray(np.clip(1.0 - qq, 0.0, 1.0), dtype=float)
    return ((~failed) & (qq < 0.5)).astype(float)


def loss_table(
    records: Sequence[ExampleRecord], signal: str, loss: LossName, candidates: Sequence[Sequence[float]]
) -> LossTable:
    """The loss and cost of every candidate threshold vector on every example (no model call)."""
    if loss not in LOSSES:
        raise CalibrationError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    table = StageTable.from_records(records, signal)
    failed = np.array([[t.failed for t in r.tiers] for r in records], dtype=bool).T  # (k, n)
    quality = np.where(failed, 0.0, table.quality)
    if loss == "hallucination" and not np.isin(quality, (0.0, 1.0)).all():
        raise CalibrationError(
            "the hallucination loss needs right/wrong answers (qa, rc, math); this run's quality is graded "
            "(e.g. rougeL): use --loss quality_drop or error"
        )
    strong_q = quality[-1]
    cols = np.arange(table.n)
    paid_by_stop = np.cumsum(table.step_cost, axis=0)
    losses, costs = [], []
    for th in candidates:
        stop = table.stops(list(th))
        losses.append(_per_example_loss(loss, quality[stop, cols], failed[stop, cols], strong_q))
        costs.append(paid_by_stop[stop, cols])
    lm = np.array(losses, dtype=float).reshape(len(candidates), table.n)
    strong_loss = _per_example_loss(loss, strong_q, failed[-1], strong_q)
    return LossTable(
        [tuple(float(x) for x in th) for th in candidates],
        lm,
        np.array(costs, dtype=float).reshape(len(candidates), table.n),
        strong_loss,
        table.step_cost[-1].copy(),
        bool(np.isin(lm, (0.0, 1.0)).all() and np.isin(strong_loss, (0.0, 1.0)).all()),
    )


def ltt_reject(
    loss: np.ndarray,
    eps: float,
    delta: float,
    *,
    correction: Correction = "fixed_sequence",
    method: PValueName | Literal["auto"] = "auto",
) -> tuple[list[int], list[float], PValueName]:
    """Learn-then-Test on a ``(candidates, n)`` loss matrix whose rows are in test order.

    Returns (rejected candidate rows, p-value of every row, p-value method). ``fixed_sequence``
    tests rows in order at level ``delta`` and stops at the first it cannot reject;
    ``bonferroni`` rejects every row with p <= ``delta / rows``. Either way the chance that any
    rejected row has risk above ``eps`` is at most ``delta``.
    """
    _m, n = loss.shape
    if n == 0:
        raise CalibrationError("no calibration examples to test on; pass a run with more examples")
    if method == "auto":
        method = "binomial" if np.isin(loss, (0.0, 1.0)).all() else "hoeffding_bentkus"
    means = loss.mean(axis=1)
    pvals = [risk_pvalue(float(r), n, eps, method) for r in means]
    test = bonferroni if correction == "bonferroni" else fixed_sequence
    return test(pvals, delta), pvals, method


def fixed_sequence(pvalues: Sequence[float], delta: float) -> list[int]:
    """Fixed-sequence testing: reject in order at level ``delta`` until the first p-value above it
    (family-wise error <= ``delta`` when the order is fixed before the data are seen)."""
    out: list[int] = []
    for j, p in enumerate(pvalues):
        if p > delta:
            break
        out.append(j)
    return out


def bonferroni(pvalues: Sequence[float], delta: float) -> list[int]:
    """Bonferroni: reject every hypothesis with p <= ``delta / m``."""
    return [j for j, p in enumerate(pvalues) if p <= delta / max(1, len(pvalues))]


def plain_choice(table: LossTable, eps: float) -> int | None:
    """The uncertified point: the cheapest candidate whose calibration loss is at most ``eps``."""
    ok = np.flatnonzero(table.loss.mean(axis=1) <= eps + 1e-12)
    if not len(ok):
        return None
    cost = table.cost[ok].mean(axis=1)
    return int(ok[np.argmin(cost)])


def cheapest(table: LossTable, rows: Sequence[int]) -> int | None:
    """The cheapest of ``rows`` on the table's examples (ties: the earlier, more conservative row)."""
    if not rows:
        return None
    cost = table.cost[list(rows)].mean(axis=1)
    return int(list(rows)[int(np.argmin(cost))])


@dataclass(frozen=True)
class RiskChoice:
    """The certified operating point (``thresholds is None``: no point qualified, the strong tier alone)."""

    signal: str
    loss: LossName
    eps: float
    delta: float
    correction: Correction
    p_value_method: PValueName
    thresholds: tuple[float, ...] | None
    #: calibration examples that tested (after the path split for k > 2 tiers)
    n: int
    #: calibration examples that chose the path (k > 2 tiers; 0 for the fixed two-tier grid)
    n_path: int
    candidates: int
    calibration_loss: float
    p_value: float
    #: mean cost of the point on the calibration draw / the strong tier alone's
    cost_ratio: float
    #: the uncertified point (lowest cost with calibration loss <= eps) and its figures
    plain_thresholds: tuple[float, ...] | None
    plain_loss: float | None
    plain_cost_ratio: float | None
    #: the strong tier alone on the calibration draw
    strong_loss: float

    @property
    def certified(self) -> bool:
        return self.thresholds is not None

    def certificate(self, *, source: str = "", date: str | None = None) -> RiskCertificate:
        if self.thresholds is None:
            raise CalibrationError("no operating point qualified: there is no certificate to write")
        return RiskCertificate(
            loss=self.loss, eps=self.eps, delta=self.delta, n=self.n,
            date=date or _dt.datetime.now(_dt.UTC).date().isoformat(),
            calibration_loss=round(self.calibration_loss, 6), p_value=float(f"{self.p_value:.6g}"),
            p_value_method=self.p_value_method, correction=self.correction, candidates=self.candidates,
            signal=self.signal, source=source,
        )  # fmt: skip


def _solver_path(records: Sequence[ExampleRecord], signal: str) -> list[tuple[float, ...]]:
    """k > 2 tiers: the solver's point at every shadow price on ``records``, most expensive first."""
    table = StageTable.from_records(records, signal)
    base = table.final_alone_cost()
    if base <= 0:
        raise CalibrationError("the final tier cost nothing in these results; set its prices in the config and re-run")
    sols = {tuple(shadow_price_thresholds(table, lam, base)) for lam in LAMBDAS}
    return sorted(sols, key=lambda th: (-table.evaluate(th)[1], th))


def calibrate_risk(
    records: Sequence[ExampleRecord],
    signal: str,
    *,
    eps: float,
    delta: float,
    loss: LossName = "quality_drop",
    correction: Correction = "fixed_sequence",
    path_share: float = 0.3,
    seed: int = 0,
) -> RiskChoice:
    """The cheapest operating point with ``P(risk <= eps) >= 1 - delta`` over the draw of ``records``."""
    if not 0.0 < eps < 1.0:
        raise CalibrationError(f"--risk must be in (0, 1), got {eps}")
    if not 0.0 < delta < 1.0:
        raise CalibrationError(f"--delta must be in (0, 1), got {delta}")
    if correction not in ("fixed_sequence", "bonferroni"):
        raise CalibrationError(f"unknown correction {correction!r}; choose fixed_sequence or bonferroni")
    k = check_records(records, signal)
    test_recs: Sequence[ExampleRecord] = records
    n_path = 0
    if k == 2:
        path: list[tuple[float, ...]] = [(t,) for t in GRID]
    else:
        perm = np.random.default_rng(seed).permutation(len(records))
        n_path = max(1, round(path_share * len(records)))
        if n_path >= len(records):
            raise CalibrationError("too few calibration examples to split into a path part and a test part")
        path = _solver_path([records[i] for i in perm[:n_path]], signal)
        test_recs = [records[i] for i in perm[n_path:]]
    table = loss_table(test_recs, signal, loss, path)
    rejected, pvals, method = ltt_reject(table.loss, eps, delta, correction=correction)
    best = cheapest(table, rejected)
    plain = plain_choice(table, eps)
    strong_cost = float(table.strong_cost.mean())

    def ratio(j: int) -> float:
        return float(table.cost[j].mean() / strong_cost) if strong_cost > 0 else float("nan")

    # the thresholds exactly as tested: a rounder value routing the calibration examples alike is another
    # hypothesis, which the certificate does not cover
    thresholds: tuple[float, ...] | None = path[best] if best is not None else None
    return RiskChoice(
        signal=signal,
        loss=loss,
        eps=eps,
        delta=delta,
        correction=correction,
        p_value_method=method,
        thresholds=thresholds,
        n=len(test_recs),
        n_path=n_path,
        candidates=len(path),
        calibration_loss=float(table.loss[best].mean()) if best is not None else float(table.strong_loss.mean()),
        p_value=float(pvals[best]) if best is not None else float("nan"),
        cost_ratio=ratio(best) if best is not None else 1.0,
        plain_thresholds=path[plain] if plain is not None else None,
        plain_loss=float(table.loss[plain].mean()) if plain is not None else None,
        plain_cost_ratio=ratio(plain) if plain is not None else None,
        strong_loss=float(table.strong_loss.mean()),
    )


@dataclass
class RiskReport:
    run: EvalRun
    choice: RiskChoice
    split_note: str
    tier_names: list[str]
    #: held-out: loss and cost ratio of the certified point (strong alone when none) and of the plain one
    test_loss: float
    test_cost_ratio: float
    test_plain_loss: float | None
    test_plain_cost_ratio: float | None
    test_strong_loss: float
    test_n: int
    calibration: list[ExampleRecord]

    def text(self) -> str:
        c = self.choice
        final = self.tier_names[-1]
        ds = self.run.report.get("dataset", self.run.path.name)

        def th(x: tuple[float, ...] | None) -> str:
            if x is None:
                return f"none: {final} alone"
            return ", ".join(f"{self.tier_names[i]} {t:g}" for i, t in enumerate(x))

        split = f"{c.n} test the candidates" + (f", {c.n_path} chose the k-tier path" if c.n_path else "")
        head = [
            f"{ds}: {self.run.path} ({len(self.tier_names)} tiers), signal {c.signal}",
            f"target: {c.loss} <= {c.eps:g} on new traffic with probability >= {1 - c.delta:g} "
            f"(Learn-then-Test, {c.correction.replace('_', '-')}, {c.p_value_method.replace('_', '-')} p-values, "
            f"{c.candidates} candidates)",
            f"splits: {self.split_note}; of the calibration examples {split}",
        ]
        if c.certified:
            head.append(f"certified thresholds: {th(c.thresholds)} (p = {c.p_value:.3g} <= {c.delta:g})")
        else:
            head.append(
                f"no operating point qualifies: no candidate's {c.loss} is certified <= {c.eps:g} at delta {c.delta:g}"
                f"; returning {final} alone ({c.loss} {c.strong_loss:.4f} on calibration)"
            )
        head.append(f"plain (uncertified) point: {th(c.plain_thresholds)}" if c.plain_thresholds else "plain: none")
        tail = []
        if c.certified and c.cost_ratio >= 1.0:
            tail.append(
                f"note: {final} alone costs less (1.000 x) than the certified cascade ({c.cost_ratio:.3f} x)"
                + (f" and its {c.loss} is 0 by definition: deploy it instead" if c.loss == "quality_drop" else "")
            )

        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.4f}"

        rows = [
            (f"chosen {c.loss}", f(c.calibration_loss), f(self.test_loss)),
            (f"chosen cost / {final} alone", f"{c.cost_ratio:.3f}", f"{self.test_cost_ratio:.3f}"),
            (f"plain {c.loss}", f(c.plain_loss), f(self.test_plain_loss)),
            (f"plain cost / {final} alone", f(c.plain_cost_ratio), f(self.test_plain_cost_ratio)),
            (f"{final} alone {c.loss}", f(c.strong_loss), f(self.test_strong_loss)),
        ]
        w = max(len(r[0]) for r in rows) + 2
        return "\n".join(
            [
                *head,
                "",
                f"{'':<{w}}{'calibration (n=' + str(c.n) + ')':<24}held-out test (n={self.test_n})",
                *(f"{a:<{w}}{b:<24}{e}" for a, b, e in rows),
                *tail,
            ]
        )


def calibrate_risk_run(
    results: str | os.PathLike[str] | EvalRun,
    *,
    eps: float,
    delta: float,
    loss: LossName = "quality_drop",
    signal: str | None = None,
    correction: Correction = "fixed_sequence",
    seed: int = 0,
    calibration_run: str | os.PathLike[str] | EvalRun | None = None,
) -> RiskReport:
    """Certify thresholds on the run's calibration split and replay them on its held-out split."""
    run, sig, cal, test, note = calibration_split(results, signal, seed=seed, calibration_run=calibration_run)
    choice = calibrate_risk(cal, sig, eps=eps, delta=delta, loss=loss, correction=correction, seed=seed)
    candidates = [choice.thresholds] if choice.thresholds is not None else []
    if choice.plain_thresholds is not None:
        candidates.append(choice.plain_thresholds)
    held = loss_table(test, sig, loss, candidates)
    strong_cost = float(held.strong_cost.mean())

    def ratio(j: int) -> float:
        return float(held.cost[j].mean() / strong_cost) if strong_cost > 0 else float("nan")

    if choice.thresholds is not None:
        test_loss, test_ratio = float(held.loss[0].mean()), ratio(0)
    else:
        test_loss, test_ratio = float(held.strong_loss.mean()), 1.0
    p = len(candidates) - 1 if choice.plain_thresholds is not None else None
    return RiskReport(
        run, choice, note, run.tier_names, test_loss, test_ratio,
        None if p is None else float(held.loss[p].mean()), None if p is None else ratio(p),
        float(held.strong_loss.mean()), len(test), list(cal),
    )  # fmt: skip


def _as_calibration_report(rep: RiskReport) -> CalibrationReport:
    """The certified point in the shape :func:`write_calibrated_config` writes (replayed figures)."""
    c = rep.choice
    assert c.thresholds is not None
    k = rep.run.n_tiers
    sm = summarize(cascade_outcomes(rep.calibration, c.signal, list(c.thresholds)), k)
    fin = summarize(tier_alone(rep.calibration, k - 1, mode="consensus", signal=c.signal), k)
    table = StageTable.from_records(rep.calibration, c.signal)
    choice = ThresholdChoice(
        signal=c.signal, thresholds=c.thresholds, quality=sm.quality, cost=sm.cost,
        cost_ratio=sm.cost / fin.cost if fin.cost else float("nan"), deferral=tuple(sm.deferral),
        final_quality=fin.quality, final_cost=fin.cost, method=f"learn-then-test ({c.correction})",
        shadow_price=None, n=c.n + c.n_path,
        unscored=tuple(i for i in range(k - 1) if not np.isfinite(table.score[i]).any()),
    )  # fmt: skip
    held = HeldOut(float("nan"), rep.test_cost_ratio, (), float("nan"), rep.test_n)
    target = f"{c.loss} <= {c.eps:g} with probability >= {1 - c.delta:g} (certified on the calibration split)"
    return CalibrationReport(rep.run, choice, held, target, rep.split_note, rep.tier_names)


def write_certified_config(
    rep: RiskReport,
    out: str | os.PathLike[str],
    *,
    config: str | os.PathLike[str] | None = None,
    command: str | None = None,
    date: str | None = None,
    task: str | None = None,
) -> Path:
    """Write the run's config with the certified thresholds and their ``certificate:``; when no point
    qualified, the config of the strong (final) tier alone, saying so in its header. ``task``: write them
    as ``tasks.TASK`` of ``out`` (see :func:`write_calibrated_config`)."""
    c = rep.choice
    source = str(rep.run.path / "examples.jsonl")
    if c.certified:
        cert = c.certificate(source=source, date=date).model_dump(mode="json")
        return write_calibrated_config(
            _as_calibration_report(rep), out, config=config, command=command, certificate=cert, task=task
        )
    if task is not None:
        raise CalibrationError(
            f"no operating point qualified for {c.loss} <= {c.eps:g}; task {task!r} was not written "
            "(serve it with its strong tier alone, or relax --risk / --delta)"
        )
    src = run_config_path(rep.run, config)
    raw: Any = yaml.safe_load(src.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not isinstance(raw.get("tiers"), list) or not raw["tiers"]:
        raise CalibrationError(f"{src}: not a cascade config with tiers; pass the run's config with --config")
    raw["tiers"] = [raw["tiers"][-1]]
    raw.pop("certificate", None)
    header = [
        f"No operating point of {source} qualified for {c.loss} <= {c.eps:g} with probability >= {1 - c.delta:g}",
        f"(Learn-then-Test, {c.candidates} candidates, n={c.n}): this is the strong tier of {src} alone.",
        *([f"Command: {command}"] if command else []),
    ]
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
