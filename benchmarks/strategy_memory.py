"""Inter-Cascade strategy memory vs the plain cascade on an ordered stream of questions.

The same questions, in the same order, go through (1) the plain cascade and
(2) the same cascade with strategy memory (a fresh store per run). Per window
of questions it reports the cheap tier's accuracy (its consensus answer,
whether or not the cascade accepted it), the strong-tier call rate, the
system's accuracy and its cost, plus how many strategies were learned and
injected. Both systems share a response cache, so a cheap-tier prompt without
injected strategies is the same draw for both (the comparison isolates the
strategies' effect).

Writes benchmarks/results/strategy_memory_DATASET.{json,md}.

Real run (the lead runs it; the local llama-server is started or reused):

    .venv/bin/python benchmarks/strategy_memory.py --dataset trivia --n 200 --window 50

(``.venv`` has semcascade installed in editable mode from the repository root; from another
checkout prefix ``PYTHONPATH=.``.) Smoke run without any model (a MockProvider whose cheap tier answers right only
when a strategy is in its prompt; writes to benchmarks/results/strategy_memory_mock.*):

    .venv/bin/python benchmarks/strategy_memory.py --mock --n 12 --window 4
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _report import write_report

from semcascade import Cascade, CascadeFailedError, MockProvider, load_config
from semcascade.config import CascadeConfig
from semcascade.evaluation.datasets import Example, load_dataset
from semcascade.evaluation.prompts import get_template
from semcascade.evaluation.quality import get_task_metrics
from semcascade.local.paths import cache_dir
from semcascade.memory import MemoryConfig
from semcascade.memory.prompts import STRATEGY_SYSTEM_PROMPT
from semcascade.providers import Completion, CompletionRequest, LiteLLMProvider, Provider
from semcascade.response_cache import CachingProvider, ResponseCache

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"


@dataclass
class Step:
    """One question through one system."""

    index: int
    id: str
    cheap_quality: float
    system_quality: float
    strong_called: bool
    cost: float
    memory_cost: float
    injected: int
    learned: bool
    failed: bool = False
    #: wall time of the call, strategy learning included (a response served from the cache takes ~0 s)
    latency_s: float = 0.0


def task_config(cfg: CascadeConfig, task: str, memory: MemoryConfig) -> CascadeConfig:
    """The config with the task's generation settings (as the eval harness does) and ``memory``."""
    tpl = get_template(task)
    tiers = [t.model_copy(update={"max_tokens": tpl.max_tokens, "stop": list(tpl.stop) or None}) for t in cfg.tiers]
    update = {"tiers": tiers, "system_prompt": None, "memory": memory, "answer_format": tpl.answer_format}
    return cfg.model_copy(update=update)


async def run_stream(cascade: Cascade, examples: list[Example], task: str, label: str) -> list[Step]:
    metrics = get_task_metrics(task)
    tpl = get_template(task)
    steps: list[Step] = []
    for i, ex in enumerate(examples):
        try:
            r = await cascade.generate(tpl.render(ex))
        except CascadeFailedError as exc:
            print(f"[{label}] {ex.id}: no answer ({exc})", file=sys.stderr)
            steps.append(Step(i, str(ex.id), 0.0, 0.0, True, 0.0, 0.0, 0, False, failed=True))
            continue
        cheap = r.trace[0].answer or ""
        mem = r.memory
        steps.append(
            Step(
                index=i,
                id=str(ex.id),
                cheap_quality=metrics.score(cheap, ex.references),
                system_quality=metrics.score(r.text, ex.references),
                strong_called=r.tier_index == len(cascade.config.tiers) - 1 and r.escalated,
                cost=r.cost,
                memory_cost=0.0 if mem is None else mem.cost,
                injected=0 if mem is None or mem.injected_into is None else len(mem.retrieved),
                learned=bool(mem and mem.learned),
                latency_s=r.latency_s,
            )
        )
        if (i + 1) % 10 == 0:
            print(f"[{label}] {i + 1}/{len(examples)}", file=sys.stderr)
    return steps


