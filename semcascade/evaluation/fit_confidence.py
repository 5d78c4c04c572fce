"""Fit a tier's deferral confidence model from an evaluation run (``semcascade fit-confidence``).

The run should be on the **calibration** split (``semcascade eval --split
calibration``); the fitted artifact records where it came from, and the test
split then reports how well it does on examples it never saw.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from semcascade.confidence import FEATURES, LogisticConfidence, feature_vector, fit_logistic
from semcascade.errors import ConfidenceError
from semcascade.evaluation.collect import record_evidence
from semcascade.evaluation.datasets import load_dataset
from semcascade.evaluation.metrics import auroc
from semcascade.evaluation.prompts import get_template, scoring_inputs
from semcascade.evaluation.records import load_records
from semcascade.evaluation.splits import SPLITS, split_of

__all__ = ["DEFAULT_FEATURES", "FeatureRows", "FitReport", "feature_rows", "fit_confidence"]

#: the features fitted unless told otherwise
DEFAULT_FEATURES = (
    "agreement",
    "cluster_share",
    "lp_mean",
    "lp_min",
    "lp_first",
    "grounding",
    "yes_no",
    "answer_tokens",
)


@dataclass(frozen=True)
class FitReport:
    model: LogisticConfidence
    n: int
    positive_rate: float
    #: AUROC on the fitting data, and 5-fold cross-validated on it
    auroc_fit: float | None
    auroc_cv: float | None
    #: AUROC of each feature alone
    feature_auroc: dict[str, float | None]


def _cv_auroc(x: np.ndarray, y: np.ndarray, features: Sequence[str], l2: float, seed: int) -> float | None:
    idx = np.random.default_rng(seed).permutation(len(y))
    folds = np.array_split(idx, 5)
    pred = np.zeros(len(y))
    for f in folds:
        train = np.setdiff1d(idx, f)
        if y[train].min() == y[train].max():
            return None
        m = fit_logistic(x[train], y[train], features, name="cv", version="cv", l2=l2)
        pred[f] = [m.score(row) for row in x[f]]
    return auroc(pred.tolist(), y.astype(bool).tolist())


@dataclass(frozen=True)
class FeatureRows:
    """One row of confidence features per example of a run, with whether the tier's answer was right."""

    ids: list[str]
    x: np.ndarray
    y: np.ndarray
    report: dict[str, Any]


def feature_rows(
    results: str | os.PathLike[str],
    *,
    tier: int = 0,
    features: Sequence[str] = DEFAULT_FEATURES,
    split: str = "all",
) -> FeatureRows:
    """The features of tier ``tier`` on every example of the run in ``results`` (only the ``split`` ids when
    ``split`` is ``calibration`` or ``test``; see :mod:`semcascade.evaluation.splits`)."""
    out = Path(results)
    report_path = out / "report.json"
    if not report_path.is_file():
        raise ConfidenceError(f"{out}: no report.json; pass a directory written by `semcascade eval --out DIR`")
    report: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8"))
    unknown = [f for f in features if f not in FEATURES]
    if unknown or not features:
        raise ConfidenceError(f"unknown confidence feature(s) {unknown}; choose from {sorted(FEATURES)}")
    if split not in SPLITS:
        raise ConfidenceError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    records = load_records(out)
    if not records or tier >= len(records[0].tiers) or tier < 0:
        raise ConfidenceError(f"{out}: the run has no tier {tier}")
    if split != "all":
        records = [r for r in records if split_of(r.id) == split]
        if not records:
            raise ConfidenceError(f"{out}: the run holds no {split}-split examples")
    task, dataset = str(report["task"]), str(report["dataset"])
    agreement = str(report.get("agreement_signal") or report["shipped_signal"])
    template = get_template(task)
    by_id = {str(e.id): e for e in load_dataset(dataset, None, int(report.get("seed", 0)))}
    xs, ys = [], []
    for rec in records:
        ex = by_id[rec.id]
        t = rec.tiers[tier]
        _, question, prompt = scoring_inputs(template, ex)
        ev = record_evidence(t, agreement, question, prompt, tier=str(tier))
        if "agreement" in features and ev.agreement is None:
            raise ConfidenceError(f"{out}: tier {tier} has no {agreement!r} agreement scores (k=1?)")
        xs.append(feature_vector(ev, features))
        ys.append(t.sample_quality[ev.representative] >= 0.5)
    return FeatureRows([r.id for r in records], np.asarray(xs, dtype=float), np.asarray(ys, dtype=bool), report)


def fit_confidence(
    results: str | os.PathLike[str],
    *,
    tier: int = 0,
    features: Sequence[str] = DEFAULT_FEATURES,
    name: str | None = None,
    version: str | None = None,
    l2: float = 1.0,
    seed: int = 0,
    split: str = "all",
) -> FitReport:
    """Fit P(tier ``tier``'s answer is right) on the run in ``results`` (a directory from the harness);
    ``split="calibration"`` fits on the calibration ids of a run that holds both splits."""
    rows = feature_rows(results, tier=tier, features=features, split=split)
    report, x, y = rows.report, rows.x, rows.y
    dataset = str(report["dataset"])
    agreement = str(report.get("agreement_signal") or report["shipped_signal"])
    provenance = {
        "dataset": dataset,
        "split": report.get("split", "all") if split == "all" else split,
        "n": len(y),
        "positive_rate": float(y.mean()),
        "tier": tier,
        "config": report.get("config"),
        "agreement_signal": agreement,
        "l2": l2,
        "fitted": date.today().isoformat(),
    }
    model = fit_logistic(
        x, y, features, name=name or f"{dataset}-tier{tier}", version=version or date.today().strftime("%Y.%m.%d"),
        l2=l2, provenance=provenance,
    )  # fmt: skip
    fit_auc = auroc([model.score(row) for row in x], y.tolist())
    cv_auc = _cv_auroc(x, y, features, l2, seed)
    model = dataclasses.replace(model, provenance={**provenance, "auroc_fit": fit_auc, "auroc_cv": cv_auc})
    per_feature = {f: auroc(x[:, i].tolist(), y.tolist()) for i, f in enumerate(features)}
    return FitReport(model, len(y), float(y.mean()), fit_auc, cv_auc, per_feature)
