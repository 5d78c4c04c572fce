"""Schema fuzzing of POST /v1/chat/completions from the app's own OpenAPI document (hypothesis).

Bodies are drawn from the document's request properties (values of every JSON type, well-formed
messages now and then, unknown fields): the server answers each with a documented status and, for
an error, OpenAI's error shape; never a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_fixtures import serve, start_fault_server, two_tiers

from semcascade.testing.serve_thread import ServeThread


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ServeThread, dict[str, Any], httpx.Client]]:
    fault = start_fault_server()
    srv = serve({"ok": two_tiers(fault, "cheap", "strong")}, max_body_bytes=20_000)
    client = httpx.Client(base_url=srv.url, timeout=10)
    spec = client.get("/openapi.json").json()
    yield srv, spec, client
    client.close()
    srv.stop()
    fault.stop()


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
ROLE = st.sampled_from(["system", "developer", "user", "assistant", "tool", "", "USER"])
MESSAGE = st.fixed_dictionaries(
    {"role": ROLE, "content": st.one_of(st.text(max_size=20), st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=8)}), max_size=2), JSON)},
    optional={"name": st.text(max_size=70)},
)  # fmt: skip


def bodies(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    props = list(spec["components"]["schemas"]["ChatRequest"]["properties"])
    values = {p: JSON for p in props}
    values["model"] = st.sampled_from(["ok", "nope", ""]) | JSON
    values["messages"] = st.lists(MESSAGE, max_size=3) | JSON
    values["stream"] = st.booleans() | JSON
    values["n"] = st.integers(-2, 3) | JSON
    extra = st.dictionaries(
        st.sampled_from(["tools", "response_format", "frob", "top_p", "logprobs"]), JSON, max_size=2
    )
    obj = st.builds(lambda a, b: {**a, **b}, st.fixed_dictionaries({}, optional=values), extra)
    plausible = {
        "temperature": st.floats(-0.5, 2.5, allow_nan=False) | JSON,
        "max_tokens": st.integers(-1, 64) | JSON,
        "stop": st.none() | st.text(max_size=4) | st.lists(st.text(max_size=4), max_size=5),
        "seed": st.integers(-5, 2**64),
        "stream": st.booleans(),
        "stream_options": st.none() | st.fixed_dictionaries({"include_usage": st.booleans()}),
        "semcascade": st.none() | st.fixed_dictionaries({"trace": st.booleans()}),
        "user": st.text(max_size=8),
    }
    valid = st.builds(
        lambda over: {
            "model": "ok",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            **over,
        },
        st.fixed_dictionaries({}, optional=plausible),
    )
    return valid | obj | JSON


DOCUMENTED = {200, 400, 401, 404, 413, 429, 502, 503, 504}


def test_fuzzed_bodies_get_documented_statuses(server: tuple[ServeThread, dict[str, Any], httpx.Client]) -> None:
    _srv, spec, client = server
    documented = {int(c) for c in spec["paths"]["/v1/chat/completions"]["post"]["responses"]}
    assert documented == DOCUMENTED
    seen: set[int] = set()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(body=bodies(spec))
    def check(body: Any) -> None:
        r = client.post("/v1/chat/completions", json=body)
        seen.add(r.status_code)
        assert r.status_code in documented, (body, r.status_code, r.text)
        if r.status_code != 200:
            err = r.json()["error"]
            assert set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str)
        elif r.headers["content-type"].startswith("application/json"):
            assert r.json()["choices"][0]["message"]["role"] == "assistant"
        else:
            assert r.text.rstrip().endswith("data: [DONE]")

    check()
    assert {200, 400} <= seen
