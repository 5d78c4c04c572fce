"""The evaluation harness: is a cascade configuration worth it on real data?

One run collects every tier's outputs once (through the on-disk response
cache), scores agreement under every deferral signal, and replays, on the
same records: each tier alone (greedy, and best-of-k by agreement), the
cascade under each signal at the shipped operating point and over a
threshold sweep, random deferral at the same rate, and the oracle.

    report = run_eval_sync("configs/local.yaml", dataset="nq", n=500, out_dir="eval/results/nq")
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semcascade import step
from semcascade.cascade import Cascade
from semcascade.config import LOCAL_PREFIX, CascadeConfig, TierConfig, load_config
from semcascade.costs import tier_cost
from semcascade.errors import ConfigError
from semcascade.evaluation.collect import SignalSpec, collect, record_votes, score_signals, signal_specs
from semcascade.evaluation.datasets import Example, load_dataset
from semcascade.evaluation.metrics import auroc, average_precision
from semcascade.evaluation.plots import plot_deferral, plot_frontier, plot_reliability
from semcascade.evaluation.prompts import get_template, scoring_inputs
from semcascade.evaluation.quality import get_task_metrics, hallucination_rate_qa
from semcascade.evaluation.replay import (
    CurvePoint,
    ExampleRecord,
    Outcome,
    cascade_outcomes,
    oracle_outcomes,
    random_curve,
    summarize,
    sweep,
    tier_alone,
)
from semcascade.evaluation.splits import SPLITS
from semcascade.local.paths import cache_dir
from semcascade.policy import create_policy
from semcascade.providers import Completion, CompletionRequest, Provider
from semcascade.providers.stack import build_provider_stack
from semcascade.response_cache import ResponseCache
from semcascade.scoring._registry import create_scorer
from semcascade.scoring.cache import CachedScorer
from semcascade.scoring.signals import agreement_signal_for, available_signals

__all__ = ["ALL_SIGNALS", "EvalReport", "SystemRow", "run_eval", "run_eval_sync"]

#: Deferral signals compared by default (names used in reports). ``confidence`` is the tiers'
#: fitted confidence model (used when the config gives one); ``p_*`` are token-probability
#: confidence P(T) of the greedy answer (mean, lowest, first token).
ALL_SIGNALS = (
    "embedding", "lexical", "nli", "nli+embedding", "logprob", "p_mean", "p_min", "p_first", "confidence", "random",
    "numeric",
)  # fmt: skip


@dataclass
class SystemRow:
    system: str
    quality: float
    cost: float
    cost_vs_strong: float
    latency_mean_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_vs_strong: float
    deferral: list[float]
    threshold: float | None = None
    #: examples with no answer (every call of the answering tier failed): counted here, not scored as wrong
    failures: int = 0
    #: answers the last tier flagged for review (``final_action: abstain``)
    abstentions: int = 0


@dataclass
class EvalReport:
    dataset: str
    task: str
    n: int
    seed: int
    config: str
    quality_metric: str
    shipped_signal: str
    systems: list[SystemRow]
    signal_quality: dict[str, dict[str, float | None]]
    corpus_metrics: dict[str, dict[str, float]]
    curves: dict[str, list[CurvePoint]] = field(default_factory=dict)
    out_dir: str | None = None
    split: str = "all"
    #: the agreement signal of the config's scorer (fed to confidence models)
    agreement_signal: str = "embedding"
    command: str | None = None
    cache_stats: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def row(self, system: str) -> SystemRow:
        for r in self.systems:
            if r.system == system:
                return r
        raise KeyError(system)

    def to_dataframe(self) -> Any:
        """The systems table as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame([asdict(r) for r in self.systems])

    def markdown(self) -> str:
        return render_markdown(self)


def _task_config(cfg: CascadeConfig, task: str) -> CascadeConfig:
    """The config with every tier's generation settings fitted to the task's prompt template."""
    tpl = get_template(task)
    tiers = [t.model_copy(update={"max_tokens": tpl.max_tokens, "stop": list(tpl.stop) or None}) for t in cfg.tiers]
    return cfg.model_copy(update={"tiers": tiers, "system_prompt": None, "answer_format": tpl.answer_format})


