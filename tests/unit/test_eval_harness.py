"""The evaluation harness end to end on a MockProvider (real data loader, metrics, replay, outputs)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from semcascade import ConfidenceError, ConfigError, MockProvider
from semcascade.evaluation.datasets import load_dataset
from semcascade.evaluation.harness import run_eval
from semcascade.evaluation.prompts import get_template
from semcascade.evaluation.records import load_records
from semcascade.evaluation.replay import cascade_outcomes
from semcascade.providers import Completion, CompletionRequest

CFG = {
    "tiers": [
        {
            "name": "cheap",
            "model": "openai/cheap",
            "k": 4,
            "threshold": 0.9,
            "input_cost_per_token": 1e-7,
            "output_cost_per_token": 1e-7,
        },
        {
            "name": "strong",
            "model": "openai/strong",
            "k": 1,
            "temperature": 0.0,
            "input_cost_per_token": 1e-6,
            "output_cost_per_token": 1e-6,
        },
    ],
    "scorer": {"name": "lexical"},
}


def handler(req: CompletionRequest) -> Completion:
    question = str(req.messages[-1]["content"])
    # cheap tier: agrees (and is "right": echoes the question) on even-length questions, rambles otherwise
    if req.model == "openai/cheap":
        texts = [question] * req.n if len(question) % 2 == 0 else [f"noise {i} {question[:3]}" for i in range(req.n)]
    else:
        texts = [question]
    return MockProvider.texts(req.model, texts, prompt_tokens=len(question.split()))


def odd_length_ids(n: int, seed: int) -> set[str]:
    """The ids of the dataset draw whose rendered prompt ``handler`` answers with disagreeing noise."""
    examples = load_dataset("nq", n, seed)
    return {str(e.id) for e in examples if len(get_template(e.task).render(e)[-1]["content"]) % 2 == 1}


async def test_harness_end_to_end(tmp_path: Path) -> None:
    provider = MockProvider(handler)
    out = tmp_path / "out"
    rep = await run_eval(
        CFG, dataset="nq", n=12, seed=1, out_dir=out, signals=("lexical", "logprob", "random"),
        cache_path=tmp_path / "c.sqlite", provider=provider, progress=False,
    )  # fmt: skip
    assert rep.n == 12 and rep.task == "qa" and rep.quality_metric == "accuracy"
    names = [r.system for r in rep.systems]
    assert "strong alone (greedy)" in names and "cheap alone (greedy)" in names
    assert any(n.startswith("cascade: lexical (shipped") for n in names)
    assert any(n.startswith("oracle") for n in names)
    strong = rep.row("strong alone (greedy)")
    assert strong.cost_vs_strong == pytest.approx(1.0)
    cascade = next(r for r in rep.systems if r.system.startswith("cascade: lexical"))
    # the cascade escalates exactly the odd-length (disagreeing) questions, by id
    odd = odd_length_ids(n=12, seed=1)
    assert 0 < len(odd) < 12, odd  # both branches of the handler are exercised
    recs = {r.id: r for r in load_records(out)}
    outcomes = cascade_outcomes(list(recs.values()), "lexical", [0.9])  # the replay the report is built from
    escalated = {i for i, o in zip(recs, outcomes, strict=True) if o.tier == 1}
    assert escalated == odd
    assert cascade.deferral == [len(odd) / 12]
    # it pays the cheap tier on every question and the strong tier on the escalated ones only
    paid = sum(r.tiers[0].cost for r in recs.values()) + sum(recs[i].tiers[1].cost for i in odd)
    assert cascade.cost == pytest.approx(paid) and cascade.cost_vs_strong == pytest.approx(paid / strong.cost)
    for f in (
        "examples.jsonl",
        "summary.csv",
        "report.md",
        "report.json",
        "frontier.png",
        "deferral.png",
        "reliability.png",
    ):
        assert (out / f).stat().st_size > 0, f
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and len(rows[0]["tiers"]) == 2 and len(rows[0]["tiers"][0]["samples"]) == 4
    assert "| system | quality |" in (out / "report.md").read_text()

    # a rerun is served from the response cache: no new provider calls
    calls = len(provider.calls)
    rep2 = await run_eval(
        CFG, dataset="nq", n=12, seed=1, signals=("lexical",), cache_path=tmp_path / "c.sqlite",
        provider=provider, progress=False,
    )  # fmt: skip
    assert len(provider.calls) == calls
    assert rep2.cache_stats["paid_calls"] == 0 and rep2.cache_stats["hits"] > 0
    assert rep2.row("strong alone (greedy)").quality == strong.quality


async def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown deferral signal"):
        await run_eval(
            CFG, dataset="nq", n=2, signals=("vibes",), cache_path=tmp_path / "c.sqlite", provider=MockProvider(handler)
        )
    with pytest.raises(ConfigError, match="n must be at least 1"):
        await run_eval(CFG, dataset="nq", n=0, cache_path=tmp_path / "c.sqlite", provider=MockProvider(handler))


def handler_lp(req: CompletionRequest) -> Completion:
    """Like ``handler``, with token logprobs: confident when right (even-length questions)."""
    from semcascade.providers import Choice, TokenLogprob

    question = str(req.messages[-1]["content"])
    right = _nq_answers()[question]
    good = len(question) % 2 == 0
    if req.model == "openai/cheap":
        texts = [right] * req.n if good else [f"noise {i}" for i in range(req.n)]
    else:
        texts = [right]
    lp = -0.05 if good else -2.5
    choices = tuple(Choice(t, len(t.split()), "stop", tuple(TokenLogprob(w, lp) for w in t.split())) for t in texts)
    return Completion(model=req.model, choices=choices, prompt_tokens=len(question.split()))


@functools.cache
def _nq_answers() -> dict[str, str]:
    return {e.input: e.references[0] for e in load_dataset("nq")}


async def test_fit_confidence_on_calibration_then_report_it_on_test(tmp_path: Path) -> None:
    from semcascade.cli import main
    from semcascade.evaluation.fit_confidence import fit_confidence

    provider = MockProvider(handler_lp)
    cfg = {**CFG, "tiers": [{**CFG["tiers"][0], "logprobs": True, "include_greedy": True}, CFG["tiers"][1]]}
    cal = tmp_path / "cal"
    await run_eval(
        cfg, dataset="nq", n=30, split="calibration", out_dir=cal, signals=("lexical", "p_min"),
        cache_path=tmp_path / "c.sqlite", provider=provider, progress=False,
    )  # fmt: skip
    recs = load_records(cal)
    assert len(recs) == 30 and recs[0].tiers[0].greedy_index == 0 and recs[0].tiers[0].min_logprobs[0] is not None
    rep = fit_confidence(cal, features=("agreement", "lp_min", "answer_tokens"))
    assert rep.n == 30 and rep.auroc_fit is not None and rep.auroc_fit > 0.9
    assert rep.model.provenance["split"] == "calibration" and rep.model.provenance["agreement_signal"] == "lexical"
    art = tmp_path / "conf.json"
    assert main(["fit-confidence", str(cal), "--out", str(art), "--features", "agreement,lp_min"]) == 0
    assert main(["fit-confidence", str(cal), "--out", str(art), "--features", "vibes"]) == 2

    test_cfg = {**cfg, "tiers": [{**cfg["tiers"][0], "confidence_model": str(art), "threshold": 0.5}, cfg["tiers"][1]]}
    out = tmp_path / "test"
    rep2 = await run_eval(
        test_cfg, dataset="nq", n=30, split="test", out_dir=out, signals=("lexical", "p_min", "confidence"),
        cache_path=tmp_path / "c.sqlite", provider=provider, progress=False,
    )  # fmt: skip
    assert rep2.shipped_signal == "confidence"
    assert rep2.signal_quality["confidence"]["auroc"] is not None and rep2.signal_quality["confidence"]["auroc"] > 0.9
    # the handler's lowest token logprob is -0.05 on every right answer and -2.5 on every wrong one
    assert rep2.signal_quality["p_min"]["auroc"] == pytest.approx(1.0), rep2.signal_quality
    assert any(r.system.startswith("cascade: confidence (shipped") for r in rep2.systems)
    with pytest.raises(ConfigError, match="confidence_model"):
        await run_eval(
            CFG, dataset="nq", n=2, signals=("confidence",), cache_path=tmp_path / "c.sqlite", provider=provider
        )


async def test_fit_confidence_on_the_calibration_ids_of_a_whole_run(tmp_path: Path) -> None:
    from semcascade.cli import main
    from semcascade.evaluation.fit_confidence import feature_rows, fit_confidence
    from semcascade.evaluation.splits import split_of

    cfg = {**CFG, "tiers": [{**CFG["tiers"][0], "logprobs": True, "include_greedy": True}, CFG["tiers"][1]]}
    run = tmp_path / "all"
    await run_eval(
        cfg, dataset="nq", n=40, out_dir=run, signals=("lexical", "p_min"), cache_path=tmp_path / "c.sqlite",
        provider=MockProvider(handler_lp), progress=False,
    )  # fmt: skip
    whole = feature_rows(run, features=("agreement", "lp_min"))
    cal = feature_rows(run, features=("agreement", "lp_min"), split="calibration")
    test = feature_rows(run, features=("agreement", "lp_min"), split="test")
    assert len(whole.ids) == 40 and 0 < len(cal.ids) < 40 and sorted(cal.ids + test.ids) == sorted(whole.ids)
    assert {split_of(i) for i in cal.ids} == {"calibration"} and {split_of(i) for i in test.ids} == {"test"}
    row = {i: whole.x[j].tolist() for j, i in enumerate(whole.ids)}
    assert all(row[i] == cal.x[j].tolist() for j, i in enumerate(cal.ids))
    rep = fit_confidence(run, features=("agreement", "lp_min"), split="calibration")
    assert rep.n == len(cal.ids) and rep.model.provenance["split"] == "calibration"
    art = tmp_path / "conf.json"
    assert main(["fit-confidence", str(run), "--out", str(art), "--split", "calibration"]) == 0
    with pytest.raises(ConfidenceError, match="unknown split"):
        feature_rows(run, split="holdout")


async def test_a_config_without_prices_still_writes_its_report(tmp_path: Path) -> None:
    free = {**CFG, "tiers": [{k: v for k, v in t.items() if "cost" not in k} for t in CFG["tiers"]]}
    rep = await run_eval(
        free, dataset="nq", n=4, signals=("lexical",), out_dir=tmp_path / "o", cache_path=tmp_path / "c.sqlite",
        provider=MockProvider(handler), progress=False,
    )  # fmt: skip
    assert rep.row("strong alone (greedy)").cost == 0.0
    assert (tmp_path / "o" / "frontier.png").stat().st_size > 0
