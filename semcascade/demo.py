"""``semcascade demo``: the cascade on sample questions, next to the strong tier alone."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from semcascade.cascade import Cascade
from semcascade.config import CascadeConfig, load_config
from semcascade.result import CascadeResult

__all__ = ["DEMO_QUESTIONS", "run_demo", "strong_only_config"]

DEMO_QUESTIONS = [
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "What is the chemical symbol for gold?",
    "How many legs does a spider have?",
    "What is the largest planet in the solar system?",
    "In which year did the Berlin Wall fall?",
    "Who was the first person to walk on the Moon?",
    "What is the boiling point of water at sea level in Celsius?",
]


def strong_only_config(config: CascadeConfig, *, fresh_prompt_cache: bool = False) -> CascadeConfig:
    """The same config with only its last tier, sampled once: the baseline to beat.

    ``fresh_prompt_cache`` asks a local llama-server not to reuse the KV cache of
    an identical earlier prompt (the cascade's own escalation), so a baseline run
    right after the cascade is not timed on a warm cache.
    """
    last = config.tiers[-1]
    update: dict[str, object] = {"k": 1}
    if fresh_prompt_cache and last.is_local:
        update["litellm_params"] = {**last.litellm_params, "extra_body": {"cache_prompt": False}}
    return config.model_copy(update={"tiers": [last.model_copy(update=update)]})


def _short(text: str, width: int) -> str:
    one_line = " ".join(text.split())
    return textwrap.shorten(one_line, width=width, placeholder="…") if one_line else "(empty)"


def run_demo(config: str | os.PathLike[str] | None = None, questions: Sequence[str] | None = None) -> int:
    cfg = load_config(config)
    questions = list(questions or DEMO_QUESTIONS)
    origin = str(config) if config else str(Path("configs") / "local.yaml")
    print(f"semcascade demo: {len(questions)} questions, config {origin}", file=sys.stderr)
    print(
        "Setting up (first run builds llama-server and assembles the models; later runs reuse them)...", file=sys.stderr
    )
    with Cascade(cfg) as cascade:
        cascade.prepare()
        strong = Cascade(strong_only_config(cfg, fresh_prompt_cache=True), local_server=cascade.local_server)
        rows: list[tuple[str, CascadeResult, CascadeResult]] = []
        for q in questions:
            rows.append((q, cascade.generate_sync(q), strong.generate_sync(q)))
        _print_table(rows, cfg)
    return 0


def _print_table(rows: list[tuple[str, CascadeResult, CascadeResult]], cfg: CascadeConfig) -> None:
    tiers = " -> ".join(f"{t.name} (k={t.k})" for t in cfg.tiers)
    print(f"\nCascade: {tiers}; baseline: {cfg.tiers[-1].name} alone (k=1)\n")
    header = (
        f"{'question':<44} {'answer':<34} {'tier':<14} {'score':>5} {'cost':>7} {'strong':>7} {'time':>6} {'strong':>6}"
    )
    print(header)
    print("-" * len(header))
    for q, r, s in rows:
        first = r.trace[0]
        score = first.confidence if first.confidence is not None else first.agreement
        agr = "-" if score is None else f"{score:.2f}"
        print(
            f"{_short(q, 44):<44} {_short(r.text, 34):<34} {r.tier:<14} {agr:>5} "
            f"{_cost(r.cost):>7} {_cost(s.cost):>7} {r.latency_s:>5.2f}s {s.latency_s:>5.2f}s"
        )
    n = len(rows)
    cheap = sum(1 for _, r, _ in rows if not r.escalated)
    cost, base_cost = sum(r.cost for _, r, _ in rows), sum(s.cost for _, _, s in rows)
    lat, base_lat = sum(r.latency_s for _, r, _ in rows), sum(s.latency_s for _, _, s in rows)
    print("-" * len(header))
    print(
        f"answered by the cheap tier: {cheap}/{n}; escalated: {n - cheap}/{n}\n"
        f"total cost {_cost(cost)} vs strong alone {_cost(base_cost)} (ratio {cost / base_cost:.2f}); "
        f"total time {lat:.1f}s vs {base_lat:.1f}s (ratio {lat / base_lat:.2f})"
    )
    print(
        "('score' is what the cheap tier decided on: its confidence model's P(right) if it has one, else the "
        "agreement of its samples; 'cost' is in the config's price units: nominal for local models)"
    )


def _cost(x: float) -> str:
    return f"{x * 1e6:.0f}µ" if x < 1e-3 else f"{x:.4f}"
