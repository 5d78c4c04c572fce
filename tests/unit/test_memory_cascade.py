"""The cascade with strategy memory: learn after a confident escalation, inject into the cheap tier only.

Queries are embedded by the real bundled MiniLM (the memory's default embedder);
the models are a MockProvider, so the test asserts on the exact messages each
tier received.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from semcascade import Cascade, MockProvider
from semcascade.memory import InMemoryStrategyStore, MemoryConfig, MemoryStoreError, StrategyEntry, StrategyMemory
from semcascade.memory.prompts import STRATEGY_SYSTEM_PROMPT, clean_strategy, inject_strategies
from semcascade.memory.store import AddResult
from semcascade.providers import Completion, CompletionRequest
from tests.helpers import ExactScorer, two_tier_config

AUSTEN = "Who wrote the novel Pride and Prejudice?"
DICKENS = "Who wrote the novel Great Expectations?"  # MiniLM cosine with AUSTEN: 0.57
WATER = "What is the boiling point of water in Fahrenheit?"  # cosine with AUSTEN: 0.10
STRATEGY = "Recall the era and literary movement of the book, then name its author in full. The answer is Jane Austen."


class Models:
    """Cheap tier disagrees on every question; strong answers; strategy requests get STRATEGY."""

    def __init__(self) -> None:
        self.provider = MockProvider(self.handle)

    def handle(self, req: CompletionRequest) -> Completion:
        system = next((m["content"] for m in req.messages if m["role"] == "system"), "")
        if system == STRATEGY_SYSTEM_PROMPT:
            return MockProvider.texts(req.model, [STRATEGY], prompt_tokens=50)
        if req.model == "openai/cheap":
            return MockProvider.texts(req.model, ["a", "b", "c", "d"][: req.n], prompt_tokens=20)
        return MockProvider.texts(req.model, ["Jane Austen"], prompt_tokens=20)

    def requests(self, model: str) -> list[CompletionRequest]:
        return [
            r
            for r in self.provider.calls
            if r.model == model and r.messages[0].get("content") != STRATEGY_SYSTEM_PROMPT
        ]

    def strategy_requests(self) -> list[CompletionRequest]:
        return [r for r in self.provider.calls if r.messages[0].get("content") == STRATEGY_SYSTEM_PROMPT]


def config(**memory: Any) -> dict[str, Any]:
    return two_tier_config(
        cheap={"output_cost_per_token": 1e-6},
        system_prompt="Answer briefly.",
        memory={"enabled": True, "store": "memory", "min_similarity": 0.45, **memory},
    )


def make(**memory: Any) -> tuple[Cascade, Models]:
    models = Models()
    return Cascade(config(**memory), provider=models.provider, scorer=ExactScorer()), models


def system_of(req: CompletionRequest) -> str:
    return str(next(m["content"] for m in req.messages if m["role"] == "system"))


async def test_learns_after_escalation_and_injects_into_cheap_tier_on_similar_query() -> None:
    cascade, models = make()
    first = await cascade.generate(AUSTEN)
    assert first.tier == "strong" and first.text == "Jane Austen"
    assert first.memory is not None and first.memory.learned and first.memory.strategy_id is not None
    # the strategy request went to the strong model, with the question, asking not to answer
    (sreq,) = models.strategy_requests()
    assert sreq.model == "openai/strong" and sreq.n == 1 and sreq.max_tokens == 128
    assert AUSTEN in sreq.messages[1]["content"]
    # the sentence stating the answer was stripped before storing
    assert first.memory.strategy == "Recall the era and literary movement of the book, then name its author in full."
    # the strategy call is paid for and counted
    strategy_cost = 50 * 1e-5 + len(STRATEGY.split()) * 2e-5
    assert first.memory.cost == pytest.approx(strategy_cost)
    assert first.cost == pytest.approx(sum(t.cost for t in first.trace) + strategy_cost)
    assert first.prompt_tokens == sum(t.prompt_tokens for t in first.trace) + 50
    assert "memory:" in first.summary()

    models.provider.calls.clear()
    second = await cascade.generate(DICKENS)
    cheap_req = models.requests("openai/cheap")[0]
    assert system_of(cheap_req).startswith("Answer briefly.")
    assert first.memory.strategy in system_of(cheap_req)
    assert "Jane Austen" not in system_of(cheap_req)
    # the strong tier's prompt is untouched
    (strong_req,) = models.requests("openai/strong")
    assert system_of(strong_req) == "Answer briefly."
    assert second.memory is not None and second.memory.injected_into == "cheap"
    assert [r.id for r in second.memory.retrieved] == [first.memory.strategy_id]
    assert 0.45 <= second.memory.retrieved[0].similarity < 0.9

    models.provider.calls.clear()
    third = await cascade.generate(WATER)
    assert system_of(models.requests("openai/cheap")[0]) == "Answer briefly."
    assert third.memory is not None and third.memory.retrieved == [] and third.memory.injected_into is None


async def test_a_covered_question_does_not_pay_for_another_strategy() -> None:
    # AUSTEN and DICKENS are 0.57 apart: above 0.5 DICKENS is covered by AUSTEN's strategy, above 0.6 it is not
    for skip_above, learns in ((0.5, False), (0.6, True)):
        cascade, models = make(skip_learning_above=skip_above)
        assert (await cascade.generate(AUSTEN)).memory.learned  # type: ignore[union-attr]
        models.provider.calls.clear()
        second = await cascade.generate(DICKENS)
        assert second.memory is not None and second.memory.injected_into == "cheap"
        assert len(models.strategy_requests()) == int(learns)  # (a repeated strategy is then deduplicated)
        if not learns:
            assert "already covers this question" in second.memory.note and second.memory.cost == 0.0
            assert second.cost == pytest.approx(sum(t.cost for t in second.trace))
        # an uncovered question still asks for a strategy (the mock's is the same one again: deduplicated)
        models.provider.calls.clear()
        await cascade.generate(WATER)
        assert len(models.strategy_requests()) == 1


class AgreeingModels(Models):
    def handle(self, req: CompletionRequest) -> Completion:
        return MockProvider.texts(req.model, ["same"] * req.n)


async def test_no_learning_without_escalation_or_with_single_sample_learning_off() -> None:
    models: Models = AgreeingModels()
    cascade = Cascade(config(), provider=models.provider, scorer=ExactScorer())
    r = await cascade.generate(AUSTEN)
    assert r.tier == "cheap" and r.memory is not None and not r.memory.learned
    assert "without escalation" in r.memory.note and models.strategy_requests() == []

    cascade, models = make(learn_single_sample=False)
    r = await cascade.generate(AUSTEN)
    assert r.tier == "strong" and r.memory is not None and not r.memory.learned
    assert "learn_single_sample is off" in r.memory.note and models.strategy_requests() == []
    assert r.cost == pytest.approx(sum(t.cost for t in r.trace))


async def test_memory_is_off_by_default_and_the_prompt_unchanged() -> None:
    models = Models()
    cfg = config()
    del cfg["memory"]
    cascade = Cascade(cfg, provider=models.provider, scorer=ExactScorer())
    assert cascade.memory is None
    r1 = await cascade.generate(AUSTEN)
    await cascade.generate(DICKENS)
    assert r1.memory is None and models.strategy_requests() == []
    assert all(system_of(r) == "Answer briefly." for r in models.provider.calls)


async def test_background_learning_returns_at_once_and_accounts_its_spend() -> None:
    cascade, models = make(learn_in_background=True)
    first = await cascade.generate(AUSTEN)
    # answered before the teacher was asked: no strategy call yet, none in the result's cost
    assert first.text == "Jane Austen" and models.strategy_requests() == []
    assert first.memory is not None and "in the background" in first.memory.note and not first.memory.learned
    assert first.cost == pytest.approx(sum(t.cost for t in first.trace))
    assert cascade.memory is not None and cascade.memory.pending == 1
    await cascade.memory.wait_learning()
    assert cascade.memory.pending == 0 and len(models.strategy_requests()) == 1
    spend = cascade.memory.spend
    assert (spend.calls, spend.learned, spend.prompt_tokens) == (1, 1, 50)
    assert spend.cost == pytest.approx(50 * 1e-5 + len(STRATEGY.split()) * 2e-5)
    # the next similar question gets the strategy learned in the background
    second = await cascade.generate(DICKENS)
    assert second.memory is not None and second.memory.injected_into == "cheap"
    await cascade.aclose()
    assert cascade.memory.pending == 0 and cascade.memory.spend.calls == 2


def test_background_learning_finishes_within_generate_sync() -> None:
    cascade, models = make(learn_in_background=True)
    r = cascade.generate_sync(AUSTEN)  # its event loop ends with the call: the task must not be lost
    assert r.memory is not None and "in the background" in r.memory.note
    assert cascade.memory is not None and cascade.memory.pending == 0 and cascade.memory.spend.learned == 1
    assert cascade.memory.store.count() == 1 and len(models.strategy_requests()) == 1


async def test_a_failing_background_store_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Exploding(InMemoryStrategyStore):
        def add(self, entry: StrategyEntry) -> AddResult:
            raise RuntimeError("bug in a custom store")

    models = Models()
    memory = StrategyMemory(MemoryConfig(enabled=True, learn_in_background=True), store=Exploding())
    async with Cascade(config(), provider=models.provider, scorer=ExactScorer(), memory=memory) as cascade:
        r = await cascade.generate(AUSTEN)
    assert r.text == "Jane Austen" and memory.pending == 0
    # the strategy call was paid: its cost is kept, the store's error reported
    assert memory.spend.errors == ["bug in a custom store"] and memory.spend.learned == 0
    assert memory.spend.calls == 1 and memory.spend.cost > 0
    assert "background strategy learning: bug in a custom store" in caplog.text


@pytest.mark.parametrize("background", [False, True])
async def test_the_strategy_call_is_held_to_the_budget(background: bool) -> None:
    # answers of at most 4 tokens: both tiers' worst cases fit 0.002, the strategy call's (a ~600-byte prompt
    # and up to 128 tokens out at the strong tier's prices, about 0.009) does not
    def budgeted(max_cost: float) -> dict[str, Any]:
        cfg = config(learn_in_background=background)
        cfg["tiers"] = [{**t, "max_tokens": 4} for t in cfg["tiers"]]
        return {**cfg, "budget": {"max_cost_per_run": max_cost}}

    tight, roomy = budgeted(0.002), budgeted(1.0)
    models = Models()
    cascade = Cascade(tight, provider=models.provider, scorer=ExactScorer())
    r = await cascade.generate(AUSTEN)
    assert r.text == "Jane Austen" and r.memory is not None and not r.memory.learned
    assert "would not fit the budget" in r.memory.note and models.strategy_requests() == []
    assert cascade.run_budget.spent_cost == pytest.approx(r.cost)

    cascade = Cascade(roomy, provider=models.provider, scorer=ExactScorer())
    r = await cascade.generate(AUSTEN)
    assert cascade.memory is not None
    await cascade.memory.wait_learning()
    strategy_cost = 50 * 1e-5 + len(STRATEGY.split()) * 2e-5
    # the run's ledger holds the answer and the strategy call, nothing left reserved
    assert cascade.run_budget.spent_cost == pytest.approx(sum(t.cost for t in r.trace) + strategy_cost)
    assert cascade.run_budget.remaining().cost == pytest.approx(1.0 - cascade.run_budget.spent_cost)


class BrokenStore(InMemoryStrategyStore):
    def add(self, entry: StrategyEntry) -> AddResult:
        raise MemoryStoreError("disk full")


class BuggyStore(InMemoryStrategyStore):
    def add(self, entry: StrategyEntry) -> AddResult:
        raise RuntimeError("disk full")  # breaks the store contract (MemoryStoreError)


@pytest.mark.parametrize("store", [BrokenStore, BuggyStore])
async def test_a_failing_store_never_loses_the_paid_answer(store: type[InMemoryStrategyStore]) -> None:
    models = Models()
    memory = StrategyMemory(MemoryConfig(enabled=True), store=store())
    cascade = Cascade(config(), provider=models.provider, scorer=ExactScorer(), memory=memory)
    r = await cascade.generate(AUSTEN)
    assert r.text == "Jane Austen" and r.memory is not None and not r.memory.learned
    assert r.memory.errors == ["disk full"] and r.memory.cost > 0  # still paid, still counted


async def test_sqlite_memory_is_shared_by_two_cascades(tmp_path: Path) -> None:
    path = str(tmp_path / "strategies.sqlite")
    teacher, _ = make(store="sqlite", path=path)
    await teacher.generate(AUSTEN)
    student, models = make(store="sqlite", path=path)
    await student.generate(DICKENS)
    assert "name its author in full" in system_of(models.requests("openai/cheap")[0])


def test_clean_strategy_drops_answer_sentences_and_preamble() -> None:
    assert clean_strategy("Strategy: Think of the era. It was Jane Austen.", "Jane Austen") == "Think of the era."
    assert clean_strategy("The answer is 42.", "42") == ""
    assert clean_strategy("Check units first.", None) == "Check units first."
    long = "word " * 400
    assert len(clean_strategy(long, None, max_chars=100)) <= 100


def test_inject_strategies_adds_or_extends_the_system_prompt() -> None:
    msgs = [{"role": "user", "content": "q"}]
    out = inject_strategies(msgs, ["S1", "S2"])
    assert out[0]["role"] == "system" and "- S1\n- S2" in out[0]["content"] and out[1] == msgs[0]
    assert msgs == [{"role": "user", "content": "q"}]  # not mutated
    with_sys = inject_strategies([{"role": "system", "content": "Be brief."}, *msgs], ["S1"])
    assert with_sys[0]["content"].startswith("Be brief.\n\n") and len(with_sys) == 2
    assert inject_strategies(msgs, []) == msgs
