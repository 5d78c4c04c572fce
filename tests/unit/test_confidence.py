"""Deferral confidence: features, the logistic model, its artifact, and its use by the cascade."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semcascade import Cascade, ConfigError, MockProvider
from semcascade.confidence import (
    ARTIFACT_FORMAT,
    LogisticConfidence,
    TierEvidence,
    feature_vector,
    fit_logistic,
    load_confidence_model,
)
from semcascade.errors import ConfidenceError
from semcascade.providers import Choice, Completion, CompletionRequest, TokenLogprob
from tests.helpers import ExactScorer


def evidence(**over: Any) -> TierEvidence:
    kw: dict[str, Any] = {
        "answers": ["Atlanta, Georgia", "Atlanta", "Texas"],
        "representative": 0,
        "agreement": 0.5,
        "largest_cluster": 2,
        "mean_logprobs": [-0.1, -0.5, -2.0],
        "min_logprobs": [-0.3, -1.5, -4.0],
        "first_logprobs": [-0.05, -0.2, -3.0],
        "tokens": [4, 2, 2],
        "question": "Where is the band Attila from?",
        "prompt": "Context: Attila is a metalcore band from Atlanta, Georgia.\nQuestion: Where is the band Attila from?",
    }
    kw.update(over)
    return TierEvidence(**kw)


def test_features_read_the_representative_answer() -> None:
    ev = evidence()
    names = ["agreement", "cluster_share", "lp_mean", "lp_min", "lp_first", "grounding", "yes_no", "answer_tokens"]
    got = dict(zip(names, feature_vector(ev, names), strict=True))
    assert got == pytest.approx(
        {"agreement": 0.5, "cluster_share": 2 / 3, "lp_mean": -0.1, "lp_min": -0.3, "lp_first": -0.05,
         "grounding": 1.0, "yes_no": 0.0, "answer_tokens": math.log1p(4)}
    )  # fmt: skip
    # an answer that is not in the context is not grounded; question words do not count as grounding
    assert feature_vector(evidence(representative=2), ["grounding"]) == [0.0]
    assert feature_vector(evidence(answers=["Yes, it is.", "No", "no"]), ["yes_no"]) == [1.0]


def test_logprob_features_refuse_missing_logprobs_instead_of_reading_zero() -> None:
    ev = evidence(mean_logprobs=[None] * 3, min_logprobs=[None] * 3, first_logprobs=[None] * 3, tier="cheap")
    with pytest.raises(ConfidenceError, match="logprobs: true"):
        feature_vector(ev, ["lp_mean"])
    with pytest.raises(ConfidenceError, match="k >= 2"):
        feature_vector(evidence(agreement=None), ["agreement"])
    with pytest.raises(ConfidenceError, match="unknown confidence feature"):
        feature_vector(ev, ["vibes"])


def test_fit_matches_scikit_learn_and_separates_the_classes() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] - 0.5 * x[:, 1] + rng.normal(scale=0.5, size=400)) > 0
    model = fit_logistic(x, y, ["agreement", "lp_mean"], name="t", version="1", l2=1.0)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    ref = LogisticRegression(C=1.0).fit(z, y)
    assert model.weights == pytest.approx(ref.coef_[0].tolist(), abs=1e-4)
    assert model.bias == pytest.approx(float(ref.intercept_[0]), abs=1e-4)
    p = [model.score(row) for row in x]
    assert np.mean([(pi > 0.5) == yi for pi, yi in zip(p, y, strict=True)]) > 0.8


def test_fit_refuses_degenerate_data() -> None:
    with pytest.raises(ConfidenceError, match="both outcomes"):
        fit_logistic([[0.0]] * 20, [True] * 20, ["agreement"], name="t", version="1")


def test_artifact_round_trip_and_clear_errors(tmp_path: Path) -> None:
    m = LogisticConfidence("m", "2026.11", ("agreement", "lp_min"), (0.5, -1.0), (0.2, 1.0), (1.5, 0.7), -0.2,
                           {"dataset": "halueval_qa", "split": "calibration"})  # fmt: skip
    path = m.save(tmp_path / "m.json")
    back = load_confidence_model(str(path))
    assert back == m and back.digest == m.digest
    assert json.loads(path.read_text())["format"] == ARTIFACT_FORMAT
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ConfidenceError, match="not a semcascade confidence artifact"):
        load_confidence_model(str(tmp_path / "bad.json"))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfidenceError, match="not valid JSON"):
        load_confidence_model(str(tmp_path / "broken.json"))
    with pytest.raises(ConfidenceError, match="not found"):
        load_confidence_model(str(tmp_path / "missing.json"))
    with pytest.raises(ConfidenceError, match="no built-in confidence model"):
        load_confidence_model("builtin:nope")
    with pytest.raises(ConfidenceError, match="differ in length"):
        LogisticConfidence("m", "1", ("agreement",), (0.0, 1.0), (1.0,), (1.0,), 0.0)


def _lp(text: str, lp: float) -> tuple[TokenLogprob, ...]:
    return tuple(TokenLogprob(t, lp) for t in text.split())


def test_cascade_decides_on_confidence_when_the_tier_has_a_model(tmp_path: Path) -> None:
    # P(right) rises with the answer's lowest token logprob only
    art = LogisticConfidence("lp", "1", ("lp_min",), (-1.0,), (1.0,), (4.0,), 0.0).save(tmp_path / "lp.json")
    sure = {"cheap": -0.01, "strong": -0.01}

    def answer(req: CompletionRequest) -> Completion:
        tier = "cheap" if req.model.endswith("cheap") else "strong"
        text = "Paris" if tier == "cheap" else "Lyon"
        choices = tuple(Choice(text, 1, "stop", _lp(text, sure[tier])) for _ in range(req.n))
        return Completion(model=req.model, choices=choices, prompt_tokens=10)

    cfg: dict[str, Any] = {
        "tiers": [
            {"name": "cheap", "model": "openai/cheap", "k": 3, "threshold": 0.6, "logprobs": True,
             "confidence_model": str(art), "input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6},
            {"name": "strong", "model": "openai/strong", "k": 1, "temperature": 0.0,
             "input_cost_per_token": 1e-5, "output_cost_per_token": 1e-5},
        ]
    }  # fmt: skip
    cascade = Cascade(cfg, provider=MockProvider(answer), scorer=ExactScorer())
    res = cascade.generate_sync("Capital of France?")
    assert res.tier == "cheap" and res.text == "Paris"
    assert res.trace[0].agreement == 1.0 and res.trace[0].confidence == pytest.approx(1 / (1 + math.exp(-4 * 0.99)))
    assert "confidence" in res.trace[0].reason
    sure["cheap"] = -3.0  # the samples still agree, but the model is unsure: escalate
    res = cascade.generate_sync("Capital of France?")
    assert res.tier == "strong" and res.text == "Lyon"
    assert res.trace[0].agreement == 1.0 and res.trace[0].decision == "escalate"

    with pytest.raises(ConfigError, match="logprobs: true"):
        Cascade({**cfg, "tiers": [{**cfg["tiers"][0], "logprobs": False}, cfg["tiers"][1]]})
    with pytest.raises(ConfigError, match="confidence_model"):
        Cascade({**cfg, "tiers": [{**cfg["tiers"][0], "confidence_model": "builtin:nope"}, cfg["tiers"][1]]})


def test_an_empty_answer_reads_as_improbable_not_as_a_provider_without_logprobs() -> None:
    from semcascade.confidence import EMPTY_ANSWER_LOGPROB

    ev = evidence(answers=[""], representative=0, agreement=None, largest_cluster=1, mean_logprobs=[None],
                  min_logprobs=[None], first_logprobs=[None], tokens=[0])  # fmt: skip
    assert feature_vector(ev, ["lp_mean", "lp_min", "lp_first"]) == [EMPTY_ANSWER_LOGPROB] * 3
    # a non-empty answer without logprobs is still refused
    with pytest.raises(ConfidenceError):
        feature_vector(evidence(answers=["Paris"], representative=0, agreement=None, largest_cluster=1,
                                mean_logprobs=[None], min_logprobs=[None], first_logprobs=[None], tokens=[1]),
                       ["lp_mean"])  # fmt: skip
