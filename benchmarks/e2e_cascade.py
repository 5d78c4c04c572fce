"""End to end, real calls: the shipped cascade against the strong tier alone, on the same questions, same run.

No response cache: every request is a real model call, timed by the cascade
itself. The cascade and the strong-tier-alone baseline alternate question by
question (one request in flight), so machine noise hits both alike; the
llama-server prompt cache is turned off for every tier so no request is timed
on a warm cache left by another. Figures are ratios against the baseline.
``--litellm`` adds the same cascade sent through litellm (``provider: litellm``,
the request path before the native provider) to the rotation: the provider
path's before and after, in one run.

    python benchmarks/e2e_cascade.py --dataset halueval_qa --split test --n 500 --limit 150 --litellm

writes ``benchmarks/results/e2e_cascade.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from semcascade import Cascade, CascadeConfig, load_config
from semcascade.config import ProviderConfig
from semcascade.evaluation.datasets import load_dataset
from semcascade.evaluation.prompts import get_template
from semcascade.evaluation.quality import get_task_metrics

RESULTS = Path(__file__).parent / "results"


def _no_prompt_cache(cfg: CascadeConfig) -> CascadeConfig:
    tiers = [
        t.model_copy(update={"litellm_params": {**t.litellm_params, "extra_body": {"cache_prompt": False}}})
        if t.is_local
        else t
        for t in cfg.tiers
    ]
    return cfg.model_copy(update={"tiers": tiers})


def _via_litellm(cfg: CascadeConfig) -> CascadeConfig:
    litellm = ProviderConfig(name="litellm")
    return cfg.model_copy(update={"tiers": [t.model_copy(update={"provider": litellm}) for t in cfg.tiers]})


def _strong_only(cfg: CascadeConfig) -> CascadeConfig:
    return cfg.model_copy(update={"tiers": [cfg.tiers[-1].model_copy(update={"k": 1})]})


def _stats(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=float)
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95))}


def run(
    config: str | None, dataset: str, split: str, n: int, limit: int | None, seed: int, litellm: bool = False
) -> dict[str, Any]:
    examples = load_dataset(dataset, n, seed, split)[:limit]
    task = examples[0].task
    template, metrics = get_template(task), get_task_metrics(task)
    cfg = _no_prompt_cache(load_config(config))
    # the cascade answers in the task's answer format, as the harness scores it
    cfg = cfg.model_copy(update={"answer_format": template.answer_format})
    rows = []
    with Cascade(cfg) as cascade:
        cascade.prepare()
        systems = {"cascade": cascade, "strong": Cascade(_strong_only(cfg), local_server=cascade.local_server)}
        if litellm:
            systems["cascade via litellm"] = Cascade(_via_litellm(cfg), local_server=cascade.local_server)
        names = list(systems)
        for i, ex in enumerate(tqdm(examples, desc=" vs ".join(names), unit="q")):
            msgs = template.render(ex)
            row: dict[str, Any] = {"id": ex.id}
            for name in names[i % len(names) :] + names[: i % len(names)]:  # rotate who goes first
                r = systems[name].generate_sync(msgs)
                row[name] = {"quality": metrics.score(r.text, ex.references), "cost": r.cost,
                             "latency_s": r.latency_s, "escalated": r.escalated}  # fmt: skip
            row["escalated"] = row["cascade"]["escalated"]
            rows.append(row)
    out: dict[str, Any] = {"dataset": dataset, "split": split, "n": len(rows), "seed": seed, "systems": names}
    for system in names:
        out[system] = {
            "quality": float(np.mean([r[system]["quality"] for r in rows])),
            "cost": float(sum(r[system]["cost"] for r in rows)),
            "latency_s": _stats([r[system]["latency_s"] for r in rows]),
            "escalation_rate": float(np.mean([r[system]["escalated"] for r in rows])),
        }
    out["cost_ratio"] = out["cascade"]["cost"] / out["strong"]["cost"]
    out["latency_ratio_mean"] = out["cascade"]["latency_s"]["mean"] / out["strong"]["latency_s"]["mean"]
    out["latency_ratio_p50"] = out["cascade"]["latency_s"]["p50"] / out["strong"]["latency_s"]["p50"]
    out["escalation_rate"] = out["cascade"]["escalation_rate"]
    out["rows"] = rows
    return out


def markdown(res: dict[str, Any], command: str) -> str:
    s = res["strong"]
    lines = [
        f"# End to end, real calls: cascade vs strong tier alone ({res['dataset']}, {res['split']} split, "
        f"n={res['n']})",
        "",
        f"Command: `{command}`. Question by question, one request in flight, the systems in rotating order, "
        "no response cache, llama-server prompt cache off.",
        "",
        "| system | quality | cost / strong | mean latency s | p50 s | p95 s | latency / strong (mean) | "
        "latency / strong (p50) | escalated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in res.get("systems", ["cascade", "strong"]):
        c = res[name]
        esc = "-" if name == "strong" else f"{c.get('escalation_rate', res['escalation_rate']):.2f}"
        label = "strong alone" if name == "strong" else name
        lines.append(
            f"| {label} | {c['quality']:.3f} | {c['cost'] / s['cost']:.2f} | {c['latency_s']['mean']:.2f} | "
            f"{c['latency_s']['p50']:.2f} | {c['latency_s']['p95']:.2f} | "
            f"{c['latency_s']['mean'] / s['latency_s']['mean']:.2f} | "
            f"{c['latency_s']['p50'] / s['latency_s']['p50']:.2f} | {esc} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="cascade YAML (default: configs/local.yaml)")
    ap.add_argument("--dataset", default="halueval_qa")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--limit", type=int, default=None, help="only the first LIMIT questions of the --n draw")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--litellm", action="store_true", help="also the same cascade through litellm (the old path)")
    args = ap.parse_args()
    started = time.perf_counter()
    res = run(args.config, args.dataset, args.split, args.n, args.limit, args.seed, args.litellm)
    res["elapsed_s"] = time.perf_counter() - started
    res["machine"] = platform.platform()
    command = "python benchmarks/e2e_cascade.py " + " ".join(sys.argv[1:])
    res["command"] = command
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "e2e_cascade.json").write_text(json.dumps(res, indent=1))
    (RESULTS / "e2e_cascade.md").write_text(markdown(res, command))
    print(markdown(res, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
