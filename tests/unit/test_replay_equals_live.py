"""The committed eval runs, replayed through the LIVE cascade, decide as the replay says.

For every committed run under ``eval/results/`` and every signal it recorded
that the live cascade can compute without a model call, a live
:class:`~semcascade.Cascade` whose provider serves the recorded samples (text
and token log-probabilities) answers every example, at edge thresholds (0 and
1) and at a threshold between two recorded scores. The live trace must carry
the recorded score and representative of every tier it reached, and the live
path (answering tier, returned sample, abstention) must be the replay's
(:func:`semcascade.evaluation.replay.cascade_outcomes`) — so the published
figures are what the shipped decision path does.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semcascade import Cascade
from semcascade.evaluation.datasets import Example, load_dataset
from semcascade.evaluation.prompts import get_template
from semcascade.evaluation.records import EvalRun, load_run
from semcascade.evaluation.replay import ExampleRecord, TierRecord, cascade_outcomes
from semcascade.evaluation.rescore import offline_signals, run_config
from semcascade.providers import Choice, Completion, CompletionRequest, MockProvider, TokenLogprob
from semcascade.scoring._registry import create_scorer
from semcascade.scoring.base import AgreementScorer
from semcascade.scoring.cache import CachedScorer
from semcascade.scoring.signals import get_signal

ROOT = Path(__file__).resolve().parents[2]
RUNS = sorted(p.parent for p in (ROOT / "eval" / "results").glob("*/examples.jsonl"))
#: live scores may differ from recorded ones by float noise (embedding batches pad differently)
TOL = 1e-6


def _token_logprobs(mean: float | None, low: float | None, first: float | None, n: int) -> list[float] | None:
    """``n`` token log-probabilities whose mean, minimum and first are the recorded ones."""
    if mean is None or low is None or first is None or n < 1:
        return None
    if n == 1:
        return [first]
    rest_sum = n * mean - first
    if n == 2:
        return [first, rest_sum]
    if math.isclose(first, low, abs_tol=1e-12):
        return [first] + [rest_sum / (n - 1)] * (n - 1)
    fill = (rest_sum - low) / (n - 2)
    return [first, low] + [fill] * (n - 2)


def _choice(t: TierRecord, i: int) -> Choice:
    n_tokens = t.sample_tokens[i] if i < len(t.sample_tokens) else max(1, len(t.samples[i].split()))
    lps = _token_logprobs(t.mean_logprobs[i], t.min_logprobs[i], t.first_logprobs[i], n_tokens)
    text = t.raw_samples[i] if i < len(t.raw_samples) else t.samples[i]
    logprobs = None if lps is None else tuple(TokenLogprob(token=f"t{j}", logprob=lp) for j, lp in enumerate(lps))
    return Choice(text=text, completion_tokens=n_tokens, finish_reason="stop", logprobs=logprobs)


class RecordedProvider:
    """Serves each tier's recorded samples for the example whose prompt it is asked."""

    def __init__(self, by_prompt: dict[str, ExampleRecord], tier_index: dict[str, int]) -> None:
        self.by_prompt, self.tier_index = by_prompt, tier_index

    def __call__(self, request: CompletionRequest) -> Completion:
        user = next(str(m["content"]) for m in reversed(request.messages) if m["role"] == "user")
        t = self.by_prompt[user].tiers[self.tier_index[request.tier or ""]]
        greedy_first = t.greedy_index is not None
        if greedy_first and request.temperature == 0.0:
            picks = [t.greedy_index or 0]
        elif greedy_first:
            picks = [i for i in range(len(t.samples)) if i != t.greedy_index][: request.n]
        else:
            picks = list(range(len(t.samples)))[: request.n]
        return Completion(model=request.model, choices=tuple(_choice(t, i) for i in picks), prompt_tokens=10)


def _live_config(run: EvalRun, signal: str, thresholds: list[float], final_action: str) -> dict[str, Any]:
    cfg = run_config(run.report, ROOT)
    sig = get_signal(signal)
    scorer = cfg.scorer.model_dump()
    if sig.kind == "black-box" and cfg.scorer.name not in sig.scorers:
        scorer = {"name": sig.scorers[0], "options": {}}
    first = run.records[0].tiers
    tiers = []
    for i, (tc, t) in enumerate(zip(cfg.tiers, first, strict=True)):
        k = len(t.samples)
        tiers.append(
            {
                "name": f"tier{i}",
                "model": f"recorded/tier{i}",
                "k": k,
                "temperature": 0.7 if k > 1 else 0.0,
                "include_greedy": t.greedy_index is not None,
                "native_n": True,
                "logprobs": True,
                "threshold": thresholds[i],
                # a tier without the fitted model has no confidence score: it decides on agreement (none: k=1)
                "signal": "agreement"
                if sig.kind == "black-box" or (signal == "confidence" and not tc.confidence_model)
                else signal,
                "confidence_model": tc.confidence_model,
                "max_tokens": tc.max_tokens,
                "input_cost_per_token": 1e-6 * (i + 1),
                "output_cost_per_token": 1e-6 * (i + 1),
            }
        )
    return {
        "tiers": tiers,
        "scorer": scorer,
        "equivalence": cfg.equivalence.model_dump(),
        "aggregation": cfg.aggregation,
        "answer_format": cfg.answer_format,
        "final_action": final_action,
    }


