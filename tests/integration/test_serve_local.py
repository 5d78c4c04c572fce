"""`semcascade serve` over the real local models, streamed through the openai client.

Machinery invariants only (never what a small model samples): a request the cheap tier answers
(its threshold 0: it always accepts) and one that escalates (threshold 1: a fitted P(right) is
never 1) are both streamed; the tier index, the final chunk's decision and the trace agree; the
streamed text is the final answer; the escalated answer streamed live from the last tier.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from semcascade import Cascade
from semcascade.config import ServeConfig
from semcascade.serve.app import create_app, observed_cascade
from semcascade.testing.serve_thread import ServeThread

pytestmark = pytest.mark.integration

Q = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def served(local_cascade: Cascade) -> Iterator[ServeThread]:
    cfg = local_cascade.config.model_copy(update={"answer_format": "raw"})

    def variant(threshold: float) -> Cascade:
        tiers = [cfg.tiers[0].model_copy(update={"threshold": threshold}), *cfg.tiers[1:]]
        return observed_cascade(cfg.model_copy(update={"tiers": tiers}), local_server=local_cascade.local_server)

    app = create_app({"cheap": variant(0.0), "escalate": variant(1.0)}, ServeConfig(auth="off"))
    srv = ServeThread(app, startup_timeout_s=300).start()
    yield srv
    srv.stop()


def _stream(srv: ServeThread, model: str) -> tuple[str, list[Any], dict[str, Any]]:
    client = openai.OpenAI(base_url=srv.base_url, api_key="-", max_retries=0, timeout=300)
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=Q,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"semcascade": {"trace": True}},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    return text, chunks, final.model_extra["semcascade"]


@pytest.mark.parametrize(("model", "tier_index"), [("cheap", 0), ("escalate", 1)])
def test_streamed_answers_keep_the_invariants(served: ServeThread, model: str, tier_index: int) -> None:
    text, chunks, meta = _stream(served, model)
    assert meta["tier_index"] == tier_index and meta["escalated"] == (tier_index > 0)
    assert [t["tier"] for t in meta["trace"]] == ["qwen-0.5b", "qwen-1.5b"][: tier_index + 1]
    answering = meta["trace"][tier_index]
    assert answering["decision"] == "accept"
    assert text == answering["samples"][answering["representative"]]["answer"]  # streamed == final answer
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens >= sum(t["completion_tokens"] for t in meta["trace"]) > 0
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    if tier_index == 0:
        assert len(content) == 1  # a decided answer goes out at once
    else:  # the last tier streamed live: at most a chunk per generated token
        assert 1 <= len(content) <= answering["completion_tokens"]


def test_time_to_first_token_is_measured(served: ServeThread) -> None:
    text = httpx.get(served.url + "/metrics").text
    for escalated in ("false", "true"):
        line = f'semcascade_time_to_first_token_seconds_count{{escalated="{escalated}",model='
        assert line in text
