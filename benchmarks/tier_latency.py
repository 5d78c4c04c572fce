"""Same-session latency of each building block of the methods table, real calls, no caches.

Recorded runs replay the latency each call had when it was first paid, and the
runs behind ``benchmarks/methods_table.py`` were paid in different sessions under
different machine load, so their latencies do not compare. This script times
every block on the same questions in one session, alternating block by block
(one request in flight, no response cache, llama-server prompt cache off):

* ``cheap``            the shipped cheap tier alone (0.5B greedy, fitted confidence),
* ``cheap_agreement``  the agreement cheap tier alone (0.5B, greedy + 4 samples, embedding agreement),
* ``strong``           the strong tier alone (1.5B greedy),
* ``strategy``         one strategy-memory learning call (the 1.5B writing a strategy for the question).

    .venv/bin/python benchmarks/tier_latency.py --datasets nq,trivia --limit 30

Writes benchmarks/results/tier_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import write_report
from tqdm.auto import tqdm

from semcascade import Cascade, CascadeConfig, load_config
from semcascade.evaluation.datasets import load_dataset
from semcascade.evaluation.prompts import get_template
from semcascade.memory import MemoryConfig
from semcascade.memory.prompts import strategy_messages

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
BLOCKS = ("cheap", "cheap_agreement", "strong", "strategy")


def _prepared(cfg: CascadeConfig, task: str) -> CascadeConfig:
    """As the harness runs it: the task's generation settings, the llama-server prompt cache off."""
    tpl = get_template(task)
    tiers = [
        t.model_copy(
            update={
                "max_tokens": tpl.max_tokens,
                "stop": list(tpl.stop) or None,
                "litellm_params": {**t.litellm_params, "extra_body": {"cache_prompt": False}},
            }
        )
        for t in cfg.tiers
    ]
    return cfg.model_copy(update={"tiers": tiers, "system_prompt": None, "answer_format": tpl.answer_format})


def _one(cfg: CascadeConfig, index: int, **update: Any) -> CascadeConfig:
    return cfg.model_copy(update={"tiers": [cfg.tiers[index].model_copy(update=update)]})


def run(dataset: str, limit: int, n: int, seed: int) -> dict[str, Any]:
    examples = load_dataset(dataset, n, seed, "test")[:limit]
    task = examples[0].task
    tpl = get_template(task)
    shipped = _prepared(load_config(None), task)
    agreement = _prepared(load_config(ROOT / "eval" / "configs" / "agreement-k5.yaml"), task)
    mem = MemoryConfig()
    times: dict[str, list[float]] = {b: [] for b in BLOCKS}
    with Cascade(_one(shipped, 0)) as cheap:
        cheap.prepare()
        server = cheap.local_server
        agree = Cascade(_one(agreement, 0), local_server=server)
        strong = Cascade(_one(shipped, -1), local_server=server)
        teacher = Cascade(
            _one(shipped, -1, max_tokens=mem.strategy_max_tokens, stop=None, logprobs=False,
                 temperature=mem.strategy_temperature),
            local_server=server,
        )  # fmt: skip
        for c in (agree, strong, teacher):
            c.prepare()
        for ex in tqdm(examples, desc=f"{dataset}: timing blocks", unit="q"):
            msgs = tpl.render(ex)
            answer = ""
            for block, cascade in (("cheap", cheap), ("cheap_agreement", agree), ("strong", strong)):
                t0 = time.perf_counter()
                r = cascade.generate_sync(msgs)
                times[block].append(time.perf_counter() - t0)
                answer = r.text
            t0 = time.perf_counter()
            teacher.generate_sync(strategy_messages(ex.input, answer))
            times["strategy"].append(time.perf_counter() - t0)
        for c in (agree, strong, teacher):
            c.close()
    return {
        "dataset": dataset,
        "n": len(examples),
        "mean_s": {b: float(np.mean(v)) for b, v in times.items()},
        "p50_s": {b: float(np.percentile(v, 50)) for b, v in times.items()},
        "relative_to_strong": {b: float(np.mean(v) / np.mean(times["strong"])) for b, v in times.items()},
        "times_s": times,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Same-session latency of each block (real calls, no caches)",
        "",
        f"Command: `{report['command']}`. Blocks alternate question by question, one request in flight.",
        "",
        "| dataset | questions | " + " | ".join(f"{b} mean s (x strong)" for b in BLOCKS) + " |",
        "|---|---|" + "---|" * len(BLOCKS),
    ]
    for d in report["datasets"]:
        cells = [f"{d['mean_s'][b]:.2f} ({d['relative_to_strong'][b]:.2f})" for b in BLOCKS]
        lines.append(f"| {d['dataset']} | {d['n']} | " + " | ".join(cells) + " |")
    lines += ["", f"Elapsed {report['elapsed_s']:.0f} s on {report['machine']}.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="nq,trivia")
    ap.add_argument("--limit", type=int, default=30, help="questions timed per dataset (from the test split)")
    ap.add_argument("--n", type=int, default=500, help="the seeded draw the questions come from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT / "tier_latency"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    datasets = [run(d.strip(), args.limit, args.n, args.seed) for d in args.datasets.split(",")]
    report = {
        "command": "python benchmarks/tier_latency.py " + " ".join(sys.argv[1:]),
        "datasets": datasets,
        "elapsed_s": time.perf_counter() - t0,
        "machine": platform.platform(),
    }
    write_report(Path(args.out), report, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
