"""Collect every tier's outputs once per example, then score agreement under every signal.

Model calls go through the cascade's provider (wrap it in a
:class:`~semcascade.response_cache.CachingProvider` so reruns are free); the
recorded latency of a cached call is replayed, so reruns report the same
timings as the run that paid for them.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from semcascade.aggregation import consensus, pair_indices
from semcascade.cascade import Cascade
from semcascade.confidence import ConfidenceModel, TierEvidence
from semcascade.config import EquivalenceConfig
from semcascade.evaluation.replay import ExampleRecord, TierRecord
from semcascade.providers import Completion, CompletionRequest, Provider
from semcascade.response_cache import CachingProvider
from semcascade.sampling import TierSamples, sample_tier
from semcascade.scoring.base import AgreementScorer, PairJudgement

__all__ = ["LatencyRecorder", "SignalSpec", "collect", "record_evidence", "score_signals", "timed_sample"]

Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class SignalSpec:
    """A deferral signal: an agreement scorer, a combination of them, or a non-agreement baseline.

    ``kind``: ``"scorer"`` (uses ``scorer``), ``"mean"`` (mean of the named
    ``parts``), ``"logprob"`` (geometric-mean token probability of the samples),
    ``"random"`` (uniform noise: the no-information baseline).
    """

    name: str
    kind: str
    scorer: AgreementScorer | None = None
    parts: tuple[str, ...] = ()
    #: cumulative money the scorer has spent (an LLM judge's calls), read before and after each example
    cost_meter: Callable[[], float] | None = None
    #: ``"confidence"``: tier index -> its fitted model, fed by the agreement of signal ``parts[0]``
    models: Mapping[int, ConfidenceModel] = field(default_factory=dict)
    #: ``"token_prob"``: which token log-probability of the answer (``mean``, ``min`` or ``first``)
    statistic: str = "mean"


def record_evidence(t: TierRecord, agreement_signal: str, question: str, prompt: str, tier: str = "") -> TierEvidence:
    """A recorded tier output as the confidence features see it (representative: that signal's consensus)."""
    n = len(t.samples)
    return TierEvidence(
        answers=t.samples,
        representative=t.consensus.get(agreement_signal, t.greedy_index or 0),
        agreement=t.scores.get(agreement_signal),
        largest_cluster=t.largest_cluster.get(agreement_signal, 1),
        mean_logprobs=t.mean_logprobs,
        min_logprobs=t.min_logprobs or [None] * n,
        first_logprobs=t.first_logprobs or [None] * n,
        tokens=t.sample_tokens or [0] * n,
        question=question,
        prompt=prompt,
        tier=tier,
    )


def _token_prob(t: TierRecord, statistic: str) -> tuple[float | None, int]:
    """exp(a token log-probability statistic) of the greedy answer (else the first sample)."""
    i = t.greedy_index if t.greedy_index is not None else 0
    values = {"mean": t.mean_logprobs, "min": t.min_logprobs, "first": t.first_logprobs}[statistic]
    v = values[i] if i < len(values) else None
    return (None if v is None else math.exp(v)), i


_CALL_LATENCIES: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("call_latencies", default=None)


class LatencyRecorder:
    """Provider wrapper that notes each call's latency, replaying the recorded one for cached calls."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner

    async def complete(self, request: CompletionRequest) -> Completion:
        sink = _CALL_LATENCIES.get()
        if isinstance(self.inner, CachingProvider):
            info = await self.inner.complete_with_info(request)
            if sink is not None:
                sink.append(info.latency_s)
            return info.completion
        t0 = time.perf_counter()
        out = await self.inner.complete(request)
        if sink is not None:
            sink.append(time.perf_counter() - t0)
        return out


async def timed_sample(tier: Any, messages: Messages, provider: Provider, **kw: Any) -> tuple[TierSamples, float]:
    """Sample a tier; its latency is the slowest of its (concurrent) calls, as originally paid."""
    sink: list[float] = []
    token = _CALL_LATENCIES.set(sink)
    try:
        drawn = await sample_tier(tier, messages, provider, **kw)
    finally:
        _CALL_LATENCIES.reset(token)
    return drawn, max(sink, default=0.0)


async def _collect_one(cascade: Cascade, messages: Messages, *, greedy: bool) -> list[TierRecord]:
    records = []
    provider = LatencyRecorder(cascade.provider)
    fmt = cascade.config.answer_format
    for tier in cascade.tiers:
        cfg = tier.config
        drawn, lat = await timed_sample(tier, messages, provider, answer_format=fmt)
        cost = drawn.cost(cfg)
        s = drawn.samples
        rec = TierRecord(
            samples=[x.answer for x in s] or [""],
            mean_logprobs=[x.mean_logprob for x in s] or [None],
            cost=cost,
            latency_s=lat,
            prompt_tokens=drawn.prompt_tokens,
            completion_tokens=drawn.completion_tokens,
            raw_samples=[x.text for x in s] or [""],
            min_logprobs=[x.min_logprob for x in s] or [None],
            first_logprobs=[x.first_logprob for x in s] or [None],
            sample_tokens=[x.completion_tokens for x in s] or [0],
            greedy_index=next((x.index for x in s if x.greedy), None) if cfg.temperature > 0 else None,
        )
        if greedy and (cfg.k > 1 or cfg.temperature > 0):
            g, rec.greedy_latency_s = await timed_sample(
                tier, messages, provider, k=1, temperature=0.0, answer_format=fmt
            )
            rec.greedy = g.samples[0].answer if g.samples else ""
            rec.greedy_cost = g.cost(cfg)
        else:  # the tier already is greedy with one sample
            rec.greedy, rec.greedy_latency_s, rec.greedy_cost = rec.samples[0], rec.latency_s, rec.cost
        records.append(rec)
    return records


async def collect(
    cascade: Cascade,
    examples: Sequence[Any],
    messages_for: Callable[[Any], Messages],
    *,
    greedy: bool = True,
    concurrency: int = 1,
    progress: bool = True,
) -> list[ExampleRecord]:
    """Run every tier of ``cascade`` on every example (k samples, plus a greedy answer).

    ``concurrency`` examples run at once (1 gives undisturbed latencies).
    """
    sem = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(examples), desc="collecting tier outputs", unit="ex", disable=not progress)

    async def one(ex: Any) -> ExampleRecord:
        async with sem:
            tiers = await _collect_one(cascade, messages_for(ex), greedy=greedy)
            bar.update(1)
            return ExampleRecord(id=str(ex.id), tiers=tiers)

    try:
        return list(await asyncio.gather(*(one(ex) for ex in examples)))
    finally:
        bar.close()


async def _scorer_signal(spec: SignalSpec, question: str, t: TierRecord, rule: EquivalenceConfig) -> None:
    scorer, name = spec.scorer, spec.name
    assert scorer is not None
    n = len(t.samples)
    t.scoring_cost[name] = 0.0
    if n < 2:
        t.scores[name] = None
        t.consensus[name] = 0
        t.scoring_s[name] = 0.0
        return
    spent = spec.cost_meter() if spec.cost_meter else 0.0
    t0 = time.perf_counter()
    js: list[PairJudgement] = await scorer.judge(question, [(t.samples[a], t.samples[b]) for a, b in pair_indices(n)])
    cons = consensus(n, js, rule, prefer=t.greedy_index)
    t.largest_cluster[name] = len(cons.clusters[0])
    t.scoring_s[name] = time.perf_counter() - t0
    if spec.cost_meter:
        t.scoring_cost[name] = spec.cost_meter() - spent
    t.scores[name] = cons.score
    t.consensus[name] = cons.representative


async def score_signals(
    records: Sequence[ExampleRecord],
    questions: Mapping[str, str],
    signals: Sequence[SignalSpec],
    rule: EquivalenceConfig,
    *,
    seed: int = 0,
    progress: bool = True,
    prompts: Mapping[str, str] | None = None,
) -> None:
    """Fill every tier record's ``scores``/``consensus``/``scoring_s`` for each signal.

    ``prompts`` (example id -> everything the model was shown) feeds the
    confidence models' grounding feature.
    """
    rng = random.Random(seed)
    for spec in signals:
        for rec in tqdm(records, desc=f"signal: {spec.name}", unit="ex", disable=not progress):
            for ti, t in enumerate(rec.tiers):
                if spec.kind == "scorer":
                    await _scorer_signal(spec, questions[rec.id], t, rule)
                elif spec.kind == "mean":
                    parts = [x for p in spec.parts if (x := t.scores.get(p)) is not None]
                    t.scores[spec.name] = sum(parts) / len(parts) if len(parts) == len(spec.parts) else None
                    t.consensus[spec.name] = t.consensus.get(spec.parts[0], 0)
                    t.scoring_s[spec.name] = sum(t.scoring_s.get(p, 0.0) for p in spec.parts)
                    t.scoring_cost[spec.name] = sum(t.scoring_cost.get(p, 0.0) for p in spec.parts)
                elif spec.kind == "logprob":
                    lps = [x for x in t.mean_logprobs if x is not None]
                    t.scores[spec.name] = math.exp(sum(lps) / len(lps)) if lps and len(t.samples) > 1 else None
                    # answer: the most probable sample
                    best = max(range(len(t.samples)), key=lambda i: t.mean_logprobs[i] or -math.inf)
                    t.consensus[spec.name] = best
                    t.scoring_s[spec.name] = 0.0
                elif spec.kind == "confidence":
                    model = spec.models.get(ti)
                    ag = spec.parts[0]
                    t.consensus[spec.name] = t.consensus.get(ag, t.greedy_index or 0)
                    t.scoring_s[spec.name] = t.scoring_s.get(ag, 0.0)
                    t.scoring_cost[spec.name] = t.scoring_cost.get(ag, 0.0)
                    needs_agreement = model is not None and "agreement" in model.features
                    if model is None or (needs_agreement and t.scores.get(ag) is None):
                        t.scores[spec.name] = None
                        continue
                    prompt = (prompts or {}).get(rec.id, questions[rec.id])
                    ev = record_evidence(t, ag, questions[rec.id], prompt, tier=str(ti))
                    t.scores[spec.name] = model.confidence(ev)
                elif spec.kind == "token_prob":
                    t.scores[spec.name], t.consensus[spec.name] = _token_prob(t, spec.statistic)
                    t.scoring_s[spec.name] = 0.0
                elif spec.kind == "random":
                    t.scores[spec.name] = rng.random()  # no information: needs no samples either
                    t.consensus[spec.name] = 0
                    t.scoring_s[spec.name] = 0.0
                else:
                    raise ValueError(f"unknown signal kind {spec.kind!r}")
