from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping

import pytest

from semcascade.errors import ProviderTimeoutError, ScorerError
from semcascade.providers import Choice, Completion, CompletionRequest, MockProvider, TokenLogprob
from semcascade.scoring._registry import create_scorer
from semcascade.scoring.base import AgreementScorer
from semcascade.scoring.llm_judge import LLMJudgeNLIScorer, read_verdict

MODEL = "openai/qwen2.5-coder-1.5b"
Q = "What is the capital of France?"


def completion(top: Mapping[str, float], *, chosen: str | None = None) -> Completion:
    """A one-token completion whose first token has these (probability) alternatives."""
    logs = {t: math.log(p) for t, p in top.items()}
    token = chosen or max(logs, key=lambda t: logs[t])
    lp = TokenLogprob(token=token, logprob=logs.get(token, -5.0), top=logs)
    return Completion(model=MODEL, choices=(Choice(text=token, completion_tokens=1, logprobs=(lp,)),), prompt_tokens=30)


def premise_hypothesis(request: CompletionRequest) -> tuple[str, str]:
    user = str(request.messages[-1]["content"])
    a = re.search(r"Premise: The answer to .* is: (.*)", user)
    b = re.search(r"Hypothesis: The answer to .* is: (.*)", user)
    assert a and b
    return a.group(1), b.group(1)


async def test_probabilities_are_normalised_over_yes_no_maybe() -> None:
    top = {"Yes": 0.6, " yes": 0.1, "No": 0.2, "maybe": 0.05, "The": 0.05}
    provider = MockProvider(lambda r: completion(top))
    scorer = LLMJudgeNLIScorer(MODEL, provider=provider)
    (j,) = await scorer.judge(Q, [("Paris", "Paris, France")])
    assert j.forward == pytest.approx(0.7 / 0.95)
    assert j.backward == pytest.approx(0.7 / 0.95)
    assert j.contradiction == pytest.approx(0.2 / 0.95)


@pytest.mark.parametrize("token", ["Yes", " yes", "YES", "yes.", "\nYes", "▁Yes", "Ġyes"])
def test_yes_variants_count(token: str) -> None:
    probs = read_verdict(None, {token: math.log(0.5), " No": math.log(0.5)})
    assert probs is not None
    assert probs["yes"] == pytest.approx(0.5)
    assert probs["no"] == pytest.approx(0.5)


def test_read_verdict_adds_chosen_token_and_ignores_others() -> None:
    probs = read_verdict(("No", math.log(0.3)), {"yes": math.log(0.6), "Yeah": math.log(0.1)})
    assert probs == pytest.approx({"yes": 0.6 / 0.9, "no": 0.3 / 0.9, "maybe": 0.0})
    assert read_verdict(("The", -0.1), {"The": -0.1, "A": -3.0}) is None
    assert read_verdict(None, {"yes": float("-inf"), "no": -1.0}) == pytest.approx(
        {"yes": 0.0, "no": 1.0, "maybe": 0.0}
    )


async def test_direction_order() -> None:
    # "Paris" => "Paris, France": yes; "Paris, France" => "Paris": mostly maybe
    def handler(request: CompletionRequest) -> Completion:
        premise, hypothesis = premise_hypothesis(request)
        if (premise, hypothesis) == ("Paris", "Paris, France"):
            return completion({"yes": 0.9, "no": 0.05, "maybe": 0.05})
        if (premise, hypothesis) == ("Paris, France", "Paris"):
            return completion({"yes": 0.3, "no": 0.1, "maybe": 0.6})
        return completion({"yes": 0.02, "no": 0.9, "maybe": 0.08})

    provider = MockProvider(handler)
    scorer = LLMJudgeNLIScorer(MODEL, provider=provider)
    out = await scorer.judge(Q, [("Paris", "Paris, France"), ("Paris", "Lyon")])
    assert out[0].forward == pytest.approx(0.9)
    assert out[0].backward == pytest.approx(0.3)
    assert out[0].contradiction == pytest.approx((0.05 + 0.1) / 2)
    assert out[1].forward == pytest.approx(0.02) and out[1].backward == pytest.approx(0.02)
    assert out[1].contradiction == pytest.approx(0.9)
    assert len(provider.calls) == 4


async def test_request_parameters_and_prompt() -> None:
    provider = MockProvider(lambda r: completion({"yes": 1.0}))
    scorer = LLMJudgeNLIScorer(MODEL, api_base="http://127.0.0.1:9/v1", api_key="sk-secret-123", provider=provider)
    await scorer.judge(Q, [("Paris", "It is Paris")])
    req = provider.calls[0]
    assert req.model == MODEL
    assert (req.max_tokens, req.temperature, req.logprobs, req.top_logprobs, req.n) == (1, 0.0, True, 10, 1)
    assert req.api_base == "http://127.0.0.1:9/v1" and req.api_key == "sk-secret-123"
    assert req.timeout == 60.0
    user = str(req.messages[-1]["content"])
    assert f'The answer to "{Q}" is: ' in user
    assert premise_hypothesis(req) == ("Paris", "It is Paris")
    system = str(req.messages[0]["content"]).lower()
    assert "yes" in system and "no" in system and "maybe" in system
    assert req.messages[0]["role"] == "system"
    assert {premise_hypothesis(r) for r in provider.calls} == {("Paris", "It is Paris"), ("It is Paris", "Paris")}