def _shipped_signal(cfg: CascadeConfig) -> str:
    """The signal the config itself decides on (its first tier's: :func:`semcascade.step.tier_signal`)."""
    return step.tier_signal(cfg, cfg.tiers[0])


def _agreement_signal(cfg: CascadeConfig) -> str:
    """The agreement signal of the config's scorer (what confidence models' agreement feature reads)."""
    return agreement_signal_for(cfg.scorer.name)


def _shipped_outcomes(records: Sequence[ExampleRecord], cfg: CascadeConfig) -> list[Outcome]:
    """The config's own cascade replayed: its signal, every tier's threshold, its final action and answer."""
    return cascade_outcomes(
        records,
        _shipped_signal(cfg),
        [t.threshold for t in cfg.tiers],
        final_action=cfg.final_action,
        final_answer=cfg.final_answer,
        policy=create_policy(cfg.policy.name, **cfg.policy.options),
    )


def _judge_model(cfg: CascadeConfig) -> str:
    """The NLI judge: the config's llm_judge model, else the strongest tier's first model."""
    if cfg.scorer.name == "llm_judge" and isinstance(cfg.scorer.options.get("model"), str):
        return str(cfg.scorer.options["model"])
    return cfg.tiers[-1].model_list[0]


class _MeteredProvider:
    """Counts what a scorer's calls cost, at the prices of the tier that owns the judge model."""

    def __init__(self, inner: Provider, tier: TierConfig) -> None:
        self.inner, self.tier, self.spent = inner, tier, 0.0

    def spent_so_far(self) -> float:
        return self.spent

    async def complete(self, request: CompletionRequest) -> Completion:
        out = await self.inner.complete(request)
        self.spent += tier_cost(self.tier, request.model, out.prompt_tokens, out.completion_tokens)
        return out


def _judge_kwargs(cascade: Cascade) -> tuple[str, dict[str, Any]]:
    """The NLI judge's model name and the keyword arguments that reach it (a local model resolved)."""
    model = _judge_model(cascade.config)
    if model.startswith(LOCAL_PREFIX):
        resolved = cascade.resolve_model(model)
        return model, {"model": resolved.litellm_model, "api_base": resolved.api_base, "api_key": "local"}
    return model, {"model": model}


async def _summary_hallucination(
    cascade: Cascade,
    provider: Provider,
    records: Sequence[ExampleRecord],
    examples: Sequence[Example],
    cfg: CascadeConfig,
    *,
    progress: bool,
) -> dict[str, float]:
    """Hallucination rate (share of summaries with a sentence the NLI judge finds unsupported by the
    article as the model saw it) of the strong tier alone and of the shipped cascade."""
    from tqdm.auto import tqdm

    from semcascade.evaluation.hallucination import FactualityJudge
    from semcascade.evaluation.prompts import truncate_text

    _, kw = _judge_kwargs(cascade)
    judge = FactualityJudge.from_model(kw.pop("model"), provider=provider, **kw)
    template = get_template("summarization")
    sources = [
        truncate_text(e.input, template.max_input_chars) if template.max_input_chars else e.input for e in examples
    ]
    n_tiers = len(cfg.tiers)
    systems = {
        "strong alone (greedy)": tier_alone(records, n_tiers - 1, mode="greedy"),
        "cascade (shipped)": _shipped_outcomes(records, cfg),
    }
    rates = {}
    for name, outs in systems.items():
        texts = [_text_of(r, o) for r, o in zip(records, outs, strict=True)]
        bar = tqdm(total=len(texts), desc=f"hallucination judge: {name}", unit="summary", disable=not progress)
        try:
            verdicts = await judge.judge_summaries(sources, texts, progress=bar.update)
        finally:
            bar.close()
        rates[name] = sum(v.hallucinated for v in verdicts) / len(verdicts)
    return rates


def _build_signals(cascade: Cascade, names: Sequence[str], provider: Provider) -> list[SignalSpec]:
    """Signal specs for ``names``; the NLI judge's calls are metered at its owning tier's prices."""
    cfg = cascade.config

    def nli() -> SignalSpec:
        model, kw = _judge_kwargs(cascade)
        owner = next((t for t in cfg.tiers if model in t.model_list), cfg.tiers[-1])
        metered = _MeteredProvider(provider, owner)
        judge = CachedScorer(create_scorer("llm_judge", provider=metered, **kw))
        return SignalSpec("nli", judge, cost_meter=metered.spent_so_far, agreement=_agreement_signal(cfg))

    return signal_specs(cfg, names, nli=nli)