def _thresholds(records: list[ExampleRecord], signal: str, n_tiers: int) -> list[list[float]]:
    """Per live run: one threshold per tier — 0 (accept unscored single samples), 1, and between two scores."""
    scores = np.unique([s for r in records for t in r.tiers[:-1] if (s := t.scores.get(signal)) is not None])
    mids = [(a + b) / 2 for a, b in itertools.pairwise(scores) if b - a > 10 * TOL]
    middle = [mids[len(mids) // 2]] if mids else []
    return [[th] * (n_tiers - 1) + [th] for th in (0.0, 1.0, *middle)]


def _scored_signals(run: EvalRun) -> list[str]:
    out = []
    for s in offline_signals(run.records):
        if s == "random":
            continue  # noise, by construction not a live signal
        if get_signal(s).kind == "white-box" and all(x is None for r in run.records for x in r.tiers[0].mean_logprobs):
            continue
        if s == "confidence" and not any(t.confidence_model for t in run_config(run.report, ROOT).tiers):
            continue
        out.append(s)
    return out


@functools.cache
def _dataset(name: str, seed: int) -> dict[str, Example]:
    return {str(e.id): e for e in load_dataset(name, None, seed)}


def _examples(run: EvalRun) -> dict[str, Example]:
    rows = _dataset(str(run.report["dataset"]), int(run.report.get("seed", 0)))
    return {r.id: rows[r.id] for r in run.records}


@functools.cache
def _scorer(name: str, options: str) -> AgreementScorer:
    """One scorer per kind for the whole module: loaded once, its pair cache shared by the live runs."""
    return CachedScorer(create_scorer(name, **json.loads(options)))


async def _check(run: EvalRun, signal: str, thresholds: list[float], final_action: str) -> int:
    cfg = _live_config(run, signal, thresholds, final_action)
    template = get_template(str(run.report["task"]))
    examples = _examples(run)
    by_prompt = {template.render(examples[r.id])[1]["content"]: r for r in run.records}
    provider = MockProvider(RecordedProvider(by_prompt, {t["name"]: i for i, t in enumerate(cfg["tiers"])}))
    replayed = cascade_outcomes(run.records, signal, thresholds, final_action=final_action)  # type: ignore[arg-type]
    checked = 0
    scorer = _scorer(cfg["scorer"]["name"], json.dumps(cfg["scorer"]["options"], sort_keys=True))
    async with Cascade(cfg, provider=provider, scorer=scorer) as cascade:
        for rec, want in zip(run.records, replayed, strict=True):
            live = await cascade.generate(template.render(examples[rec.id]))
            assert live.tier_index == want.tier, (rec.id, [t.reason for t in live.trace])
            assert live.abstained == want.abstained, rec.id
            for tt, t in zip(live.trace, rec.tiers, strict=False):
                recorded = t.scores.get(signal)
                if recorded is None:
                    assert tt.score is None, (rec.id, tt.tier, tt.score)
                else:
                    assert tt.score is not None and abs(tt.score - recorded) <= TOL, (
                        rec.id,
                        tt.tier,
                        tt.score,
                        recorded,
                    )
            answer = live.trace[want.tier]
            assert answer.representative == want.answer_index, (rec.id, answer.representative, want.answer_index)
            assert live.text == rec.tiers[want.tier].samples[want.answer_index or 0], rec.id
            checked += 1
    return checked


@pytest.mark.parametrize("run_dir", RUNS, ids=[p.name for p in RUNS])
def test_committed_run_replays_as_the_live_cascade_decides(run_dir: Path) -> None:
    run = load_run(run_dir)
    signals = _scored_signals(run)
    assert signals, f"{run_dir.name}: no live-computable signal recorded"
    n_tiers = len(run.records[0].tiers)
    for signal in signals:
        grid = _thresholds(run.records, signal, n_tiers)
        # the edges answer everything; between two scores the last tier may abstain (its threshold matters then)
        for th, final_action in zip(grid, ("answer", "answer", "abstain"), strict=False):
            assert asyncio.run(_check(run, signal, th, final_action)) == len(run.records)


def test_every_committed_run_is_covered() -> None:
    assert len(RUNS) >= 9, [p.name for p in RUNS]
