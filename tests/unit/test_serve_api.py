"""`semcascade serve` through the official openai client, on a real uvicorn server backed by the fault server.

Sync, async and streaming calls; the decision headers agree with the body; the streaming policy
(a rejected draft never reaches the client, the last tier streams live); request fields reach every
tier; every bad input and provider fault is a well-formed OpenAI error the client raises as its typed
error; a client that disconnects cancels the provider calls; /metrics counts what the client saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from serve_fixtures import DRAFTS, LONG_ANSWER, metric, serve, start_fault_server, two_tiers

from semcascade.testing import FaultServer
from semcascade.testing.serve_thread import ServeThread

Q = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def fault() -> Iterator[FaultServer]:
    server = start_fault_server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def srv(fault: FaultServer) -> Iterator[ServeThread]:
    one_try = {"retry": {"max_attempts": 1}, "timeout": 0.5}
    models = {
        "ok": two_tiers(fault, "cheap", "strong"),
        "esc": two_tiers(fault, "cheap-split", "strong-long"),
        "f500": two_tiers(fault, "fault-500", "fault-500"),
        "f429": two_tiers(fault, "fault-429", "fault-429"),
        "f503": two_tiers(fault, "fault-503", "fault-503"),
        "fgarbage": two_tiers(fault, "fault-malformed", "fault-malformed"),
        "tiny": two_tiers(fault, "cheap", "strong", max_prompt_chars=40),
    }
    hang = two_tiers(fault, "fault-hang", "fault-hang")
    for t in hang["tiers"]:
        t.update(one_try)
    models["fhang"] = hang
    server = serve(models, max_body_bytes=4096)
    yield server
    server.stop()


@pytest.fixture
def client(srv: ServeThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0)


@pytest.fixture(autouse=True)
def _clean(fault: FaultServer) -> None:
    fault.reset_stats()
    fault.hang_s = 3600.0


def test_non_streaming_answer_and_decision_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="ok", messages=Q)
    r = raw.parse()
    meta = r.model_extra["semcascade"]  # type: ignore[index]
    assert r.choices[0].message.content == "Paris" and r.model == "ok" and r.object == "chat.completion"
    h = raw.headers
    assert h["x-semcascade-tier"] == meta["tier"] == "cheap" and h["x-semcascade-escalated"] == "false"
    assert h["x-semcascade-speculated"] == "none"  # no tier speculates in this config
    assert h["x-semcascade-request-id"] == r.id == meta["request_id"]
    assert float(h["x-semcascade-agreement"]) == pytest.approx(meta["agreement"], abs=1e-4)
    assert float(h["x-semcascade-cost"]) == pytest.approx(meta["cost"], rel=1e-5) and meta["cost"] > 0
    assert r.usage is not None and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    assert "trace" not in meta


def test_escalation_headers_and_trace_on_request(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="esc", messages=Q, extra_body={"semcascade": {"trace": True}}
    )
    r = raw.parse()
    meta = r.model_extra["semcascade"]  # type: ignore[index]
    assert raw.headers["x-semcascade-tier"] == "strong" and raw.headers["x-semcascade-escalated"] == "true"
    assert [t["tier"] for t in meta["trace"]] == ["cheap", "strong"]
    assert meta["trace"][0]["decision"] == "escalate" and len(meta["trace"][0]["samples"]) == 3
    assert r.choices[0].message.content == LONG_ANSWER


def _stream(client: openai.OpenAI, model: str, **kw: Any) -> tuple[list[Any], str]:
    chunks = list(client.chat.completions.create(model=model, messages=Q, stream=True, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks, text


def test_stream_decided_answer_is_sent_at_once(client: openai.OpenAI) -> None:
    chunks, text = _stream(client, "ok", stream_options={"include_usage": True})
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert text == "Paris" and len(content) == 1 and content[0].choices[0].delta.role == "assistant"
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert final.model_extra["semcascade"]["tier"] == "cheap"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_stream_last_tier_live_and_no_draft_leaks(client: openai.OpenAI, fault: FaultServer) -> None:
    chunks, text = _stream(client, "esc")
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason).model_extra["semcascade"]
    assert final["tier"] == "strong" and final["tier_index"] == 1 and final["escalated"] is True
    assert text == LONG_ANSWER
    assert len(content) == len(LONG_ANSWER.split())  # live: a delta per word, as the fault server streams
    assert not any(d in text for d in DRAFTS)  # the cheap tier's rejected drafts never reach the client
    assert [b.get("stream") for b in fault.requests_seen] == [None, True]  # cheap sampled, strong streamed
    assert chunks[-1].usage is None  # no usage chunk unless asked


def test_request_fields_apply_to_every_tier(client: openai.OpenAI, fault: FaultServer) -> None:
    r = client.chat.completions.create(model="esc", messages=Q, temperature=0.3, max_tokens=2, stop=["zz"], seed=11)
    bodies = list(fault.requests_seen)
    assert len(bodies) == 2
    for b in bodies:
        assert (b["temperature"], b["max_tokens"], b["stop"], b["seed"]) == (0.3, 2, ["zz"], 11)
    assert r.choices[0].message.content == "The capital"  # the fault server cuts at max_tokens words


async def test_async_client_concurrent(srv: ServeThread) -> None:
    async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="unused", max_retries=0) as client:
        calls = [client.chat.completions.create(model="ok" if i % 2 else "esc", messages=Q) for i in range(12)]
        answers = await asyncio.gather(*calls)
        stream = await client.chat.completions.create(model="esc", messages=Q, stream=True)
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert [a.choices[0].message.content for a in answers] == [
        LONG_ANSWER if i % 2 == 0 else "Paris" for i in range(12)
    ]
    assert streamed == LONG_ANSWER


BAD_INPUTS = [
    ("n>1", {"n": 2}, openai.BadRequestError, "n", "unsupported_parameter"),
    ("tools", {"tools": [{"type": "function", "function": {"name": "f"}}]}, openai.BadRequestError, "tools", "unsupported_parameter"),
    ("response_format", {"response_format": {"type": "json_object"}}, openai.BadRequestError, "response_format", "unsupported_parameter"),
    ("unknown-field", {"extra_body": {"frobnicate": 1}}, openai.BadRequestError, "frobnicate", "unknown_parameter"),
    ("wrong-type", {"temperature": "hot"}, openai.BadRequestError, "temperature", "invalid_value"),
    ("out-of-range", {"temperature": 9}, openai.BadRequestError, "temperature", "invalid_value"),
    ("empty-messages", {"messages": []}, openai.BadRequestError, "messages", "invalid_value"),
    ("bad-role", {"messages": [{"role": "tool", "content": "x"}]}, openai.BadRequestError, "messages.0.role", "invalid_value"),
    ("unknown-model", {"model": "gpt-nope"}, openai.NotFoundError, "model", "model_not_found"),
    ("too-long-for-every-tier", {"model": "tiny", "messages": [{"role": "user", "content": "x" * 200}]}, openai.BadRequestError, "messages", "context_length_exceeded"),
    ("empty-prompt", {"messages": [{"role": "user", "content": "   "}]}, openai.BadRequestError, "messages", "invalid_prompt"),
    ("oversized", {"messages": [{"role": "user", "content": "x" * 5000}]}, openai.APIStatusError, None, "request_too_large"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "kwargs", "error", "param", "code"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_a_typed_openai_error(
    client: openai.OpenAI, case: str, kwargs: dict[str, Any], error: type[Exception], param: str | None, code: str
) -> None:
    args: dict[str, Any] = {"model": "ok", "messages": Q, **kwargs}
    with pytest.raises(error) as info:
        client.chat.completions.create(**args)
    exc = info.value
    assert isinstance(exc, openai.APIStatusError)
    body = exc.response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["code"] == code and body["param"] == param
    assert "Traceback" not in exc.response.text
    if case == "oversized":
        assert exc.status_code == 413


@pytest.mark.parametrize(
    ("payload", "code"),
    [(b"{not json", "invalid_json"), (b"[1, 2]", "invalid_request"), (b'{"model": "ok"}', "invalid_value")],
)
def test_malformed_json_is_400(srv: ServeThread, payload: bytes, code: str) -> None:
    r = httpx.post(srv.base_url + "/chat/completions", content=payload, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == code


def test_unknown_path_and_method_are_openai_errors(srv: ServeThread) -> None:
    for r, status in ((httpx.get(srv.url + "/v2/nothing"), 404), (httpx.get(srv.base_url + "/chat/completions"), 405)):
        assert r.status_code == status and set(r.json()["error"]) == {"message", "type", "param", "code"}


PROVIDER_FAULTS = [
    ("f500", openai.InternalServerError, 502, "upstream_error"),
    ("f503", openai.InternalServerError, 503, "upstream_unavailable"),
    ("fgarbage", openai.InternalServerError, 502, "upstream_error"),
    ("f429", openai.InternalServerError, 503, "upstream_unavailable"),
    ("fhang", openai.InternalServerError, 504, "upstream_timeout"),
]


@pytest.mark.parametrize(("model", "error", "status", "code"), PROVIDER_FAULTS, ids=[f[0] for f in PROVIDER_FAULTS])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_provider_faults_map_to_gateway_errors(
    client: openai.OpenAI, fault: FaultServer, model: str, error: type[Exception], status: int, code: str, stream: bool
) -> None:
    fault.hang_s = 2.0  # the hung answers end soon after the test
    with pytest.raises(error) as info:
        if stream:
            list(client.chat.completions.create(model=model, messages=Q, stream=True))
        else:
            client.chat.completions.create(model=model, messages=Q)
    exc = info.value
    assert isinstance(exc, openai.APIStatusError) and exc.status_code == status
    assert exc.response.json()["error"]["code"] == code
    assert ("retry-after" in exc.response.headers) == (status == 503)


def test_deadline_header(client: openai.OpenAI, fault: FaultServer) -> None:
    fault.script("latency", "latency")
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="ok", messages=Q, extra_headers={"x-semcascade-deadline": "0.1"})
    assert info.value.status_code == 504 and info.value.response.json()["error"]["code"] == "deadline_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="ok", messages=Q, extra_headers={"x-semcascade-deadline": "soon"})


async def test_disconnect_cancels_provider_calls(srv: ServeThread, fault: FaultServer) -> None:
    """The client gives up while the cheap tier is in flight: its call is cancelled and the strong tier never starts."""
    fault.script("latency")  # the cheap tier's one (native n) request answers after 0.3 s ... and disagrees
    body = {"model": "esc", "messages": Q}
    async with httpx.AsyncClient() as http:
        call = asyncio.ensure_future(http.post(srv.base_url + "/chat/completions", json=body, timeout=30))
        while fault.stats.in_flight == 0:  # the cheap tier's call is at the provider
            await asyncio.sleep(0.005)
        call.cancel()  # the client hangs up
        with contextlib.suppress(asyncio.CancelledError):
            await call
    for _ in range(1000):  # the server saw the disconnect ...
        text = httpx.get(srv.url + "/metrics").text
        if metric(text, "semcascade_requests_total", model="esc", status="499") == 1:
            break
        await asyncio.sleep(0.01)
    while fault.stats.in_flight:  # ... and the cheap tier's (latency) answer is over
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)  # time enough for an escalation to start, were the call not cancelled
    assert metric(text, "semcascade_requests_total", model="esc", status="499") == 1
    assert fault.stats.requests == 1  # no provider call started after the disconnect
    assert metric(text, "semcascade_in_flight", model="esc") == 0


def test_models_health_ready_metrics(srv: ServeThread, client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["ok", "esc", "f500", "f429", "f503", "fgarbage", "tiny", "fhang"]
    assert httpx.get(srv.url + "/health").json() == {"status": "ok"}
    assert httpx.get(srv.url + "/ready").status_code == 200
    before = httpx.get(srv.url + "/metrics").text
    client.chat.completions.create(model="esc", messages=Q)
    list(client.chat.completions.create(model="ok", messages=Q, stream=True))
    after = httpx.get(srv.url + "/metrics").text

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("semcascade_requests_total", model="esc", status="200") == 1
    assert delta("semcascade_requests_total", model="ok", status="200") == 1
    assert delta("semcascade_answered_total", model="esc", tier="strong") == 1
    assert delta("semcascade_escalations_total", model="esc", tier="cheap") == 1
    assert delta("semcascade_time_to_first_token_seconds_count", model="ok", escalated="false") == 1
    assert delta("semcascade_tokens_total", model="esc", tier="strong", kind="completion") == len(LONG_ANSWER.split())


def test_provider_errors_and_retries_are_counted(srv: ServeThread, client: openai.OpenAI, fault: FaultServer) -> None:
    before = httpx.get(srv.url + "/metrics").text
    fault.script("500")  # the cheap tier's first attempt fails, its retry answers
    assert client.chat.completions.create(model="ok", messages=Q).choices[0].message.content == "Paris"
    after = httpx.get(srv.url + "/metrics").text
    assert (
        metric(after, "semcascade_provider_errors_total", model="ok", type="server_error")
        - metric(before, "semcascade_provider_errors_total", model="ok", type="server_error")
        == 1
    )
    assert (
        metric(after, "semcascade_retries_total", model="ok", tier="cheap")
        - metric(before, "semcascade_retries_total", model="ok", tier="cheap")
        == 1
    )


def test_openapi_document_lists_the_request_schema(srv: ServeThread) -> None:
    spec = httpx.get(srv.url + "/openapi.json").json()
    props = spec["components"]["schemas"]["ChatRequest"]["properties"]
    assert {"model", "messages", "temperature", "max_tokens", "stop", "seed", "stream"} <= set(props)
    assert set(spec["paths"]["/v1/chat/completions"]["post"]["responses"]) >= {"200", "400", "404", "413", "503"}
    json.dumps(spec)
