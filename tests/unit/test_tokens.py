"""The context-window check's cheap token bound never under-counts (issue 12: no tokenizer on the hot path).

:func:`semcascade.tokens.prompt_token_bound` must be at least litellm's exact
count for every text prompt, so a prompt the bound clears is one the exact
count clears too: the check accepts and refuses exactly what counting alone would.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semcascade import tokens
from semcascade.tokens import PromptTokens, count_prompt_tokens, prompt_token_bound

ROLES = st.sampled_from(["system", "user", "assistant"])
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.sampled_from(
    ["", " ", "Paris", "日本語のテキスト", "🙂🙂🙂 emoji", "a\u0301" * 20, "x" * 500, "\n\n\t  \n"]
)
MESSAGE = st.builds(lambda r, c: {"role": r, "content": c}, ROLES, TEXT) | st.builds(
    lambda c, n: {"role": "user", "content": c, "name": n}, TEXT, st.text(min_size=1, max_size=10)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MESSAGE, min_size=1, max_size=4))
def test_the_bound_is_never_below_the_exact_count(messages: list[dict[str, Any]]) -> None:
    bound = prompt_token_bound(messages)
    assert bound is not None
    assert bound >= count_prompt_tokens(messages)


def test_content_parts_are_not_bounded_but_counted() -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert prompt_token_bound(parts) is None
    assert PromptTokens(parts).over(window=10_000, reserve=0) is None  # counted exactly: fits


def test_a_prompt_the_bound_clears_is_never_tokenised(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def exact(messages: object) -> int:
        calls.append(1)
        return 10**9

    monkeypatch.setattr(tokens, "count_prompt_tokens", exact)
    short = PromptTokens([{"role": "user", "content": "What is the capital of France?"}])
    assert short.over(window=2048, reserve=256) is None and calls == []
    # a bound that does not fit is settled by the exact count (here: huge), once for every tier
    long = PromptTokens([{"role": "user", "content": "word " * 500}])
    assert long.over(window=2048, reserve=256) == 10**9
    assert long.over(window=2600, reserve=256) == 10**9 and calls == [1]


def test_a_long_prompt_that_fits_by_exact_count_is_accepted() -> None:
    messages = [{"role": "user", "content": "word " * 400}]  # ~2000 bytes, ~400 tokens
    bound = prompt_token_bound(messages)
    assert bound is not None and bound > 1000
    exact = count_prompt_tokens(messages)
    assert PromptTokens(messages).over(window=1000, reserve=100) is None  # the bound alone would refuse it
    assert PromptTokens(messages).over(window=exact + 99, reserve=100) == exact