def windows(steps: list[Step], size: int) -> list[dict[str, Any]]:
    out = []
    for start in range(0, len(steps), size):
        w = steps[start : start + size]
        n = len(w)
        out.append(
            {
                "questions": f"{start + 1}-{start + n}",
                "n": n,
                "cheap_accuracy": sum(s.cheap_quality for s in w) / n,
                "system_accuracy": sum(s.system_quality for s in w) / n,
                "strong_call_rate": sum(s.strong_called for s in w) / n,
                "cost": sum(s.cost for s in w),
                "memory_cost": sum(s.memory_cost for s in w),
                "injected_share": sum(s.injected > 0 for s in w) / n,
                "learned": sum(s.learned for s in w),
                "failed": sum(s.failed for s in w),
                "latency_mean_s": sum(s.latency_s for s in w) / n,
            }
        )
    return out


def totals(steps: list[Step]) -> dict[str, Any]:
    return windows(steps, max(1, len(steps)))[0] if steps else {}


# --------------------------------------------------------------------------- mock models


def mock_examples(n: int) -> list[Example]:
    topics = ["capital city of country", "author of novel", "chemical symbol of element", "year of battle"]
    return [
        Example(id=f"mock-{i}", task="qa", input=f"What is the {topics[i % 4]} number {i}?", references=(f"ans{i}",))
        for i in range(n)
    ]


def mock_provider() -> Provider:
    """Strong answers right; the cheap tier disagrees (and is wrong) unless a strategy is in its prompt."""

    def handle(req: CompletionRequest) -> Completion:
        system = str(next((m["content"] for m in req.messages if m["role"] == "system"), ""))
        user = str(req.messages[-1]["content"])
        number = "".join(c for c in user.split("number")[-1] if c.isdigit())
        if system == STRATEGY_SYSTEM_PROMPT:
            topic = user.split("What is the ")[-1].split(" number")[0]
            return MockProvider.texts(req.model, [f"Recall the {topic} carefully and answer with the name only."])
        if "strong" in req.model or "Strategies that helped" in system:
            return MockProvider.texts(req.model, [f"ans{number}"] * req.n)
        return MockProvider.texts(req.model, ["banana", "tractor", "velvet", "orbit", "lantern"][: req.n])

    return MockProvider(handle)


MOCK_CONFIG: dict[str, Any] = {
    "scorer": {"name": "lexical"},
    "equivalence": {"rule": "bidirectional", "threshold": 0.8},
    "tiers": [
        {"name": "cheap", "model": "openai/mock-cheap", "k": 5, "threshold": 0.8, "input_cost_per_token": 1e-7,
         "output_cost_per_token": 1e-7},
        {"name": "strong", "model": "openai/mock-strong", "k": 1, "temperature": 0.0, "input_cost_per_token": 1.5e-6,
         "output_cost_per_token": 1.5e-6},
    ],
}  # fmt: skip


# --------------------------------------------------------------------------- report


