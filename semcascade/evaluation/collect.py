"""Collect every tier's outputs once per example, then score agreement under every signal.

Model calls go through the cascade's provider (wrap it in a
:class:`~semcascade.response_cache.CachingProvider` so reruns are free); the
recorded latency of a cached call is replayed, so reruns report the same
timings as the run that paid for them.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from semcascade import step
from semcascade.aggregation import Aggregation, Consensus
from semcascade.cascade import Cascade
from semcascade.confidence import ConfidenceModel, TierEvidence, load_confidence_model
from semcascade.config import CascadeConfig, EquivalenceConfig
from semcascade.errors import ConfigError
from semcascade.evaluation.replay import ExampleRecord, TierRecord
from semcascade.providers import Completion, CompletionRequest, Provider
from semcascade.response_cache import CachingProvider
from semcascade.sampling import TierSamples, sample_tier
from semcascade.scoring._registry import create_scorer
from semcascade.scoring.base import AgreementScorer
from semcascade.scoring.cache import CachedScorer
from semcascade.scoring.signals import agreement_signal_for, get_signal

__all__ = [
    "LatencyRecorder",
    "SignalSpec",
    "collect",
    "record_evidence",
    "record_votes",
    "score_signals",
    "signal_specs",
    "timed_sample",
]

Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class SignalSpec:
    """A deferral signal to score recorded runs with: a name in the signal registry
    (:mod:`semcascade.scoring.signals`) and what it needs.

    ``scorer``: for black-box (agreement) signals, the scorer that judges the
    pairs. ``models``: for ``confidence``, tier index -> its fitted model, fed by
    the agreement of signal ``agreement``.
    """

    name: str
    scorer: AgreementScorer | None = None
    #: cumulative money the scorer has spent (an LLM judge's calls), read before and after each example
    cost_meter: Callable[[], float] | None = None
    models: Mapping[int, ConfidenceModel] = field(default_factory=dict)
    #: the agreement signal a confidence model's ``agreement`` feature reads
    agreement: str = "embedding"


def signal_specs(
    cfg: CascadeConfig, names: Sequence[str], *, nli: Callable[[], SignalSpec] | None = None
) -> list[SignalSpec]:
    """Specs for the signals ``names`` and those they need, in dependency order.

    Black-box signals get their scorer (the config's own, with its options,
    when it is that signal's scorer); ``confidence`` gets the tiers' fitted
    models; ``nli`` (an LLM judge: model calls) is built by ``nli``.
    """
    agreement = agreement_signal_for(cfg.scorer.name)
    wanted: list[str] = []

    def want(name: str) -> None:
        sig = get_signal(name)
        for need in (*sig.requires, *((agreement,) if name == "confidence" else ())):
            want(need)
        if name not in wanted:
            wanted.append(name)

    for name in names:
        want(name)
    specs: list[SignalSpec] = []
    for name in wanted:
        sig = get_signal(name)
        if name == "nli":
            if nli is None:
                raise ConfigError("signal 'nli' needs the LLM judge (model calls); score it with `semcascade eval`")
            specs.append(nli())
        elif sig.kind == "black-box":
            scorer = cfg.scorer.name if cfg.scorer.name in sig.scorers else sig.scorers[0]
            options = dict(cfg.scorer.options) if scorer == cfg.scorer.name else {}
            specs.append(SignalSpec(name, CachedScorer(create_scorer(scorer, **options)), agreement=agreement))
        else:
            models = (
                {i: load_confidence_model(t.confidence_model) for i, t in enumerate(cfg.tiers) if t.confidence_model}
                if name == "confidence"
                else {}
            )
            specs.append(SignalSpec(name, models=models, agreement=agreement))
    return specs


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
            k=cfg.k,
            error=None if s else "no sample arrived: " + ("; ".join(drawn.errors[:3]) or "unknown"),
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
            greedy_index=drawn.greedy_index if cfg.temperature > 0 else None,
        )
        if greedy and (cfg.k > 1 or cfg.temperature > 0):
            g, rec.greedy_latency_s = await timed_sample(
                tier, messages, provider, k=1, temperature=0.0, answer_format=fmt
            )
            rec.greedy = g.samples[0].answer if g.samples else ""
            rec.greedy_cost = g.cost(cfg)
            rec.greedy_prompt_tokens, rec.greedy_completion_tokens = g.prompt_tokens, g.completion_tokens
            if not g.samples:
                rec.greedy_error = "no greedy answer arrived: " + ("; ".join(g.errors[:3]) or "unknown")
        else:  # the tier already is greedy with one sample
            rec.greedy, rec.greedy_latency_s, rec.greedy_cost = rec.samples[0], rec.latency_s, rec.cost
            rec.greedy_prompt_tokens, rec.greedy_completion_tokens = rec.prompt_tokens, rec.completion_tokens
            rec.greedy_error = rec.error
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


async def _consensus(
    spec: SignalSpec, question: str, t: TierRecord, rule: EquivalenceConfig, aggregation: Aggregation
) -> Consensus | None:
    """The consensus of a recorded tier under ``spec``'s scorer (the live tier step's), timed and metered."""
    name, scorer = spec.name, spec.scorer
    t.scoring_cost[name] = 0.0
    t.scoring_s[name] = 0.0
    n = len(t.samples)
    if scorer is None or n < 2 or t.failed:
        return None
    spent = spec.cost_meter() if spec.cost_meter else 0.0
    t0 = time.perf_counter()
    js = await step.judge_samples(scorer, question, t.samples)
    cons = step.tier_consensus(n, js, rule, aggregation, greedy_index=t.greedy_index)
    t.largest_cluster[name] = len(cons.clusters[0])
    t.scoring_s[name] = time.perf_counter() - t0
    if spec.cost_meter:
        t.scoring_cost[name] = spec.cost_meter() - spent
    return cons


async def score_signals(
    records: Sequence[ExampleRecord],
    questions: Mapping[str, str],
    signals: Sequence[SignalSpec],
    rule: EquivalenceConfig,
    *,
    seed: int = 0,
    progress: bool = True,
    prompts: Mapping[str, str] | None = None,
    aggregation: Aggregation = "mean_pairwise",
) -> None:
    """Fill every tier record's ``scores``/``consensus``/``scoring_s`` for each signal.

    Each signal is computed by the registry's code (:func:`semcascade.step.score_tier`),
    the same the live tier step runs. ``prompts`` (example id -> everything the
    model was shown) feeds the confidence models' grounding feature.
    """
    rng = random.Random(seed)
    for spec in signals:
        sig = get_signal(spec.name)
        for rec in tqdm(records, desc=f"signal: {spec.name}", unit="ex", disable=not progress):
            for ti, t in enumerate(rec.tiers):
                question = questions[rec.id]
                cons: dict[str, Consensus] = {}
                if sig.kind == "black-box":
                    c = await _consensus(spec, question, t, rule, aggregation)
                    if c is not None:
                        cons[spec.name] = c
                else:
                    needs = sig.requires or ((spec.agreement,) if spec.name == "confidence" else ())
                    t.scoring_s[spec.name] = sum(t.scoring_s.get(p, 0.0) for p in needs)
                    t.scoring_cost[spec.name] = sum(t.scoring_cost.get(p, 0.0) for p in needs)
                if t.failed:
                    t.scores[spec.name], t.consensus[spec.name] = None, 0
                    continue
                agreement = spec.agreement if spec.name == "confidence" else spec.name
                prompt = (prompts or {}).get(rec.id, question)
                ev = record_evidence(t, agreement, question, prompt, tier=str(ti))
                if not cons and sig.requires:  # an ensemble of recorded signals: their representative
                    first = sig.requires[0]
                    cons = {} if first not in t.consensus else {first: _recorded(t, first)}
                value = step.score_tier(
                    spec.name,
                    ev,
                    cons,
                    confidence_model=spec.models.get(ti),
                    greedy_index=t.greedy_index,
                    scores=t.scores,
                    rng=rng,
                )
                t.scores[spec.name] = value.score
                t.consensus[spec.name] = value.representative


async def record_votes(
    records: Sequence[ExampleRecord],
    questions: Mapping[str, str],
    scorer: AgreementScorer,
    cfg: CascadeConfig,
) -> None:
    """``final_answer: consensus``: per example and tier after the first, the answer the live cascade
    would vote for (:func:`semcascade.step.final_vote`) if it stopped there, as ``TierRecord.vote``."""
    weights = [t.vote_weight for t in cfg.tiers]
    for rec in records:
        pooled: list[tuple[int, int, str]] = []
        for i, t in enumerate(rec.tiers):
            if not t.failed:
                pooled += [(i, j, a) for j, a in enumerate(t.samples)]
            if i == 0:
                continue
            voted = await step.final_vote(
                scorer,
                questions[rec.id],
                [a for _, _, a in pooled],
                [weights[x] for x, _, _ in pooled],
                cfg.equivalence,
            )
            t.vote = None if voted is None else [pooled[voted[0]][0], pooled[voted[0]][1]]


def _recorded(t: TierRecord, signal: str) -> Consensus:
    """A stand-in consensus carrying a recorded signal's representative and score."""
    import numpy as np

    n = len(t.samples)
    return Consensus(matrix=np.eye(n), clusters=[], representative=t.consensus[signal], score=t.scores.get(signal))