def _has_scores(records: Sequence[ExampleRecord], signal: str) -> bool:
    return any(r.tiers[0].scores.get(signal) is not None for r in records)


def _threshold_at_rate(records: Sequence[ExampleRecord], signal: str, rate: float) -> float:
    """The first-tier threshold at which ``signal`` escalates a share ``rate`` of requests."""
    scores = np.array([s for r in records if (s := r.tiers[0].scores.get(signal)) is not None], dtype=float)
    if len(scores) == 0 or rate <= 0:
        return 0.0
    if rate >= 1:
        return 1.0 + 1e-9
    return float(np.quantile(scores, rate, method="higher"))


def _row(
    name: str, outs: list[Outcome], n_tiers: int, base: Any, threshold: float | None = None, *, cascade: bool = True
) -> SystemRow:
    """A system's summary row; single-tier systems have no deferral."""
    s = summarize(outs, n_tiers)
    return SystemRow(
        system=name,
        quality=s.quality,
        cost=s.cost,
        cost_vs_strong=s.cost / base.cost if base.cost else float("nan"),
        latency_mean_s=s.latency_mean,
        latency_p50_s=s.latency_p50,
        latency_p95_s=s.latency_p95,
        latency_vs_strong=s.latency_mean / base.latency_mean if base.latency_mean else float("nan"),
        deferral=s.deferral if cascade else [],
        threshold=threshold,
        failures=s.failures,
        abstentions=s.abstentions,
    )