def markdown(report: dict[str, Any]) -> str:
    ms = report["memory_settings"]
    lines = [
        "# Strategy memory (Inter-Cascade) vs the plain cascade",
        "",
        f"Dataset `{report['dataset']}`, {report['n']} questions in a fixed order (seed {report['seed']}), "
        f"config `{report['config']}`{' (MOCK models)' if report['mock'] else ''}; memory: "
        f"top_k {ms['top_k']}, min_similarity {ms['min_similarity']}, dedup {ms['dedup_similarity']}, "
        f"min_agreement_to_learn {ms['min_agreement_to_learn']}, skip_learning_above "
        f"{ms.get('skip_learning_above')}, fresh store per run.",
        "",
        f"Command: `{report['command']}`",
        "",
        "| system | questions | cheap-tier accuracy | system accuracy | strong-call rate | cost | "
        "of which strategy calls | prompts with strategies | learned | mean wall time, s (a cached call takes ~0) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("plain", "with_memory"):
        for w in [*report[name]["windows"], {**report[name]["total"], "questions": "**all**"}]:
            lines.append(
                f"| {name} | {w['questions']} | {w['cheap_accuracy']:.3f} | {w['system_accuracy']:.3f} | "
                f"{w['strong_call_rate']:.3f} | {w['cost']:.4g} | {w['memory_cost']:.3g} | "
                f"{w['injected_share']:.2f} | {w['learned']} | {w.get('latency_mean_s', float('nan')):.2f} |"
            )
    p, m = report["plain"]["total"], report["with_memory"]["total"]
    if p and m:
        lines += [
            "",
            f"Overall: cheap-tier accuracy {p['cheap_accuracy']:.3f} -> {m['cheap_accuracy']:.3f} "
            f"({100 * (m['cheap_accuracy'] - p['cheap_accuracy']):+.1f} points); strong-call rate "
            f"{p['strong_call_rate']:.3f} -> {m['strong_call_rate']:.3f}; cost {p['cost']:.4g} -> {m['cost']:.4g} "
            f"({100 * (m['cost'] / p['cost'] - 1) if p['cost'] else 0.0:+.1f}%, strategy calls included).",
        ]
    lines += ["", f"Elapsed {report['elapsed_s']:.0f} s on {report['machine']}.", ""]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    memory = MemoryConfig(
        enabled=True,
        store="sqlite",
        path=str(Path(args.workdir) / "strategies.sqlite"),
        top_k=args.top_k,
        min_similarity=args.min_similarity,
        min_agreement_to_learn=args.min_agreement,
        skip_learning_above=args.skip_learning_above,
    )
    if args.mock:
        base = load_config(MOCK_CONFIG)
        examples = mock_examples(args.n)
        inner: Provider = mock_provider()
        task = "qa"
    else:
        base = load_config(args.config)
        examples = load_dataset(args.dataset, n=args.n, seed=args.seed)
        inner = LiteLLMProvider()
        task = examples[0].task
    cache = ResponseCache(args.cache or (Path(args.workdir) / "responses.sqlite" if args.mock else None)
                          or cache_dir() / "responses.sqlite")  # fmt: skip
    provider = CachingProvider(inner, cache)
    plain_cfg = task_config(base, task, MemoryConfig())
    mem_cfg = task_config(base, task, memory)
    t0 = time.perf_counter()
    with Cascade(plain_cfg, provider=provider) as plain:
        await asyncio.to_thread(plain.prepare)
        plain_steps = await run_stream(plain, examples, task, "plain")
        server = plain.local_server
        with_memory = Cascade(mem_cfg, provider=provider, local_server=server)
        await asyncio.to_thread(with_memory.prepare)
        memory_steps = await run_stream(with_memory, examples, task, "memory")
        if with_memory.memory is not None:
            with_memory.memory.close()
    cache.close()
    return {
        "dataset": "mock" if args.mock else args.dataset,
        "mock": bool(args.mock),
        "n": len(examples),
        "seed": args.seed,
        "window": args.window,
        "config": "mock" if args.mock else (args.config or "configs/local.yaml"),
        "memory_settings": memory.model_dump(exclude={"path"}),
        "command": "python benchmarks/strategy_memory.py " + " ".join(sys.argv[1:]),
        "plain": {"windows": windows(plain_steps, args.window), "total": totals(plain_steps)},
        "with_memory": {"windows": windows(memory_steps, args.window), "total": totals(memory_steps)},
        "steps": {"plain": [asdict(s) for s in plain_steps], "with_memory": [asdict(s) for s in memory_steps]},
        "elapsed_s": time.perf_counter() - t0,
        "machine": platform.platform(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="trivia", help="trivia, nq or halueval_qa")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--config", default=None, help="cascade YAML (default: the embedded local config)")
    ap.add_argument("--cache", default=None, help="response cache (default: the eval cache in the cache dir)")
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--min-similarity", type=float, default=0.5)
    ap.add_argument("--min-agreement", type=float, default=0.8)
    ap.add_argument(
        "--skip-learning-above", type=float, default=None, help="don't learn on questions a stored strategy covers"
    )
    ap.add_argument("--mock", action="store_true", help="no models: a MockProvider stream (smoke test)")
    ap.add_argument(
        "--out", default=None, help="output stem (default: benchmarks/results/strategy_memory_DATASET, or _mock)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="semcascade-memory-") as workdir:
        args.workdir = workdir
        report = asyncio.run(main_async(args))
    write_report(
        Path(args.out) if args.out else OUT / f"strategy_memory_{'mock' if args.mock else args.dataset}",
        report,
        markdown,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
