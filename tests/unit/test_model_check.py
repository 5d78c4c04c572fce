"""Every tier's model is checked before the first call (issue 11, fault 4).

A model string litellm cannot route (``get_llm_provider`` raises) used to be
found only when its tier was reached, after the cheaper tiers had been paid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from semcascade import Cascade, MockProvider, PairJudgement, RetryingProvider, UnknownModelError
from semcascade.errors import MissingAPIKeyError
from semcascade.providers import Completion, CompletionRequest, LiteLLMProvider


class ExactScorer:
    name = "exact"
    kind = "similarity"

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        return [PairJudgement(float(a == b), float(a == b)) for a, b in pairs]


class CountingLiteLLM(LiteLLMProvider):
    """The litellm provider with the network call replaced: routes the model as litellm would, counts calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[CompletionRequest] = []

    async def complete(self, request: CompletionRequest) -> Completion:
        self.calls.append(request)
        try:
            self._litellm.get_llm_provider(request.model)
        except self._litellm.exceptions.BadRequestError:
            raise UnknownModelError(
                "litellm cannot tell the provider", model=request.model, tier=request.tier
            ) from None
        texts = ["Paris", "Lyon"][: request.n] if request.tier == "cheap" else ["Paris"]
        return MockProvider.texts(request.model, texts)


def config(strong_model: str, **strong: Any) -> dict[str, Any]:
    return {
        "tiers": [
            {"name": "cheap", "model": "openai/gpt-4o-mini", "k": 2, "threshold": 0.9},  # its 2 samples disagree
            {"name": "strong", "model": strong_model, "k": 1, **strong},
        ]
    }


def test_an_unknown_later_model_is_refused_before_any_call() -> None:
    provider = CountingLiteLLM()
    with pytest.raises(UnknownModelError) as info:
        cascade = Cascade(config("gpt-4o-typo"), provider=provider, scorer=ExactScorer())
        cascade.generate_sync("Capital of France?")
    assert provider.calls == []  # the cheap tier was never paid for
    msg = str(info.value)
    assert "tier 'strong'" in msg and "gpt-4o-typo" in msg and "provider/model" in msg


def test_the_check_sees_through_provider_wrappers_and_heterogeneous_tiers() -> None:
    provider = RetryingProvider(CountingLiteLLM())
    cfg = config("openai/gpt-4o")
    cfg["tiers"][0] = {"name": "cheap", "models": ["openai/gpt-4o-mini", "nosuchprovider/x"], "k": 2}
    with pytest.raises(UnknownModelError, match=r"tier 'cheap'.*nosuchprovider/x"):
        Cascade(cfg, provider=provider, scorer=ExactScorer())


def test_known_models_pass_and_run() -> None:
    provider = CountingLiteLLM()
    result = Cascade(config("openai/gpt-4o"), provider=provider, scorer=ExactScorer()).generate_sync("q?")
    assert result.tier == "strong" and len(provider.calls) == 2


def test_custom_endpoints_and_non_litellm_providers_are_not_second_guessed() -> None:
    # an api_base endpoint may serve any name (it cannot be checked offline)
    Cascade(config("my-own-model", api_base="http://127.0.0.1:9/v1"), provider=CountingLiteLLM(), scorer=ExactScorer())
    # a provider that is not litellm has its own model names
    mock = MockProvider(lambda r: MockProvider.texts(r.model, ["Paris"] * r.n))
    assert Cascade(config("m"), provider=mock, scorer=ExactScorer()).generate_sync("q?").text == "Paris"


def test_a_missing_key_of_a_later_tier_is_refused_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEMCASCADE_TEST_UNSET_KEY", raising=False)
    provider = CountingLiteLLM()
    with pytest.raises(MissingAPIKeyError, match="SEMCASCADE_TEST_UNSET_KEY"):
        Cascade(config("openai/gpt-4o", api_key_env="SEMCASCADE_TEST_UNSET_KEY"), provider=provider)
    assert provider.calls == []
