"""The black-box P(IK) predictor and the pre-generation router."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semcascade import Cascade, MockProvider
from semcascade.cli import main
from semcascade.evaluation.splits import split_of
from semcascade.providers import Completion, CompletionRequest
from semcascade.routing import (
    ConstantRouter,
    PIKModel,
    PIKRouter,
    RoutedCascade,
    RouterArtifactError,
    RouterError,
    choose_tier,
    create_router,
    load_examples,
    split_examples,
    train_pik,
)
from tests.helpers import ExactScorer, two_tier_config


class HashEmbedder:
    """Deterministic 8-d 'embeddings' from a hash of the text (no model needed)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for t in texts:
            d = hashlib.sha256(t.encode()).digest()
            v = np.frombuffer(d[:8], dtype=np.uint8).astype(np.float32) - 127.5
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32)


def write_run(folder: Path, n: int = 240) -> Path:
    """A fake eval run: tier 0 is right exactly on questions with a number; tier 1 on most."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "examples.jsonl").open("w") as f:
        for i in range(n):
            has_num = i % 3 == 0
            q = (
                f"How many moons did planet {i} have in {1900 + i}?"
                if has_num
                else f"Who painted picture number{'x' * (i % 7)} {chr(65 + i % 26)}?"
            )
            tiers = [
                {
                    "sample_quality": [float(has_num)] * 3,
                    "greedy_quality": float(has_num),
                    "consensus": {"embedding": 1},
                },
                {"sample_quality": [float(i % 5 != 0)], "greedy_quality": float(i % 5 != 0), "consensus": {}},
            ]
            f.write(json.dumps({"id": f"fake-{i}", "input": q, "tiers": tiers}) + "\n")
    (folder / "report.json").write_text(
        json.dumps({"systems": [{"system": "small alone (greedy)"}, {"system": "big alone (greedy)"}]})
    )
    return folder


def weights_of(model: PIKModel) -> list[tuple[float, ...]]:
    return [t.weights for t in model.tiers]


def test_training_is_reproducible_from_a_seed(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    a = train_pik(run, seed=7, embedder=HashEmbedder(), embedding_model="hash")
    b = train_pik(run, seed=7, embedder=HashEmbedder(), embedding_model="hash")
    assert weights_of(a) == weights_of(b) and [t.intercept for t in a.tiers] == [t.intercept for t in b.tiers]
    assert {k: v for k, v in a.to_json().items() if k != "created_at"} == {
        k: v for k, v in b.to_json().items() if k != "created_at"
    }
    c = train_pik(run, seed=8, embedder=HashEmbedder(), embedding_model="hash")
    assert weights_of(c) != weights_of(a)  # another seed, another train/validation split


def test_training_learns_a_learnable_rule_and_records_provenance(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    model = train_pik(run, seed=0, embedder=HashEmbedder(), embedding_model="hash")
    assert model.tier_names == ["small", "big"]
    small = model.tiers[0]
    assert small.metrics["test_auroc"] is not None and small.metrics["test_auroc"] > 0.95
    digest = hashlib.sha256((run / "examples.jsonl").read_bytes()).hexdigest()
    t = model.training
    assert t["sha256"] == digest and t["seed"] == 0 and t["n_examples"] == 240
    assert t["n_train"] + t["n_validation"] + t["n_test"] == 240
    assert model.embedding_model == "hash" and model.embedding_dimension == 8


def test_splits_hold_out_the_harness_test_ids(tmp_path: Path) -> None:
    examples, _ = load_examples(write_run(tmp_path / "run"))
    sp = split_examples(examples, seed=1)
    assert {e.id for e in sp["test"]} == {e.id for e in examples if split_of(e.id) == "test"}
    train, val = {e.id for e in sp["train"]}, {e.id for e in sp["validation"]}
    assert not train & val and train | val == {e.id for e in examples if split_of(e.id) != "test"}
    assert len(val) == round(len(train | val) * 0.25)
    assert {e.id for e in split_examples(examples, seed=1)["validation"]} == val


def test_labels_follow_the_consensus_or_greedy_answer(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    tier = {"sample_quality": [0.0, 1.0], "greedy_quality": 0.0, "consensus": {"embedding": 1, "lexical": 0}}
    (folder / "examples.jsonl").write_text(json.dumps({"id": "a", "input": "q", "tiers": [tier]}) + "\n")
    assert load_examples(folder)[0][0].correct == (True,)
    assert load_examples(folder, signal="lexical")[0][0].correct == (False,)
    assert load_examples(folder, label="greedy")[0][0].correct == (False,)


def test_artifact_round_trip(tmp_path: Path) -> None:
    model = train_pik(write_run(tmp_path / "run"), seed=0, embedder=HashEmbedder(), embedding_model="hash")
    path = model.save(tmp_path / "models" / "router.json")
    loaded = PIKModel.load(path)
    assert loaded == model
    router = PIKRouter.load(path, embedder=HashEmbedder())
    queries = ["How many moons in 1969?", "Who painted it?"]
    p = router.predict(queries)
    assert p.shape == (2, 2) and np.all((p >= 0) & (p <= 1))
    assert p[0, 0] > 0.5 > p[1, 0]  # the learned rule survives the round trip
    via_registry = create_router("pik", path=str(path), embedder=HashEmbedder())
    assert np.array_equal(via_registry.predict(queries), p)


def test_bad_artifacts_raise_typed_errors(tmp_path: Path) -> None:
    model = train_pik(write_run(tmp_path / "run"), seed=0, embedder=HashEmbedder(), embedding_model="hash")
    good = model.to_json()
    with pytest.raises(RouterArtifactError, match=r"not found.*train-router"):
        PIKModel.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RouterArtifactError, match="not readable JSON"):
        PIKModel.load(bad)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "format": "pickle"}, "not a semcascade router"),
        ({**good, "version": 99}, "version 99"),
        ({**good, "models": [{**good["models"][0], "weights": [1.0]}]}, "1 weights"),
        ({**good, "models": []}, "no tiers"),
        ({**good, "meta": {k: v for k, v in good["meta"].items() if k != "feature_spec"}}, "missing or malformed"),
        ({**good, "kind": "confidence"}, "not a router artifact"),
    ]
    for data, message in cases:
        bad.write_text(json.dumps(data))
        with pytest.raises(RouterArtifactError, match=message):
            PIKModel.load(bad)
    nan = json.loads(json.dumps(good))
    nan["models"][0]["weights"][0] = "NaN"
    bad.write_text(json.dumps(nan))
    with pytest.raises(RouterArtifactError, match="non-finite"):
        PIKModel.load(bad)
    with pytest.raises(RouterError, match="embedding model 'hash'"):
        PIKRouter(model)  # the default MiniLM would give other features


def test_unusable_eval_logs_raise_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(RouterError, match="no such results file"):
        load_examples(tmp_path / "nothing")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "examples.jsonl").write_text('{"id": "a", "input": "q", "tiers": []}\n')
    with pytest.raises(RouterError, match=r"examples\.jsonl:1: 'tiers' must be"):
        load_examples(folder)
    (folder / "examples.jsonl").write_text("garbage\n")
    with pytest.raises(RouterError, match="not JSON"):
        load_examples(folder)
    tier = {"samples": ["x"], "sample_quality": [1.0], "consensus": {}}
    (folder / "examples.jsonl").write_text(json.dumps({"id": "nq-test-0", "tiers": [tier]}) + "\n")
    with pytest.raises(RouterError, match=r"no report\.json naming their dataset"):
        load_examples(folder)
    (folder / "report.json").write_text(json.dumps({"dataset": "nq"}))
    (folder / "examples.jsonl").write_text(json.dumps({"id": "not-an-nq-id", "tiers": [tier]}) + "\n")
    with pytest.raises(RouterError, match="is not in the dataset"):
        load_examples(folder)


async def test_the_harness_records_ids_only_and_the_router_reads_queries_from_the_dataset(tmp_path: Path) -> None:
    from semcascade.evaluation.datasets import load_dataset
    from semcascade.evaluation.harness import run_eval

    def handle(req: CompletionRequest) -> Completion:
        return MockProvider.texts(req.model, ["an answer"] * req.n)

    cfg = {
        "tiers": [
            {"name": "cheap", "model": "openai/cheap", "k": 1, "input_cost_per_token": 1e-6},
            {"name": "strong", "model": "openai/strong", "k": 1, "input_cost_per_token": 1e-5},
        ],
        "scorer": {"name": "lexical"},
    }
    out = tmp_path / "run"
    await run_eval(
        cfg, dataset="nq", n=12, out_dir=out, signals=("lexical",), cache_path=tmp_path / "c.sqlite",
        provider=MockProvider(handle), progress=False,
    )  # fmt: skip
    raw = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert all(set(r) == {"id", "tiers"} for r in raw)  # no question, passage or reference text is copied
    examples, _ = load_examples(out)
    queries = {str(e.id): e.input for e in load_dataset("nq")}
    assert [e.input for e in examples] == [queries[r["id"]] for r in raw]


def test_choose_tier_by_threshold() -> None:
    assert choose_tier([0.7, 0.9], [0.5]) == 0
    assert choose_tier([0.4, 0.9], [0.5]) == 1
    assert choose_tier([0.5, 0.9], [0.5]) == 0  # >= threshold
    assert choose_tier([0.1, 0.6, 0.9], [0.5, 0.7]) == 2
    assert choose_tier([0.1, 0.8, 0.9], [0.5, 0.7]) == 1


def routed(p_cheap: float, *, threshold: float = 0.5, mode: Any = "route") -> tuple[RoutedCascade, MockProvider]:
    def handle(req: CompletionRequest) -> Completion:
        texts = ["a", "b", "c"] if req.model == "openai/cheap" else ["strong answer"]
        return MockProvider.texts(req.model, texts[: req.n])

    provider = MockProvider(handle)
    cascade = Cascade(two_tier_config(cheap={"k": 3}), provider=provider, scorer=ExactScorer())
    return RoutedCascade(cascade, ConstantRouter([p_cheap, 0.9]), threshold=threshold, mode=mode), provider


async def test_router_calls_only_the_chosen_tier() -> None:
    rc, provider = routed(0.8)
    r = await rc.generate("Who?")
    assert [c.model for c in provider.calls] == ["openai/cheap"]  # disagreeing samples, yet no escalation
    assert r.tier == "cheap" and r.tier_index == 0 and r.route.tier_index == 0
    assert r.route.probabilities == [0.8, 0.9] and "0.800 >= 0.5" in r.route.reason

    rc, provider = routed(0.3)
    r = await rc.generate("Who?")
    assert [c.model for c in provider.calls] == ["openai/strong"]  # the cheap tier is never paid
    assert r.tier == "strong" and r.tier_index == 1 and r.text == "strong answer"
    assert r.cost == pytest.approx(r.trace[0].cost) and len(r.trace) == 1

    rc, provider = routed(0.8, threshold=0.85)
    assert (await rc.generate("Who?")).tier == "strong"


async def test_skip_mode_starts_the_cascade_at_the_chosen_tier() -> None:
    rc, provider = routed(0.8, mode="skip")
    r = await rc.generate("Who?")
    assert [c.model for c in provider.calls] == ["openai/cheap", "openai/strong"]  # samples disagree: escalate
    assert r.tier_index == 1 and r.tiers_tried == ["cheap", "strong"]
    rc, provider = routed(0.2, mode="skip")
    r = await rc.generate("Who?")
    assert [c.model for c in provider.calls] == ["openai/strong"] and r.tier_index == 1


def test_sync_skip_mode_finishes_background_learning_and_closes_loop_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import semcascade.cascade as cascade_mod
    from semcascade import MemoryConfig
    from semcascade.memory import InMemoryStrategyStore, StrategyMemory

    closed: list[int] = []

    async def fake_close(*_: object) -> None:
        closed.append(1)

    monkeypatch.setattr(cascade_mod, "close_loop_clients", fake_close)  # the cascade's one client-closing hook
    rc, provider = routed(0.8, mode="skip")
    memory = StrategyMemory(MemoryConfig(enabled=True, learn_in_background=True), store=InMemoryStrategyStore())
    rc.cascade.memory = memory
    r = rc.generate_sync("Who wrote the novel Pride and Prejudice?")
    assert r.tier == "strong" and r.memory is not None and "in the background" in r.memory.note
    # the strategy call ran before generate_sync's own event loop ended (the mock's answer is the strategy)
    assert memory.pending == 0 and memory.spend.calls == 1 and closed == [1]
    assert sum(c.model == "openai/strong" for c in provider.calls) == 2


async def test_router_must_match_the_cascade() -> None:
    rc, _ = routed(0.8)
    rc.router = ConstantRouter([0.5, 0.5, 0.5])
    with pytest.raises(RouterError, match="predicts 3 tiers, the cascade has 2"):
        await rc.generate("Who?")
    with pytest.raises(RouterError, match="threshold"):
        RoutedCascade(rc.cascade, ConstantRouter([0.5, 0.5]), threshold=[0.1, 0.2])
    with pytest.raises(RouterError, match="probabilities"):
        ConstantRouter([1.5])
    with pytest.raises(RouterError, match="unknown router 'x'"):
        create_router("x")


def test_cli_train_router(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", n=120)
    out = tmp_path / "r.json"
    assert main(["train-router", str(run), "--out", str(out), "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "small: AUROC validation" in text and "big: AUROC validation" in text and f"wrote {out}" in text
    loaded = PIKModel.load(out)
    assert loaded.training["seed"] == 3 and loaded.embedding_dimension == 384  # the real MiniLM
    assert main(["train-router", str(tmp_path / "none"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("semcascade: error:") and "no such results file" in err[0]
