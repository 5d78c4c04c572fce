"""The evaluation harness on a tiny subset with the real local server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from semcascade import Cascade
from semcascade.evaluation.harness import ALL_SIGNALS, run_eval

pytestmark = pytest.mark.integration


async def test_eval_nq_tiny_all_signals(
    local_cascade: Cascade, variant: Callable[..., Cascade], tmp_path: Path
) -> None:
    # a sampled cheap tier (k=3, greedy included) that keeps the shipped confidence model: every signal has scores
    sampled = variant(local_cascade, k=3, temperature=0.7, include_greedy=True)
    rep = await run_eval(
        dataset="nq", n=4, seed=0, out_dir=tmp_path / "nq", signals=ALL_SIGNALS,
        cache_path=tmp_path / "c.sqlite", cascade=sampled, progress=False,
    )  # fmt: skip
    assert rep.n == 4 and rep.shipped_signal == "confidence"
    assert set(rep.signal_quality) == set(ALL_SIGNALS)
    assert all(v["positive_rate"] is not None for k, v in rep.signal_quality.items()), rep.signal_quality
    strong = rep.row(f"{sampled.config.tiers[-1].name} alone (greedy)")
    assert strong.cost > 0 and strong.latency_mean_s > 0
    shipped = next(r for r in rep.systems if "shipped" in r.system)
    assert 0.0 <= shipped.deferral[0] <= 1.0
    # the LLM judge's calls are paid for and counted in the NLI cascade's cost
    nli = next(r for r in rep.systems if r.system.startswith("cascade: nli ("))
    assert nli.cost > 0
    assert (tmp_path / "nq" / "frontier.png").stat().st_size > 10_000


async def test_eval_summarization_tiny(local_cascade: Cascade, tmp_path: Path) -> None:
    rep = await run_eval(
        dataset="cnn_dailymail", n=2, seed=0, signals=("embedding", "lexical"),
        cache_path=tmp_path / "c.sqlite", cascade=local_cascade, progress=False,
    )  # fmt: skip
    assert rep.task == "summarization" and rep.quality_metric == "rougeL"
    assert 0.0 < rep.row(f"{local_cascade.config.tiers[-1].name} alone (greedy)").quality < 1.0
    assert {"rouge1", "rouge2", "rougeL", "rougeLsum"} <= set(rep.corpus_metrics["cascade (shipped)"])
    for system in ("strong alone (greedy)", "cascade (shipped)"):  # the NLI judge's hallucination rate
        assert 0.0 <= rep.corpus_metrics[system]["hallucination_rate"] <= 1.0