async def run_eval(
    config: str | os.PathLike[str] | CascadeConfig | None = None,
    *,
    dataset: str = "nq",
    n: int = 100,
    seed: int = 0,
    split: str = "all",
    out_dir: str | os.PathLike[str] | None = None,
    signals: Sequence[str] = ALL_SIGNALS,
    cache_path: str | os.PathLike[str] | None = None,
    concurrency: int = 1,
    progress: bool = True,
    cascade: Cascade | None = None,
    provider: Provider | None = None,
    command: str | None = None,
    hallucination_judge: bool = True,
) -> EvalReport:
    """Evaluate ``config`` on ``n`` examples of ``dataset``; write reports to ``out_dir`` if given.

    Every model call goes through the SQLite response cache at ``cache_path``,
    so a rerun, a wider sweep or a resumed interrupted run pays only for calls
    it has not made before. ``provider`` replaces the real litellm provider
    (tests); ``cascade`` shares an already-started cascade's local server.
    For summarisation, ``hallucination_judge`` also measures the hallucination
    rate of the strong tier and of the shipped cascade with the NLI judge
    (:mod:`semcascade.evaluation.hallucination`; about 3 judge calls per summary).
    """
    started = time.perf_counter()
    unknown = sorted(set(signals) - set(available_signals()))
    if unknown or not signals:
        raise ConfigError(f"unknown deferral signal(s) {unknown}; choose from {', '.join(available_signals())}")
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}")
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    base_cfg = load_config(config) if cascade is None else cascade.config
    has_conf = any(t.confidence_model for t in base_cfg.tiers)
    if "confidence" in signals and not has_conf:
        if tuple(signals) != ALL_SIGNALS:
            raise ConfigError("signal 'confidence' needs a tier with a confidence_model in the config")
        signals = tuple(s for s in signals if s != "confidence")
    shipped = _shipped_signal(base_cfg)
    if shipped not in signals:  # the report always shows the config's own operating point
        signals = (*signals, shipped)
    examples: list[Example] = load_dataset(dataset, n, seed, split)
    task = examples[0].task
    template = get_template(task)
    metrics = get_task_metrics(task)
    cfg = _task_config(base_cfg, task)
    cache = ResponseCache(cache_path or cache_dir() / "responses.sqlite")
    server = cascade.local_server if cascade is not None else None
    # The cascade's own stack (base per tier -> local guard -> retry), under the response cache: every
    # call of the run, the tiers' and the judges', goes through it.
    stack = build_provider_stack(
        cfg, base=provider, cache=cache, local_server=lambda: own.local_server if own is not None else server
    )
    assert stack.cache is not None
    provider = stack.caller
    own: Cascade | None = None
    own = Cascade(cfg, provider=stack, local_server=server, local_api_base=cascade.local_api_base if cascade else None)
    try:
        await asyncio.to_thread(own.prepare)
        records = await collect(own, examples, template.render, concurrency=concurrency, progress=progress)
        by_id = {str(e.id): e for e in examples}
        for rec in records:
            refs = by_id[rec.id].references
            for t in rec.tiers:
                t.sample_quality = [metrics.score(s, refs) for s in t.samples]
                t.greedy_quality = metrics.score(t.greedy or "", refs)
        inputs = {str(e.id): scoring_inputs(template, e) for e in examples}
        questions = {i: q for i, (_, q, _) in inputs.items()}
        prompts = {i: p for i, (_, _, p) in inputs.items()}
        specs = _build_signals(own, signals, provider)
        await score_signals(
            records,
            questions,
            specs,
            cfg.equivalence,
            seed=seed,
            progress=progress,
            prompts=prompts,
            aggregation=cfg.aggregation,
        )
        if cfg.final_answer == "consensus":
            await record_votes(records, questions, own.scorer, cfg)
        halluc: dict[str, float] = {}
        if task == "summarization" and hallucination_judge:
            halluc = await _summary_hallucination(own, provider, records, examples, cfg, progress=progress)
    finally:
        await stack.aclose()  # the stack's HTTP clients of this loop (run_eval_sync's loop ends here)
        if cascade is None:
            await asyncio.to_thread(own.close)
    report = build_report(records, examples, cfg, dataset=dataset, seed=seed, signals=[s.name for s in specs])
    report.config = (
        str(config) if config is not None and not isinstance(config, CascadeConfig) else "configs/local.yaml"
    )
    for system, rate in halluc.items():
        report.corpus_metrics.setdefault(system, {})["hallucination_rate"] = rate
    report.split = split
    report.agreement_signal = _agreement_signal(cfg)
    report.command = command
    report.cache_stats = asdict(stack.cache.stats)
    report.elapsed_s = time.perf_counter() - started
    if out_dir is not None:
        write_outputs(report, records, examples, Path(out_dir))
    return report


def run_eval_sync(config: str | os.PathLike[str] | CascadeConfig | None = None, **kwargs: Any) -> EvalReport:
    """Blocking twin of :func:`run_eval` (its event loop ends with the call; that loop's clients are closed first)."""
    from semcascade._sync import run_sync
    from semcascade.providers import close_loop_clients

    return run_sync(
        lambda: run_eval(config, **kwargs),
        loop_end=close_loop_clients,
        name="run_eval_sync()",
        instead="await run_eval()",
    )


