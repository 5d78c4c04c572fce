"""One logistic model and one artifact format for the confidence models and the router (issue 11).

* both are fitted by :func:`semcascade.logistic.fit` (the router no longer needs scikit-learn);
* both are saved atomically (temporary file, fsync, ``os.replace``) in the same versioned format;
* artifacts of the formats this one replaced (``semcascade.confidence/1``, ``semcascade.router`` v1) still load.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semcascade import logistic
from semcascade.confidence import LogisticConfidence, load_confidence_model
from semcascade.errors import ConfidenceError, RouterArtifactError, SemcascadeError
from semcascade.routing import PIKModel, train_pik
from semcascade.routing.pik import TierModel, feature_names

ARTIFACTS = Path(logistic.__file__).resolve().parent / "artifacts"


class HashEmbedder:
    """Deterministic 8-d 'embeddings' from a hash of the text (no model needed)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for t in texts:
            v = np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], dtype=np.uint8).astype(np.float32) - 127.5
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32)


def write_run(folder: Path, n: int = 120) -> Path:
    """A fake eval run: tier 0 is right on questions with a number, tier 1 on most."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "examples.jsonl").open("w") as f:
        for i in range(n):
            has_num = i % 3 == 0
            q = (
                f"How many moons in {1900 + i}?"
                if has_num
                else f"Who painted picture {chr(65 + i % 26)}{'x' * (i % 5)}?"
            )
            tiers = [
                {"sample_quality": [float(has_num)], "greedy_quality": float(has_num), "consensus": {}},
                {"sample_quality": [float(i % 5 != 0)], "greedy_quality": float(i % 5 != 0), "consensus": {}},
            ]
            f.write(json.dumps({"id": f"fake-{i}", "input": q, "tiers": tiers}) + "\n")
    return folder


def confidence_model() -> LogisticConfidence:
    return LogisticConfidence("m", "2026.11", ("agreement", "lp_min"), (0.5, -1.0), (0.2, 1.0), (1.5, 0.7), -0.2,
                              {"dataset": "halueval_qa"})  # fmt: skip


def router() -> PIKModel:
    return train_pik(write_run(Path(os.environ["SEMCASCADE_TEST_TMP"]) / "run"), embedder=HashEmbedder(),
                     embedding_model="hash")  # fmt: skip


@pytest.fixture(autouse=True)
def _tmp_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMCASCADE_TEST_TMP", str(tmp_path))


# --------------------------------------------------------------------------- the model and its fit


def test_fit_matches_scikit_learn_with_balanced_class_weights() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 3)) * [1.0, 5.0, 0.1] + [0.0, 2.0, -1.0]
    y = (x[:, 0] + 0.2 * x[:, 1] + rng.normal(scale=0.7, size=300)) > 1.2  # imbalanced
    for C in (0.1, 1.0):
        m = logistic.fit(x, y, ["a", "b", "c"], l2=1.0 / C, balanced=True)
        z = (x - x.mean(axis=0)) / x.std(axis=0)
        ref = LogisticRegression(C=C, class_weight="balanced", tol=1e-10, max_iter=10_000).fit(z, y)
        assert m.weights == pytest.approx(ref.coef_[0].tolist(), abs=1e-5)
        assert m.bias == pytest.approx(float(ref.intercept_[0]), abs=1e-5)
        assert m.predict(x) == pytest.approx(ref.predict_proba(z)[:, 1], abs=1e-5)


def test_fit_converges_on_separable_data() -> None:
    x = np.linspace(-1, 1, 40)[:, None]
    m = logistic.fit(x, x[:, 0] > 0, ["x"], l2=1e-3)  # separable: only the penalty bounds the weights
    assert m.score([0.9]) > 0.99 and m.score([-0.9]) < 0.01 and np.isfinite(m.weights[0])


def test_the_model_refuses_inconsistent_or_non_finite_weights() -> None:
    with pytest.raises(ValueError, match="1 weights"):
        logistic.LogisticModel(("a", "b"), (0.0, 0.0), (1.0, 1.0), (1.0,), 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        logistic.LogisticModel(("a",), (0.0,), (1.0,), (float("nan"),), 0.0)
    with pytest.raises(ValueError, match="scale"):
        logistic.LogisticModel(("a",), (0.0,), (0.0,), (1.0,), 0.0)
    with pytest.raises(ValueError, match="both outcomes"):
        logistic.fit([[0.0], [1.0]], [True, True], ["a"])


def test_confidence_and_router_use_the_same_model() -> None:
    c = confidence_model()
    assert isinstance(c.model, logistic.LogisticModel)
    assert c.score([0.7, -0.5]) == pytest.approx(c.model.score([0.7, -0.5]))
    r = router()
    assert all(isinstance(t.model, logistic.LogisticModel) for t in r.tiers)
    assert r.tiers[0].model.features == feature_names(8)


def test_training_the_router_needs_no_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` now raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.linear_model", None)
    r = router()
    assert r.tiers[0].metrics["train_auroc"] is not None and r.tiers[0].metrics["train_auroc"] > 0.9


# --------------------------------------------------------------------------- one artifact format


def test_both_artifacts_share_one_versioned_format(tmp_path: Path) -> None:
    c = json.loads(confidence_model().save(tmp_path / "c.json").read_text())
    r = json.loads(router().save(tmp_path / "r.json").read_text())
    for data, kind in ((c, "confidence"), (r, "router")):
        assert (data["format"], data["version"], data["kind"]) == ("semcascade.logistic", 2, kind)
        assert set(data["models"][0]) == {"name", "features", "mean", "scale", "weights", "bias", "meta"}
    with pytest.raises(RouterArtifactError, match="not a router artifact"):
        PIKModel.load(tmp_path / "c.json")
    with pytest.raises(ConfidenceError, match="not a confidence artifact"):
        load_confidence_model(str(tmp_path / "r.json"))


def test_round_trips(tmp_path: Path) -> None:
    c = confidence_model()
    back = load_confidence_model(str(c.save(tmp_path / "c.json")))
    assert back == c and back.digest == c.digest
    r = router()
    loaded = PIKModel.load(r.save(tmp_path / "r.json"))
    assert loaded == r
    x = np.random.default_rng(0).normal(size=(5, 8 + len(r.cheap_features)))
    assert np.array_equal(loaded.predict_features(x), r.predict_features(x))


# --------------------------------------------------------------------------- atomic saves


SAVES: dict[str, Callable[[Path], Any]] = {
    "confidence": lambda p: confidence_model().save(p),
    "router": lambda p: router().save(p),
}


@pytest.mark.parametrize("kind", sorted(SAVES))
def test_a_failed_save_leaves_the_old_file_and_no_temporary(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "models" / "m.json"
    out.parent.mkdir()
    out.write_text('{"the": "old artifact"}\n')

    def crash(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(SemcascadeError, match="disk full"):
        SAVES[kind](out)
    assert out.read_text() == '{"the": "old artifact"}\n'  # never half-written, never replaced
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.json"]  # no temporary left behind


@pytest.mark.parametrize("kind", sorted(SAVES))
def test_a_save_replaces_the_file_in_one_step_after_syncing(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "models" / "m.json"
    out.parent.mkdir()
    out.write_text("old")
    seen: list[tuple[str, str, bool]] = []
    synced: list[int] = []
    real_replace, real_fsync = os.replace, os.fsync

    def spy_replace(src: Any, dst: Any) -> None:
        # at the moment of the swap the target still holds the old text and the new text is complete
        seen.append((Path(dst).read_text(), Path(src).name, json.loads(Path(src).read_text())["kind"] == kind))
        real_replace(src, dst)

    def spy_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", spy_replace)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    SAVES[kind](out)
    ((before, tmp_name, complete),) = seen
    assert before == "old" and tmp_name.startswith(".m.json.") and complete and synced
    assert json.loads(out.read_text())["kind"] == kind and sorted(p.name for p in out.parent.iterdir()) == ["m.json"]


def test_a_value_json_cannot_hold_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        logistic.atomic_write_json(tmp_path / "x.json", {"x": float("nan")})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- old artifacts


def test_the_shipped_v1_confidence_artifact_loads_and_scores_as_before() -> None:
    raw = json.loads((ARTIFACTS / "qwen05-rc-v1.json").read_text())
    assert raw["format"] == "semcascade.confidence/1"  # shipped in the old format on purpose: it must keep loading
    model = load_confidence_model("builtin:qwen05-rc-v1")
    assert (model.name, model.version, model.features) == (raw["name"], raw["version"], tuple(raw["features"]))
    assert model.provenance == raw["provenance"]
    x = [-0.3, -0.9, -0.4, 0.8, 0.0, 1.5]
    z = raw["bias"] + sum(
        w * (v - m) / s for w, v, m, s in zip(raw["weights"], x, raw["mean"], raw["scale"], strict=True)
    )
    assert model.score(x) == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-12)


def _as_router_v1(model: PIKModel) -> dict[str, Any]:
    """``model`` in the router's own layout before the shared format (what `semcascade train-router` wrote)."""
    return {
        "format": "semcascade.router",
        "version": 1,
        "kind": "pik-logistic",
        "created_at": model.created_at,
        "embedding_model": model.embedding_model,
        "embedding_dimension": model.embedding_dimension,
        "feature_spec": {
            "max_chars": model.max_chars,
            "embedding": True,
            "cheap_features": list(model.cheap_features),
            "order": "embedding then cheap_features",
        },
        "label": model.label,
        "training": model.training,
        "tiers": [
            {
                "index": t.index,
                "name": t.name,
                "C": t.C,
                "constant": t.constant,
                "intercept": t.intercept,
                "weights": list(t.weights),
                "mean": list(t.mean),
                "scale": list(t.scale),
                "metrics": dict(t.metrics),
            }
            for t in model.tiers
        ],
    }


def test_a_v1_router_artifact_loads_and_predicts_the_same(tmp_path: Path) -> None:
    r = router()
    old = tmp_path / "router-v1.json"
    old.write_text(json.dumps(_as_router_v1(r)))
    migrated = PIKModel.load(old)
    assert migrated == r
    assert all(isinstance(t, TierModel) for t in migrated.tiers)
    bad = _as_router_v1(r)
    bad["version"] = 7
    old.write_text(json.dumps(bad))
    with pytest.raises(RouterArtifactError, match="version 7"):
        PIKModel.load(old)
