"""The pairwise envelope and its switching points on a hand-built pool with a known answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from semcascade.calibration import ModelPool, model_pool, pairwise_envelope, plot_envelope
from semcascade.errors import CalibrationError
from semcascade.evaluation.records import load_run
from semcascade.evaluation.replay import TierRecord

# model -> per example (agreement score, right?); A costs 1, B 4, C 10 per example.
# e1 is easy for everyone, e2 only A gets wrong, e3 only C gets right, e4 nobody.
A = [(0.9, 1.0), (0.1, 0.0), (0.2, 0.0), (0.3, 0.0)]
B = [(0.9, 1.0), (0.9, 1.0), (0.1, 0.0), (0.2, 0.0)]
C = [(None, 1.0), (None, 1.0), (None, 1.0), (None, 0.0)]
COST = {"A": 1.0, "B": 4.0, "C": 10.0}


def out(score: float | None, right: float, cost: float) -> TierRecord:
    k = 1 if score is None else 3
    t = TierRecord(
        samples=["x"] * k, mean_logprobs=[None] * k, cost=cost, latency_s=1.0, prompt_tokens=1, completion_tokens=1
    )
    t.scores["s"] = score
    t.consensus["s"] = 0
    t.sample_quality = [right] * k
    return t


def pool(order: tuple[str, ...] = ("C", "A", "B")) -> ModelPool:
    spec = {"A": A, "B": B, "C": C}
    return ModelPool(
        list(order), [f"e{i}" for i in range(4)], [[out(s, q, COST[m]) for s, q in spec[m]] for m in order]
    )


def test_switching_points_of_a_hand_built_pool() -> None:
    # By hand (costs are totals over the 4 examples):
    #   A alone (4, .25); B alone (16, .5); C alone (40, .75)
    #   A->B escalating e2 (score .1): (8, .5)      -- beats B alone at half its cost
    #   A->C escalating e2, e3:        (24, .75)    -- beats B->C (26, .75) and C alone (40, .75)
    env = pairwise_envelope(pool(), "s")
    assert [env.names[m] for m in env.order] == ["A", "B", "C"]  # sorted by cost, whatever the input order
    assert set(env.curves) == {(1, 2), (1, 0), (2, 0)}  # (cheap, dear) by index into names C, A, B
    assert [(env.label(p), p.cost, p.quality) for p in env.frontier] == [
        ("A alone", 4.0, 0.25),
        ("A -> B", 8.0, 0.5),
        ("A -> C", 24.0, 0.75),
    ]
    assert [(s.cost, s.before, s.after) for s in env.switches] == [
        (8.0, "A alone", "A -> B"),
        (24.0, "A -> B", "A -> C"),
    ]
    a_c = env.frontier[-1]
    assert a_c.threshold == pytest.approx(0.25) and a_c.deferral == 0.5
    # best policy at a cost level, and nothing below the cheapest model
    assert env.best_at(3.0) is None
    assert env.label(env.best_at(20.0)) == "A -> B"  # type: ignore[arg-type]
    assert env.unit_cost == 40.0
    assert "A: cost 0.100, quality 0.2500" in env.text() and "0.200: A alone => A -> B" in env.text()


def test_a_cheap_model_that_dominates_removes_every_switch() -> None:
    # if the cheapest model is always right, nothing on the envelope beats it: no switching points
    perfect = [(0.9, 1.0)] * 4
    p = ModelPool(
        ["A", "B"], [f"e{i}" for i in range(4)], [[out(s, q, 1.0) for s, q in perfect], [out(s, q, 4.0) for s, q in B]]
    )
    env = pairwise_envelope(p, "s")
    assert env.switches == [] and [env.label(x) for x in env.frontier] == ["A alone"]


def test_a_leader_without_scores_cannot_lead(tmp_path: Path) -> None:
    p = ModelPool(["C", "D"], ["e0"], [[out(None, 1.0, 10.0)], [out(None, 1.0, 20.0)]])
    env = pairwise_envelope(p, "s")
    assert env.curves == {} and any("cannot lead a cascade" in n for n in env.notes)
    with pytest.raises(CalibrationError, match="at least two models"):
        pairwise_envelope(ModelPool(["A"], ["e0"], [[out(0.5, 1.0, 1.0)]]), "s")


def write_run(
    folder: Path, names: list[str], models: list[list[tuple[float | None, float]]], costs: list[float]
) -> Path:
    """A results folder in the harness's format (examples.jsonl + report.json)."""
    folder.mkdir(parents=True)
    with (folder / "examples.jsonl").open("w") as f:
        for e in range(len(models[0])):
            tiers = []
            for m, c in zip(models, costs, strict=True):
                s, q = m[e]
                k = 1 if s is None else 3
                tiers.append({"samples": ["x"] * k, "sample_quality": [q] * k, "greedy": "x", "greedy_quality": q,
                              "scores": {"s": s}, "consensus": {"s": 0}, "cost": c, "latency_s": 1.0,
                              "scoring_s": {"s": 0.0}, "scoring_cost": {}, "prompt_tokens": 1, "completion_tokens": 1})  # fmt: skip
            f.write(json.dumps({"id": f"e{e}", "input": "q", "references": ["x"], "tiers": tiers}) + "\n")
    systems = [{"system": f"{n} alone (greedy)"} for n in names]
    (folder / "report.json").write_text(json.dumps({"dataset": "toy", "shipped_signal": "s", "systems": systems}))
    return folder


def test_pool_from_several_runs_matches_one_run(tmp_path: Path) -> None:
    one = write_run(tmp_path / "abc", ["A", "B", "C"], [A, B, C], [1.0, 4.0, 10.0])
    ab = write_run(tmp_path / "ab", ["A", "B"], [A, B], [1.0, 4.0])
    bc = write_run(tmp_path / "bc", ["B", "C"], [B, C], [4.0, 10.0])
    env1 = pairwise_envelope(model_pool([load_run(one)]), "s")
    env2 = pairwise_envelope(model_pool([load_run(ab), load_run(bc)]), "s")
    assert env2.names == ["A", "B", "C"]  # B appears twice: taken once
    assert [(s.cost, s.before, s.after) for s in env2.switches] == [(s.cost, s.before, s.after) for s in env1.switches]
    png = plot_envelope(env2, tmp_path / "plots" / "env.png", title="toy")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pool_needs_shared_examples(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", ["A", "B"], [A, B], [1.0, 4.0])
    b = tmp_path / "b"
    write_run(b, ["C", "D"], [C, C], [10.0, 20.0])
    (b / "examples.jsonl").write_text((b / "examples.jsonl").read_text().replace('"id": "e', '"id": "other'))
    with pytest.raises(CalibrationError, match="share no example ids"):
        model_pool([load_run(a), load_run(b)])
