"""Decision-theoretic threshold choice and the pairwise envelope of a model pool.

Example::

    from semcascade.calibration import calibrate_run, pairwise_envelope, model_pool
    rep = calibrate_run("eval/results/nq", budget=0.5)   # thresholds on the calibration split
    print(rep.text())                                    # expected vs held-out quality and cost
"""

from semcascade.calibration.envelope import (
    Envelope,
    EnvelopePoint,
    ModelPool,
    Switch,
    model_pool,
    pairwise_envelope,
    plot_envelope,
)
from semcascade.calibration.run import CalibrationReport, HeldOut, calibrate_run, split_records, write_calibrated_config
from semcascade.calibration.solver import (
    StageTable,
    ThresholdChoice,
    calibrate_thresholds,
    candidate_thresholds,
    pair_curve,
    shadow_price_thresholds,
)

__all__ = [
    "CalibrationReport",
    "Envelope",
    "EnvelopePoint",
    "HeldOut",
    "ModelPool",
    "StageTable",
    "Switch",
    "ThresholdChoice",
    "calibrate_run",
    "calibrate_thresholds",
    "candidate_thresholds",
    "model_pool",
    "pair_curve",
    "pairwise_envelope",
    "plot_envelope",
    "shadow_price_thresholds",
    "split_records",
    "write_calibrated_config",
]
