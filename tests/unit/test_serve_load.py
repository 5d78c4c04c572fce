"""Load on `semcascade serve`: 2,000 requests from 64 concurrent openai clients, streaming and not, with 20%
of provider calls faulty. Every request ends in a well-formed answer or OpenAI error; /metrics counts
exactly what the clients saw; no task or socket outlives the shutdown. Invariants only, no timings."""

from __future__ import annotations

import asyncio
import collections

import httpx
import openai
import pytest
from serve_fixtures import metric

from semcascade.config import ServeConfig
from semcascade.serve.app import create_app, observed_cascade
from semcascade.testing import FaultServer
from semcascade.testing.load import KEY_ENV, load_answer, load_config, open_tcp_sockets
from semcascade.testing.serve_thread import ServeThread

CALLS = 2000
CONCURRENCY = 64
Q = [{"role": "user", "content": "What is the capital of France?"}]


async def _one(client: openai.AsyncOpenAI, i: int, seen: collections.Counter[str]) -> None:
    stream = i % 2 == 1
    try:
        if stream:
            chunks = [c async for c in await client.chat.completions.create(model="load", messages=Q, stream=True)]
            final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
            assert len(final) == 1 and final[0].model_extra["semcascade"]["tier"] in ("cheap", "strong")
            assert chunks[-1].choices == [] or chunks[-1].choices[0].finish_reason  # ended by the final chunk
        else:
            r = await client.chat.completions.create(model="load", messages=Q)
            assert r.choices[0].message.role == "assistant" and r.choices[0].finish_reason
        seen["200"] += 1
    except openai.APIStatusError as exc:  # an HTTP error: OpenAI's shape, a documented status
        body = exc.response.json()["error"]
        assert set(body) == {"message", "type", "param", "code"}, body
        assert exc.status_code in (502, 503, 504), (exc.status_code, body)
        seen[str(exc.status_code)] += 1
    except openai.APIError as exc:  # an error event after a stream began (a live stream that broke off)
        assert stream and isinstance(exc.body, dict) and exc.body.get("code"), exc
        seen["200"] += 1
        seen["stream_error"] += 1


@pytest.mark.load
async def test_serve_load_with_faults() -> None:
    import os

    os.environ.setdefault(KEY_ENV, "fault-dummy-key")
    with FaultServer(seed=3, answer=load_answer, retry_after="0", latency_s=0.05, fault_rate=0.2) as fault:
        cfg = load_config(fault.base_url, deadline_s=60.0, timeout_s=2.0)  # no deadline misses on a busy machine
        app = create_app({"load": observed_cascade(cfg)}, ServeConfig(auth="off", max_in_flight=64, max_queue=64))
        srv = ServeThread(app).start()
        seen: collections.Counter[str] = collections.Counter()
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(limits=limits, timeout=180) as http:
            client = openai.AsyncOpenAI(base_url=srv.base_url, api_key="-", max_retries=0, http_client=http)
            gate = asyncio.Semaphore(CONCURRENCY)

            async def bounded(i: int) -> None:
                async with gate:
                    await _one(client, i, seen)

            await asyncio.gather(*(bounded(i) for i in range(CALLS)))
            text = (await http.get(srv.url + "/metrics")).text
        state = app.state.serve
        srv.stop()
        faults = sum(v for k, v in fault.stats.by_fault.items() if k != "ok")
        sockets_to_fault = open_tcp_sockets(fault.port)
    sockets_to_serve = open_tcp_sockets(srv.port)

    assert sum(v for k, v in seen.items() if k != "stream_error") == CALLS
    assert faults > 0.1 * fault.stats.requests  # the faults really happened
    assert seen["200"] > 0.9 * CALLS
    # /metrics counts what the clients saw, status by status
    for status in ("200", "502", "503", "504"):
        assert metric(text, "semcascade_requests_total", model="load", status=status) == seen[status], status
    assert metric(text, "semcascade_stream_errors_total", model="load") == seen["stream_error"]
    assert metric(text, "semcascade_request_latency_seconds_count", model="load") == CALLS
    assert metric(text, "semcascade_in_flight", model="load") == 0
    # nothing leaked: no semcascade task pending at shutdown, no socket left open either way
    assert state.leftover_tasks == []
    assert sockets_to_serve == (0, 0) and sockets_to_fault == (0, 0)
