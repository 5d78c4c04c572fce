"""Replay equals live for the decision-path options the committed runs do not exercise.

The harness records a run on a deterministic mock provider; the shipped
cascade replayed from those records (``final_action``, ``final_answer:
consensus``, a one-sample tier at threshold 0) must return, example by
example, the answer a live cascade on the same provider returns.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from semcascade import Cascade, MockProvider
from semcascade.config import load_config
from semcascade.evaluation.datasets import load_dataset
from semcascade.evaluation.harness import _shipped_outcomes, _task_config, _text_of, run_eval
from semcascade.evaluation.prompts import get_template
from semcascade.evaluation.records import load_run
from semcascade.providers import Completion, CompletionRequest

BASE: dict[str, Any] = {
    "tiers": [
        {"name": "cheap", "model": "openai/cheap", "k": 4, "threshold": 0.9,
         "input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7},
        {"name": "strong", "model": "openai/strong", "k": 3, "threshold": 0.9,
         "input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6},
    ],
    "scorer": {"name": "lexical"},
}  # fmt: skip


def handler(req: CompletionRequest) -> Completion:
    q = str(req.messages[-1]["content"])
    words = q.split()
    if req.model == "openai/cheap":  # agrees on even-length questions, splits 2/2 otherwise
        texts = [q] * req.n if len(q) % 2 == 0 else [words[i % 2] for i in range(req.n)]
    else:  # the strong tier agrees on questions with an even word count, answers all different otherwise
        texts = [words[0]] * req.n if len(words) % 2 == 0 else [words[(i + 2) % len(words)] for i in range(req.n)]
    return MockProvider.texts(req.model, texts, prompt_tokens=len(words))


def _variant(**changes: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE)
    for key, value in changes.items():
        if key.startswith("cheap_"):
            cfg["tiers"][0][key.removeprefix("cheap_")] = value
        else:
            cfg[key] = value
    return cfg


#: name -> (config, the tiers that must answer somewhere)
VARIANTS = {
    "final_answer consensus": (_variant(final_answer="consensus"), {0, 1}),
    "final_action abstain": (_variant(final_action="abstain"), {0, 1}),
    "one sample at threshold 0": (_variant(cheap_k=1, cheap_threshold=0.0, cheap_temperature=0.0), {0}),
    "one sample, threshold above 0": (_variant(cheap_k=1, cheap_threshold=0.3, cheap_temperature=0.0), {1}),
}


@pytest.mark.parametrize("name", list(VARIANTS))
async def test_replayed_run_answers_as_live(name: str, tmp_path: Path) -> None:
    cfg, answering = VARIANTS[name]
    out = tmp_path / "run"
    await run_eval(
        cfg, dataset="nq", n=16, seed=3, out_dir=out, signals=("lexical",), cache_path=tmp_path / "c.sqlite",
        provider=MockProvider(handler), progress=False, hallucination_judge=False,
    )  # fmt: skip
    run = load_run(out)
    task_cfg = _task_config(load_config(cfg), "qa")
    replayed = _shipped_outcomes(run.records, task_cfg)
    examples = {str(e.id): e for e in load_dataset("nq", 16, 3)}
    template = get_template("qa")
    tiers_seen, abstained, voted_cheap = set(), 0, 0
    async with Cascade(task_cfg, provider=MockProvider(handler)) as cascade:
        for rec, want in zip(run.records, replayed, strict=True):
            live = await cascade.generate(template.render(examples[rec.id]))
            assert live.tier_index == want.tier, rec.id
            assert live.abstained == want.abstained, rec.id
            assert live.text == _text_of(rec, want), rec.id
            tiers_seen.add(live.tier_index)
            abstained += live.abstained
            voted_cheap += live.voted_from == "cheap"
    # the variant exercised what it names
    assert tiers_seen == answering
    if name == "final_action abstain":
        assert abstained > 0
    if name == "final_answer consensus":
        assert voted_cheap > 0  # an escalated request answered with the cheap tier's voted answer