def build_report(
    records: Sequence[ExampleRecord],
    examples: Sequence[Example],
    cfg: CascadeConfig,
    *,
    dataset: str,
    seed: int,
    signals: Sequence[str],
) -> EvalReport:
    task = examples[0].task
    metrics = get_task_metrics(task)
    n_tiers = len(cfg.tiers)
    names = [t.name for t in cfg.tiers]
    shipped = _shipped_signal(cfg)
    if shipped not in signals:
        shipped = signals[0]
    base = summarize(tier_alone(records, n_tiers - 1, mode="greedy"), n_tiers)
    rows: list[SystemRow] = []
    for i, name in enumerate(names):
        rows.append(_row(f"{name} alone (greedy)", tier_alone(records, i, mode="greedy"), n_tiers, base, cascade=False))
        if cfg.tiers[i].k > 1:
            outs = tier_alone(records, i, mode="consensus", signal=shipped)
            rows.append(_row(f"{name} alone (best-of-{cfg.tiers[i].k}, {shipped})", outs, n_tiers, base, cascade=False))
    shipped_th = [t.threshold for t in cfg.tiers[:-1]]
    shipped_outs = (
        _shipped_outcomes(records, cfg)
        if shipped == _shipped_signal(cfg)
        else cascade_outcomes(records, shipped, shipped_th)
    )
    rows.append(
        _row(
            f"cascade: {shipped} (shipped thresholds)",
            shipped_outs,
            n_tiers,
            base,
            shipped_th[0] if shipped_th else None,
        )
    )
    rate = summarize(shipped_outs, n_tiers).deferral
    first_rate = rate[0] if rate else 0.0
    for sig in signals:
        if sig in (shipped, "random") or not _has_scores(records, sig):
            continue  # a signal with no scores (an agreement signal on a one-sample tier) has no cascade
        th = _threshold_at_rate(records, sig, first_rate)
        outs = cascade_outcomes(records, sig, [th] * (n_tiers - 1))
        rows.append(_row(f"cascade: {sig} (same deferral rate)", outs, n_tiers, base, th))
    if "random" in signals and n_tiers >= 2:
        th = _threshold_at_rate(records, "random", first_rate)
        outs = cascade_outcomes(records, "random", [th] * (n_tiers - 1))
        rows.append(_row("cascade: random deferral (same rate)", outs, n_tiers, base, th))
    rows.append(_row(f"oracle deferral ({names[0]} -> {names[-1]})", oracle_outcomes(records, shipped), n_tiers, base))

    # How well each signal predicts that the first tier's consensus answer is right.
    signal_quality: dict[str, dict[str, float | None]] = {}
    for sig in signals:
        xs, ys = [], []
        for r in records:
            t = r.tiers[0]
            s = t.scores.get(sig)
            if s is None:
                continue
            q = t.sample_quality[t.consensus.get(sig, 0)]
            label = q >= 0.5 if task in ("qa", "rc", "math") else q >= (r.tiers[-1].greedy_quality or 0.0)
            xs.append(s)
            ys.append(bool(label))
        signal_quality[sig] = {
            "auroc": auroc(xs, ys),
            "auprc": average_precision(xs, ys),
            "positive_rate": float(np.mean(ys)) if ys else None,
        }

    corpus: dict[str, dict[str, float]] = {}
    for system, outs in (
        ("strong alone (greedy)", tier_alone(records, n_tiers - 1, mode="greedy")),
        ("cascade (shipped)", shipped_outs),
    ):
        preds = [_text_of(r, o) for r, o in zip(records, outs, strict=True)]
        corpus[system] = metrics.evaluate(preds, [e.references for e in examples])
        if task in ("qa", "rc"):  # answered (never abstained here) and matching no reference
            wrong = hallucination_rate_qa(preds, [e.references for e in examples])
            if wrong is not None:
                corpus[system]["hallucination_rate"] = wrong
    curves = {sig: sweep(records, sig) for sig in signals if sig != "random"}
    if n_tiers == 2 and "random" in signals:
        curves["random"] = random_curve(records, shipped)
    return EvalReport(
        dataset=dataset,
        task=task,
        n=len(records),
        seed=seed,
        config="",
        quality_metric=metrics.headline,
        shipped_signal=shipped,
        systems=rows,
        signal_quality=signal_quality,
        corpus_metrics=corpus,
        curves=curves,
    )


def _text_of(rec: ExampleRecord, o: Outcome) -> str:
    t = rec.tiers[o.tier if o.answer_tier is None else o.answer_tier]
    if o.answer_index is None:
        return t.greedy or ""
    return t.samples[o.answer_index]


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, fmt)


def _split_note(split: str) -> str:
    return "" if split == "all" else f", {split} split"


