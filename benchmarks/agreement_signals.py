"""Agreement-signal quality, scoring overhead and end-to-end cascade vs strong tier.

On N Natural Questions (open) test questions with the cheap tier of
configs/local.yaml at k=5:

1. samples the cheap tier once per question (timed) and keeps the samples;
2. scores the same samples with every scorer (timed), and reports the AUROC of
   each scorer's agreement for predicting that the tier's consensus answer is
   correct (SQuAD-normalised reference contained in the answer), and the
   scoring time as a fraction of the tier's generation time;
3. runs the real cascade and the strong tier alone on the same questions
   (accuracy, cost, latency).

Writes benchmarks/results/agreement_signals.{json,csv} and benchmarks/results/agreement_signals.md,
and a fixture of real samples for the scorer tests.

    .venv/bin/python benchmarks/agreement_signals.py --n 200
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from semcascade import Cascade, create_scorer, load_config
from semcascade.aggregation import consensus, pair_indices
from semcascade.config import CascadeConfig
from semcascade.demo import strong_only_config
from semcascade.evaluation.collect import LatencyRecorder, timed_sample
from semcascade.evaluation.datasets import QAExample, load_open_qa
from semcascade.evaluation.metrics import auroc
from semcascade.local.paths import cache_dir
from semcascade.providers import LiteLLMProvider
from semcascade.response_cache import CachingProvider, ResponseCache
from semcascade.scoring.base import AgreementScorer
from semcascade.scoring.cache import CachedScorer
from semcascade.text import contains_answer

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
FIXTURE = ROOT / "tests" / "fixtures" / "nq_smollm2_samples.json"
QA_SYSTEM = "Answer the question with a short answer of a few words only."


@dataclass
class Row:
    ex: QAExample
    samples: list[str]
    mean_logprobs: list[float | None]
    gen_s: float
    signals: dict[str, float] = field(default_factory=dict)
    correct: dict[str, bool] = field(default_factory=dict)
    score_s: dict[str, float] = field(default_factory=dict)


def qa_config(path: str | None) -> CascadeConfig:
    cfg = load_config(path)
    return cfg.model_copy(update={"system_prompt": QA_SYSTEM})


def scorer_specs(judge_model: str) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        "embedding (onnx)": ("embedding", {"backend": "onnx", "question_mode": "ignore"}),
        "embedding (onnx, strip question)": ("embedding", {"backend": "onnx", "question_mode": "strip"}),
        "embedding (sentence-transformers)": (
            "embedding",
            {"backend": "sentence-transformers", "question_mode": "ignore"},
        ),
        "lexical rouge-L (strip question)": ("lexical", {"metric": "rouge_l", "question_mode": "strip"}),
        "lexical token-F1 (strip question)": ("lexical", {"metric": "token_f1", "question_mode": "strip"}),
        "nli: llm judge (qwen2.5-coder-1.5b)": ("llm_judge", {"model": judge_model}),
    }


async def sample_all(cascade: Cascade, data: list[QAExample]) -> list[Row]:
    tier = cascade.tiers[0]
    rows = []
    for ex in tqdm(data, desc=f"sampling {tier.config.name} k={tier.config.k}", unit="q"):
        messages = [{"role": "system", "content": QA_SYSTEM}, {"role": "user", "content": ex.question}]
        # generation time of the paid call (replayed from the response cache on reruns)
        drawn, gen_s = await timed_sample(tier, messages, LatencyRecorder(cascade.provider))
        rows.append(Row(ex, [s.text for s in drawn.samples], [s.mean_logprob for s in drawn.samples], gen_s))
    return rows


async def score_all(rows: list[Row], name: str, scorer: AgreementScorer, cfg: CascadeConfig) -> None:
    for r in tqdm(rows, desc=f"scoring: {name}", unit="q"):
        n = len(r.samples)
        t0 = time.perf_counter()
        js = await scorer.judge(r.ex.question, [(r.samples[a], r.samples[b]) for a, b in pair_indices(n)])
        cons = consensus(n, js, cfg.equivalence, "mean_pairwise")
        r.score_s[name] = time.perf_counter() - t0
        r.signals[name] = float(cons.score or 0.0)
        r.signals[name + " [largest cluster]"] = len(cons.clusters[0]) / n
        r.correct[name] = contains_answer(r.samples[cons.representative], r.ex.answers)
        r.correct[name + " [largest cluster]"] = r.correct[name]


async def end_to_end(cfg: CascadeConfig, cascade: Cascade, data: list[QAExample]) -> dict[str, Any]:
    # fresh, uncached calls: end-to-end latency must be real
    cascade = Cascade(cfg, local_server=cascade.local_server)
    strong = Cascade(strong_only_config(cfg, fresh_prompt_cache=True), local_server=cascade.local_server)
    out: dict[str, Any] = {}
    for label, c in (("cascade", cascade), ("strong alone", strong)):
        correct, cost, lat, esc = [], [], [], []
        for ex in tqdm(data, desc=f"end to end: {label}", unit="q"):
            r = await c.generate(ex.question)
            correct.append(contains_answer(r.text, ex.answers))
            cost.append(r.cost)
            lat.append(r.latency_s)
            esc.append(r.escalated)
        out[label] = {
            "accuracy": statistics.fmean(correct),
            "cost": sum(cost),
            "latency_mean_s": statistics.fmean(lat),
            "latency_total_s": sum(lat),
            "escalation_rate": statistics.fmean(esc),
        }
    base = out["strong alone"]
    out["cascade"]["cost_ratio"] = out["cascade"]["cost"] / base["cost"]
    out["cascade"]["latency_ratio"] = out["cascade"]["latency_total_s"] / base["latency_total_s"]
    return out


def signal_table(rows: list[Row], signals: list[str], subset: str) -> list[dict[str, Any]]:
    table = []
    for s in signals:
        have = [r for r in rows if s in r.signals]
        if len(have) < len(rows):
            continue
        labels = [r.correct[s] for r in have]
        base_name = s.replace(" [largest cluster]", "")
        timed = [r.score_s[base_name] / r.gen_s for r in have if base_name in r.score_s and r.gen_s > 0]
        table.append(
            {
                "questions": subset,
                "signal": s,
                "auroc": auroc([r.signals[s] for r in have], labels),
                "accuracy_of_consensus": statistics.fmean(labels),
                "scoring_s_per_query": statistics.fmean(r.score_s[base_name] for r in have) if timed else 0.0,
                "overhead_vs_generation": statistics.fmean(timed) if timed else None,
            }
        )
    return table


def write_fixture(rows: list[Row], n: int = 30) -> None:
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    data = [{"question": r.ex.question, "answers": list(r.ex.answers), "samples": r.samples} for r in rows[:n]]
    FIXTURE.write_text(json.dumps({"model": "smollm2-135m", "k": 5, "items": data}, indent=1, ensure_ascii=False))


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument(
        "--judge-n",
        type=int,
        default=40,
        help="questions scored by the LLM judge (it costs ~20 s/query here; the other scorers see all N)",
    )
    ap.add_argument(
        "--only-e2e", action="store_true", help="re-measure only the end-to-end table of an existing results file"
    )
    args = ap.parse_args()

    cfg = qa_config(args.config)
    data = load_open_qa("nq", "test", args.n, seed=args.seed)
    if args.only_e2e:
        result = json.loads((OUT / "agreement_signals.json").read_text())
        with Cascade(cfg) as cascade:
            cascade.prepare()
            result["end_to_end"] = await end_to_end(cfg, cascade, data)
        result["command_end_to_end"] = "python benchmarks/agreement_signals.py " + " ".join(sys.argv[1:])
        (OUT / "agreement_signals.json").write_text(json.dumps(result, indent=2))
        (OUT / "agreement_signals.md").write_text(render_md(result))
        print(render_md(result))
        return 0
    cache = ResponseCache(cache_dir() / "responses.sqlite")
    with Cascade(cfg, provider=CachingProvider(LiteLLMProvider(), cache)) as cascade:
        cascade.prepare()
        rows = await sample_all(cascade, data)
        judge_model = "openai/" + cfg.tiers[-1].model_list[0].removeprefix("local/")
        for name, (kind, opts) in scorer_specs(judge_model).items():
            if kind == "llm_judge":
                opts = {**opts, "api_base": cascade.local_api_base, "api_key": "local"}
            # as in the cascade: identical answers short-cut, repeated pairs cached
            scorer = CachedScorer(create_scorer(kind, **opts))
            await score_all(rows[: args.judge_n] if kind == "llm_judge" else rows, name, scorer, cfg)
        # token-probability baseline: mean log-probability of the samples
        for r in rows:
            lps = [x for x in r.mean_logprobs if x is not None]
            r.signals["mean token logprob (baseline)"] = statistics.fmean(lps) if lps else float("-inf")
            r.correct["mean token logprob (baseline)"] = r.correct["embedding (onnx)"]
        e2e = None if args.skip_e2e else await end_to_end(cfg, cascade, data)

    table = signal_table(rows, list(rows[0].signals), f"all {len(rows)}")
    judged = [r for r in rows if any("llm judge" in k for k in r.signals)]
    if judged and len(judged) < len(rows):
        table += signal_table(judged, list(judged[0].signals), f"first {len(judged)} (judge subset)")
    gen = statistics.fmean(r.gen_s for r in rows)
    result = {
        "benchmark": "agreement_signals",
        "command": "python benchmarks/agreement_signals.py " + " ".join(sys.argv[1:]),
        "dataset": f"NQ-open test, n={len(rows)}, seed={args.seed}",
        "cheap_tier": cfg.tiers[0].model_dump(include={"name", "model", "k", "temperature", "max_tokens"}),
        "generation_s_per_query": gen,
        "machine": platform.platform(),
        "signals": table,
        "end_to_end": e2e,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "agreement_signals.json").write_text(json.dumps(result, indent=2))
    with (OUT / "agreement_signals.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    (OUT / "agreement_signals.md").write_text(render_md(result))
    write_fixture(rows)
    print(render_md(result))
    return 0


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def render_md(res: dict[str, Any]) -> str:
    lines = [
        f"# Agreement signals — {res['dataset']}",
        "",
        f"Cheap tier: `{res['cheap_tier']['model']}`, k={res['cheap_tier']['k']}, "
        f"temperature {res['cheap_tier']['temperature']}; generation {res['generation_s_per_query']:.2f} s/query.",
        f"Command: `{res['command']}`"
        + (f"; end-to-end table: `{res['command_end_to_end']}`" if res.get("command_end_to_end") else ""),
        "",
        "| questions | signal | AUROC (consensus answer correct) | consensus accuracy | scoring s/query "
        "| scoring / generation time |",
        "|---|---|---|---|---|---|",
    ]
    for row in res["signals"]:
        lines.append(
            f"| {row['questions']} | {row['signal']} | {_f(row['auroc'])} | {_f(row['accuracy_of_consensus'])} | "
            f"{_f(row['scoring_s_per_query'], '.4f')} | {_f(row['overhead_vs_generation'], '.1%')} |"
        )
    e2e = res.get("end_to_end")
    if e2e:
        lines += [
            "",
            "## End to end (same questions)",
            "",
            "| system | accuracy | cost (nominal) | cost / strong | mean latency s | latency / strong "
            "| escalation rate |",
            "|---|---|---|---|---|---|---|",
        ]
        base = e2e["strong alone"]
        for name, v in e2e.items():
            lines.append(
                f"| {name} | {v['accuracy']:.3f} | {v['cost']:.4f} | {v['cost'] / base['cost']:.2f} | "
                f"{v['latency_mean_s']:.2f} | {v['latency_total_s'] / base['latency_total_s']:.2f} | "
                f"{v['escalation_rate']:.2f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
