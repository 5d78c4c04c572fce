"""Per-task cascades: one config, a cascade per named task, chosen per request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from semcascade import Cascade, ConfigError, MockProvider, load_config
from semcascade.providers import Completion, CompletionRequest

CFG: dict[str, Any] = {
    "tiers": [
        {"name": "cheap", "model": "openai/cheap", "k": 3, "threshold": 0.9,
         "input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7},
        {"name": "strong", "model": "openai/strong", "k": 1, "temperature": 0.0,
         "input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6},
    ],
    "scorer": {"name": "lexical"},
    "budget": {"max_cost_per_run": 1.0},
    "tasks": {
        # closed-book: the cheap tier is never right here; the strong tier alone
        "qa": {"tiers": [{"name": "strong", "model": "openai/strong", "k": 1, "temperature": 0.0,
                          "input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6}]},
        # math: same tiers, a vote with a lower bar
        "math": {"aggregation": "largest_cluster", "final_action": "abstain"},
    },
}  # fmt: skip


def handler(req: CompletionRequest) -> Completion:
    if req.model == "openai/cheap":  # two of three agree
        return MockProvider.texts(req.model, ["12", "12", "13"][: req.n])
    return MockProvider.texts(req.model, ["strong says 12"])


async def test_each_task_runs_its_own_cascade_sharing_provider_and_run_budget() -> None:
    provider = MockProvider(handler)
    async with Cascade(CFG, provider=provider) as cascade:
        base = await cascade.generate("What is 5+7?")
        qa = await cascade.generate("What is 5+7?", task="qa")
        math = await cascade.generate("What is 5+7?", task="math")
    # the base config: agreement 1/3 < 0.9, escalates
    assert base.task is None and base.tier == "strong" and base.tiers_tried == ["cheap", "strong"]
    # qa: one tier, the cheap model is never called
    assert qa.task == "qa" and qa.tiers_tried == ["strong"]
    # math: largest-cluster share 2/3 < 0.9 -> escalates; the task's own final action applies
    assert math.task == "math" and math.trace[0].agreement == pytest.approx(2 / 3)
    # one provider for all tasks, and one run budget: every call's cost is in the parent's ledger
    assert [c.model for c in provider.calls] == [
        "openai/cheap",
        "openai/strong",
        "openai/strong",
        "openai/cheap",
        "openai/strong",
    ]
    assert cascade.run_budget.spent_cost == pytest.approx(base.cost + qa.cost + math.cost)
    assert cascade.for_task("qa") is cascade.for_task("qa")


async def test_default_task_and_unknown_task() -> None:
    async with Cascade({**CFG, "default_task": "qa"}, provider=MockProvider(handler)) as cascade:
        assert (await cascade.generate("Who?")).task == "qa"
        with pytest.raises(ConfigError, match="unknown task 'poetry'; the config defines: qa, math"):
            await cascade.generate("Who?", task="poetry")


def test_task_errors_name_the_task_and_field(tmp_path: Path) -> None:
    bad = {**CFG, "tasks": {"math": {"tiers": [{"name": "x", "model": "openai/x", "k": 0}]}}}
    with pytest.raises(ConfigError, match=r"tasks\.math: tiers\[0\]\.k"):
        load_config(bad)
    with pytest.raises(ConfigError, match="default_task 'nope' is not one of the tasks"):
        load_config({**CFG, "default_task": "nope"})
    with pytest.raises(ConfigError, match=r"tasks\.math\.local_server"):
        load_config({**CFG, "tasks": {"math": {"local_server": {"port": 9}}}})


def test_a_config_without_tasks_works_as_before() -> None:
    cfg = load_config({k: v for k, v in CFG.items() if k != "tasks"})
    assert cfg.task_names == [] and cfg.default_task is None
    with pytest.raises(ConfigError, match="none"):
        cfg.task_config("qa")