def render_markdown(rep: EvalReport) -> str:
    lines = [
        f"# {rep.dataset}: {rep.n} examples (seed {rep.seed}{_split_note(rep.split)}), config `{rep.config}`",
        "",
        f"Quality metric: **{rep.quality_metric}**. Costs are the config's prices (nominal for local models); "
        "ratios are against the strong tier alone (greedy) on the same examples.",
    ]
    if rep.command:
        lines += ["", f"Command: `{rep.command}`"]
    lines += [
        "",
        "| system | quality | cost / strong | mean latency s | p95 s | latency / strong | deferral | threshold |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rep.systems:
        d = ", ".join(f"{x:.2f}" for x in r.deferral) or "-"
        lines.append(
            f"| {r.system} | {r.quality:.3f} | {_f(r.cost_vs_strong, '.2f')} | {r.latency_mean_s:.2f} | "
            f"{r.latency_p95_s:.2f} | {_f(r.latency_vs_strong, '.2f')} | {d} | {_f(r.threshold)} |"
        )
    failed = [r for r in rep.systems if r.failures or r.abstentions]
    if failed:
        lines += ["", "Failures (no answer: every call of the answering tier failed; not scored) and abstentions:", ""]
        lines += [f"- {r.system}: {r.failures} failed, {r.abstentions} abstained" for r in failed]
    lines += ["", "Deferral signals: how well the first tier's agreement predicts that its answer is right.", ""]
    lines += ["| signal | AUROC | AUPRC | share right |", "|---|---|---|---|"]
    for sig, v in rep.signal_quality.items():
        lines.append(f"| {sig} | {_f(v['auroc'])} | {_f(v['auprc'])} | {_f(v['positive_rate'])} |")
    lines += ["", "Corpus metrics:", ""]
    for label, m in rep.corpus_metrics.items():
        lines.append(f"- {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()))
    if rep.cache_stats:
        cs = rep.cache_stats
        lines += ["", f"Response cache: {cs.get('paid_calls', 0)} paid calls, {cs.get('hits', 0)} hits."]
    return "\n".join(lines) + "\n"


def write_outputs(rep: EvalReport, records: Sequence[ExampleRecord], examples: Sequence[Example], out: Path) -> None:
    """Per-example JSONL, summary CSV, JSON, markdown report and PNG plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    # Ids and model outputs only: the dataset's own text (questions, passages, references) is not copied, so
    # a run can be committed and shared; loaders re-read it from the dataset by id (report.json names it).
    with (out / "examples.jsonl").open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps({"id": rec.id, "tiers": [asdict(t) for t in rec.tiers]}, ensure_ascii=False) + "\n")
    with (out / "summary.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["system", "quality", "cost", "cost_vs_strong", "latency_mean_s", "latency_p50_s", "latency_p95_s",
                    "latency_vs_strong", "deferral", "threshold"])  # fmt: skip
        for r in rep.systems:
            deferral = ";".join(f"{x:.4f}" for x in r.deferral)
            w.writerow([r.system, r.quality, r.cost, r.cost_vs_strong, r.latency_mean_s, r.latency_p50_s,
                        r.latency_p95_s, r.latency_vs_strong, deferral, r.threshold])  # fmt: skip
    payload = asdict(rep)
    payload["machine"] = platform.platform()
    (out / "report.json").write_text(json.dumps(payload, indent=1, default=float))
    (out / "report.md").write_text(rep.markdown() + _plot_links())
    base = rep.systems[0]
    # the strong tier alone is the cost baseline (without prices every cost is 0: fall back to the first row)
    strong = next((r for r in rep.systems if r.cost_vs_strong == 1.0 and "greedy" in r.system), base)
    points = {r.system: (r.cost, r.quality) for r in rep.systems if "same deferral rate" not in r.system}
    title = f"{rep.dataset} (n={rep.n})"
    plot_frontier(out / "frontier.png", rep.curves, points, baseline_cost=strong.cost or 1.0, title=title,
                  quality_label=rep.quality_metric)  # fmt: skip
    plot_deferral(out / "deferral.png", {k: v for k, v in rep.curves.items() if k != "random"}, title=title)
    scores = {
        sig: [s for r in records if (s := r.tiers[0].scores.get(sig)) is not None]
        for sig in rep.signal_quality
        if sig != "random"
    }
    correct = [r.tiers[0].sample_quality[r.tiers[0].consensus.get(rep.shipped_signal, 0)] for r in records]
    plot_reliability(out / "reliability.png", {rep.shipped_signal: scores.get(rep.shipped_signal, [])}, correct,
                     title=f"{title}: reliability of {rep.shipped_signal} agreement")  # fmt: skip


def _plot_links() -> str:
    return (
        "\n![cost-quality frontier](frontier.png)\n\n![deferral vs threshold](deferral.png)\n\n"
        "![reliability](reliability.png)\n"
    )
