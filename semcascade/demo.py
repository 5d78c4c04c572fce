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

#: Questions answered from a short context passage (the retrieval-augmented use the local
#: default is tuned for), plus two closed-book ones it should pass to the strong tier.
DEMO_QUESTIONS = [
    "Context: The Eiffel Tower was built for the 1889 World's Fair in Paris and was designed by the "
    "engineering company of Gustave Eiffel.\nQuestion: Whose company designed the Eiffel Tower?",
    "Context: Marie Curie was born in Warsaw in 1867. She moved to Paris in 1891, where she studied "
    "physics and mathematics at the Sorbonne.\nQuestion: In which city was Marie Curie born?",
    "Context: The Amazon River flows through Peru, Colombia and Brazil before reaching the Atlantic "
    "Ocean. It carries more water than any other river.\nQuestion: Which ocean does the Amazon flow into?",
    "Context: Python was created by Guido van Rossum and first released in 1991. Its name comes from "
    "the comedy group Monty Python.\nQuestion: Where does the name of the Python language come from?",
    "Context: The Great Barrier Reef lies off the coast of Queensland, Australia, and is the largest "
    "coral reef system in the world.\nQuestion: Off which Australian state does the Great Barrier Reef lie?",
    "Context: Mount Kilimanjaro, in Tanzania, is the highest mountain in Africa, rising 5,895 metres "
    "above sea level.\nQuestion: How high is Mount Kilimanjaro?",
    "Who wrote the novel One Hundred Years of Solitude?",
    "In which year did the Berlin Wall fall?",
    # with a task classifier (the embedded default's task: auto) these go to the tasks it predicts; it was fitted
    # on the eval datasets' prompts, and this short news paragraph (no CNN/DM article) it takes for closed-book qa
    "The city council voted on Tuesday to turn the old railway depot into a public library. The building, "
    "empty since 2009, will be restored with a grant from the regional government. Work starts in spring "
    "and the library is expected to open in two years. Residents had campaigned for the plan for a decade.",
    "今日はとても暑いですね。",
    "A baker makes 12 trays of 24 cookies and sells 230 of them. How many cookies are left?",
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
    # with a task classifier every question runs its predicted task's cascade (task: auto)
    task = "auto" if cfg.task_classifier is not None and cfg.tasks else None
    with Cascade(cfg) as cascade:
        cascade.prepare()
        strong: dict[str | None, Cascade] = {}

        def baseline(name: str | None) -> Cascade:
            """The strong tier alone, with the task's own prompt settings."""
            if name not in strong:
                own = cfg.task_config(name) if name is not None else cfg
                only = strong_only_config(own, fresh_prompt_cache=True)
                strong[name] = Cascade(only, local_server=cascade.local_server)
            return strong[name]

        rows: list[tuple[str, CascadeResult, CascadeResult]] = []
        for q in questions:
            r = cascade.generate_sync(q, task=task)
            rows.append((q, r, baseline(r.task).generate_sync(q)))
        _print_table(rows, cfg)
        for c in strong.values():
            c.close()
    return 0


def _asked(prompt: str) -> str:
    """The question of a "Context: ... Question: ..." prompt (the whole prompt otherwise)."""
    return prompt.rsplit("Question:", 1)[-1].strip()


def _print_table(rows: list[tuple[str, CascadeResult, CascadeResult]], cfg: CascadeConfig) -> None:
    tiers = " -> ".join(f"{t.name} (k={t.k})" for t in cfg.tiers)
    print(f"\nCascade: {tiers}; baseline: {cfg.tiers[-1].name} alone (k=1)")
    for name in cfg.tasks:
        own = cfg.task_config(name)
        print(f"  task {name}: " + " -> ".join(f"{t.name} (k={t.k})" for t in own.tiers))
    print()
    header = (
        f"{'question':<40} {'task':<13} {'answer':<30} {'tier':<10} {'score':>5} {'cost':>7} {'strong':>7} "
        f"{'time':>6} {'strong':>6}"
    )
    print(header)
    print("-" * len(header))
    for q, r, s in rows:
        first = r.trace[0]
        score = first.confidence if first.confidence is not None else first.agreement
        agr = "-" if score is None else f"{score:.2f}"
        print(
            f"{_short(_asked(q), 40):<40} {r.task or '-':<13} {_short(r.text, 30):<30} {r.tier:<10} {agr:>5} "
            f"{_cost(r.cost):>7} {_cost(s.cost):>7} {r.latency_s:>5.2f}s {s.latency_s:>5.2f}s"
        )
    n = len(rows)
    cheap = sum(1 for _, r, _ in rows if not r.escalated)
    cost, base_cost = sum(r.cost for _, r, _ in rows), sum(s.cost for _, _, s in rows)
    lat, base_lat = sum(r.latency_s for _, r, _ in rows), sum(s.latency_s for _, _, s in rows)
    print("-" * len(header))
    print(
        f"answered by the first tier of their cascade: {cheap}/{n}; escalated: {n - cheap}/{n}\n"
        f"total cost {_cost(cost)} vs strong alone {_cost(base_cost)} (ratio {cost / base_cost:.2f}); "
        f"total time {lat:.1f}s vs {base_lat:.1f}s (ratio {lat / base_lat:.2f})"
    )
    print(
        "('score' is what the cheap tier decided on: its confidence model's P(right) if it has one, else the "
        "agreement of its samples; 'cost' is in the config's price units: nominal for local models)"
    )


def _cost(x: float) -> str:
    return f"{x * 1e6:.0f}µ" if x < 1e-3 else f"{x:.4f}"
