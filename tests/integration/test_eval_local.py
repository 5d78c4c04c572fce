"""The evaluation harness on a tiny subset with the real local server."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from semcascade import Cascade
from semcascade.evaluation.datasets import load_dataset
from semcascade.evaluation.hallucination import FactualityJudge
from semcascade.evaluation.harness import ALL_SIGNALS, run_eval
from semcascade.evaluation.prompts import get_template, truncate_text
from semcascade.evaluation.records import ExampleRecord, load_records
from semcascade.evaluation.replay import cascade_outcomes
from semcascade.providers import Completion, CompletionRequest
from semcascade.response_cache import CachingProvider, ResponseCache

pytestmark = pytest.mark.integration


def escalations(recs: Sequence[ExampleRecord], signal: str, threshold: float) -> tuple[set[str], float]:
    """The ids a two-tier cascade on ``signal`` escalates at ``threshold`` (the threshold rule on the
    recorded scores), and what it pays: every tier it calls and the signal's own scoring calls."""
    escalated = {r.id for r in recs if (r.tiers[0].scores[signal] or 0.0) < threshold}
    paid = sum(
        t.cost + t.scoring_cost.get(signal, 0.0) for r in recs for t in (r.tiers if r.id in escalated else r.tiers[:1])
    )
    return escalated, paid


async def test_eval_nq_tiny_all_signals(
    local_cascade: Cascade, variant: Callable[..., Cascade], tmp_path: Path
) -> None:
    # a sampled cheap tier (k=3, greedy included) that keeps the shipped confidence model: every signal has scores.
    # Threshold 0.3, not the shipped 0.5: a recorded run's confidences were 0.47, 0.10, 0.05, 0.02, so both
    # decisions are exercised (at 0.5 all four escalate, and "escalate all" cannot tell the deferral rules apart)
    sampled = variant(local_cascade, k=3, temperature=0.7, seed=1234, include_greedy=True, threshold=0.3)
    rep = await run_eval(
        dataset="nq", n=4, seed=0, out_dir=tmp_path / "nq", signals=ALL_SIGNALS,
        cache_path=tmp_path / "c.sqlite", cascade=sampled, progress=False,
    )  # fmt: skip
    assert rep.n == 4 and rep.shipped_signal == "confidence"
    assert set(rep.signal_quality) == set(ALL_SIGNALS)
    assert all(v["positive_rate"] is not None for k, v in rep.signal_quality.items()), rep.signal_quality
    recs = load_records(tmp_path / "nq")
    assert sorted(r.id for r in recs) == sorted(str(e.id) for e in load_dataset("nq", 4, 0))
    strong = rep.row(f"{sampled.config.tiers[-1].name} alone (greedy)")
    assert strong.cost > 0 and strong.cost == pytest.approx(sum(r.tiers[-1].greedy_cost for r in recs))
    assert strong.latency_mean_s > 0
    # the shipped cascade escalates exactly the examples whose recorded confidence is below the threshold
    shipped = next(r for r in rep.systems if "shipped" in r.system)
    escalated, paid = escalations(recs, "confidence", sampled.config.tiers[0].threshold)
    assert shipped.deferral == [len(escalated) / 4], (escalated, [r.tiers[0].scores["confidence"] for r in recs])
    assert shipped.cost == pytest.approx(paid)
    # the LLM judge's calls are paid for and counted in the NLI cascade's cost
    nli = next(r for r in rep.systems if r.system.startswith("cascade: nli ("))
    assert nli.threshold is not None and all(r.tiers[0].scoring_cost["nli"] > 0 for r in recs)
    assert nli.cost == pytest.approx(escalations(recs, "nli", nli.threshold)[1])
    assert (tmp_path / "nq" / "frontier.png").stat().st_size > 10_000


class Unreachable:
    """A provider that must not be called: every request has to be served from the response cache."""

    async def complete(self, request: CompletionRequest) -> Completion:
        raise AssertionError(f"not in the response cache: a request the harness did not make ({request.model})")


async def test_eval_summarization_tiny(local_cascade: Cascade, tmp_path: Path) -> None:
    rep = await run_eval(
        dataset="cnn_dailymail", n=2, seed=0, out_dir=tmp_path / "sum", signals=("embedding", "lexical"),
        cache_path=tmp_path / "c.sqlite", cascade=local_cascade, progress=False,
    )  # fmt: skip
    assert rep.task == "summarization" and rep.quality_metric == "rougeL"
    recs = load_records(tmp_path / "sum")
    examples = {str(e.id): e for e in load_dataset("cnn_dailymail", 2, 0)}
    # the headline is stemmed ROUGE-L F1 of the strong tier's summary, best over the references
    rl = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = [
        max(rl.score(ref, r.tiers[-1].greedy or "")["rougeL"].fmeasure for ref in examples[r.id].references)
        for r in recs
    ]
    quality = rep.row(f"{local_cascade.config.tiers[-1].name} alone (greedy)").quality
    assert quality > 0 and quality == pytest.approx(sum(expected) / len(expected)), expected
    assert {"rouge1", "rouge2", "rougeL", "rougeLsum"} <= set(rep.corpus_metrics["cascade (shipped)"])

    # the hallucination rate is the NLI judge's verdict share on the very summaries each system returned:
    # judged again here from the run's response cache (so with the same answers, and no new model call)
    judge_model = local_cascade.resolve_model(local_cascade.config.tiers[-1].model_list[0])
    offline = CachingProvider(Unreachable(), ResponseCache(tmp_path / "c.sqlite"))
    judge = FactualityJudge.from_model(
        judge_model.litellm_model, api_base=judge_model.api_base, api_key="local", provider=offline
    )
    limit = get_template("summarization").max_input_chars
    sources = [truncate_text(examples[r.id].input, limit) if limit else examples[r.id].input for r in recs]
    shipped = cascade_outcomes(recs, rep.shipped_signal, [t.threshold for t in local_cascade.config.tiers])
    returned = {
        "strong alone (greedy)": [r.tiers[-1].greedy or "" for r in recs],
        "cascade (shipped)": [
            r.tiers[o.tier].samples[o.answer_index] if o.answer_index is not None else r.tiers[o.tier].greedy or ""
            for r, o in zip(recs, shipped, strict=True)
        ],
    }
    for system, summaries in returned.items():
        verdicts = await judge.judge_summaries(sources, summaries)
        rate = sum(v.hallucinated for v in verdicts) / len(verdicts)
        assert rep.corpus_metrics[system]["hallucination_rate"] == pytest.approx(rate), system
    assert offline.stats.hits > 0 and offline.stats.paid_calls == 0