async def test_no_logprobs_is_a_clear_error() -> None:
    provider = MockProvider(lambda r: MockProvider.texts(MODEL, ["yes"]))
    scorer = LLMJudgeNLIScorer(MODEL, provider=provider)
    with pytest.raises(ScorerError, match="top_logprobs"):
        await scorer.judge(Q, [("a", "b")])


async def test_logprobs_without_top_alternatives_is_an_error() -> None:
    lp = TokenLogprob(token="yes", logprob=-0.1)
    provider = MockProvider(
        lambda r: Completion(model=MODEL, choices=(Choice("yes", 1, logprobs=(lp,)),), prompt_tokens=5)
    )
    with pytest.raises(ScorerError, match="must return top_logprobs"):
        await LLMJudgeNLIScorer(MODEL, provider=provider).judge(Q, [("a", "b")])


async def test_no_verdict_token_counts_as_maybe() -> None:
    provider = MockProvider(lambda r: completion({"The": 0.7, "A": 0.3}))
    scorer = LLMJudgeNLIScorer(MODEL, provider=provider)
    (j,) = await scorer.judge(Q, [("a", "b")])
    assert (j.forward, j.backward, j.contradiction) == (0.0, 0.0, 0.0)
    assert scorer.unparsed == 2


async def test_concurrency_is_bounded_and_used() -> None:
    in_flight = 0
    peak = 0

    async def handler(request: CompletionRequest) -> Completion:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return completion({"yes": 0.8, "no": 0.2})

    provider = MockProvider(handler)
    scorer = LLMJudgeNLIScorer(MODEL, provider=provider, max_concurrency=3)
    pairs = [(f"answer {i}", f"answer {i + 1}") for i in range(0, 10, 2)]  # 5 pairs, 10 directions
    out = await scorer.judge(Q, pairs)
    assert len(out) == 5 and len(provider.calls) == 10
    assert peak == 3


def test_semaphore_is_per_event_loop() -> None:
    provider = MockProvider(lambda r: completion({"yes": 1.0}))
    scorer = LLMJudgeNLIScorer(MODEL, provider=provider, max_concurrency=2)
    # a semaphore bound to a closed loop must not be reused
    for _ in range(2):
        out = asyncio.run(scorer.judge(Q, [("a", "b"), ("c", "d")]))
        assert [j.forward for j in out] == [1.0, 1.0]


async def test_each_direction_asked_once() -> None:
    provider = MockProvider(lambda r: completion({"yes": 1.0}))
    scorer = LLMJudgeNLIScorer(MODEL, provider=provider)
    out = await scorer.judge(Q, [("a", "b"), ("b", "a"), ("a", "b")])
    assert len(out) == 3
    assert sorted(premise_hypothesis(r) for r in provider.calls) == [("a", "b"), ("b", "a")]


async def test_provider_error_becomes_scorer_error_and_cancels_the_rest() -> None:
    started: list[str] = []
    finished: list[str] = []

    async def handler(request: CompletionRequest) -> Completion:
        premise, _ = premise_hypothesis(request)
        started.append(premise)
        if premise == "a":
            raise ProviderTimeoutError("timed out after 1s", model=MODEL)
        await asyncio.sleep(0.5)
        finished.append(premise)
        return completion({"yes": 1.0})

    scorer = LLMJudgeNLIScorer(MODEL, provider=MockProvider(handler))
    with pytest.raises(ScorerError, match="judge call failed") as info:
        await scorer.judge(Q, [("a", "b"), ("c", "d")])
    assert isinstance(info.value.__cause__, ProviderTimeoutError)
    await asyncio.sleep(0.6)
    assert finished == []


def test_api_key_never_in_repr() -> None:
    scorer = LLMJudgeNLIScorer(MODEL, api_key="sk-very-secret", provider=MockProvider(lambda r: completion({"yes": 1})))
    assert "sk-very-secret" not in repr(scorer)
    assert "sk-very-secret" not in str(vars(scorer).get("api_key"))
    assert "sk-very-secret" not in repr(scorer.build_request(Q, "a", "b"))


def test_custom_prompt_template() -> None:
    scorer = LLMJudgeNLIScorer(
        MODEL,
        provider=MockProvider(lambda r: completion({"yes": 1})),
        prompt_template="{premise} => {hypothesis}? ({question})",
        system_prompt=None,
    )
    req = scorer.build_request("q", "x", "y")
    assert list(req.messages) == [{"role": "user", "content": "x => y? (q)"}]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"prompt_template": "{premise} {answer}"}, "prompt_template"),
        ({"prompt_template": "{question} only"}, r"\{premise\}"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"timeout": 0}, "timeout"),
        ({"model": ""}, "model"),
    ],
)
def test_bad_options(options: dict[str, object], match: str) -> None:
    kwargs: dict[str, object] = {"model": MODEL, "provider": MockProvider(lambda r: completion({"yes": 1}))}
    kwargs.update(options)
    with pytest.raises(ScorerError, match=match):
        LLMJudgeNLIScorer(**kwargs)  # type: ignore[arg-type]


def test_registry_and_default_provider() -> None:
    scorer = create_scorer("llm_judge", model=MODEL, api_base="http://127.0.0.1:9/v1")
    assert isinstance(scorer, LLMJudgeNLIScorer)
    assert isinstance(scorer, AgreementScorer)
    assert scorer.name == "llm_judge" and scorer.kind == "nli"
    assert type(scorer.provider).__name__ == "RetryingProvider"
    assert type(scorer.provider.inner).__name__ == "LiteLLMProvider"  # type: ignore[attr-defined]
