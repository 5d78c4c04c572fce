"""`semcascade serve` operations: API keys, saturation, SIGTERM drain, the CLI banner, the request log line."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from serve_fixtures import metric, serve, start_fault_server, two_tiers

from semcascade.config import ServeConfig
from semcascade.errors import ServeError
from semcascade.serve.app import create_app, observed_cascade
from semcascade.testing import FaultServer

REPO = Path(__file__).resolve().parents[2]
Q = [{"role": "user", "content": "What is the capital of France?"}]
KEYS_ENV = "SEMCASCADE_TEST_SERVE_KEYS"


@pytest.fixture(scope="module")
def fault() -> Iterator[FaultServer]:
    server = start_fault_server()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean(fault: FaultServer) -> None:
    fault.reset_stats()


def test_auth_keys_from_env_and_file(fault: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    monkeypatch.setenv(KEYS_ENV, "sk-env-key-1, sk-env-key-2")
    keyfile = tmp_path / "keys"
    keyfile.write_text("# serve keys\nsk-file-key\n")
    srv = serve({"ok": two_tiers(fault, "cheap", "strong")}, auth="required", api_keys_env=KEYS_ENV,
                api_keys_file=str(keyfile))  # fmt: skip
    caplog.set_level(logging.INFO, logger="semcascade.serve")
    try:
        for key in ("sk-env-key-1", "sk-env-key-2", "sk-file-key"):
            c = openai.OpenAI(base_url=srv.base_url, api_key=key, max_retries=0)
            assert c.chat.completions.create(model="ok", messages=Q).choices[0].message.content == "Paris"
        for key in ("sk-wrong", "sk-env-key-1x", ""):
            c = openai.OpenAI(base_url=srv.base_url, api_key=key or "-", max_retries=0)
            with pytest.raises(openai.AuthenticationError) as info:
                c.chat.completions.create(model="ok", messages=Q)
            assert info.value.response.json()["error"]["code"] == "invalid_api_key"
            assert "sk-" not in info.value.response.text
        assert httpx.get(srv.url + "/metrics").status_code == 401
        assert httpx.get(srv.base_url + "/models").status_code == 401
        assert httpx.get(srv.url + "/health").status_code == 200  # liveness needs no key
        text = httpx.get(srv.url + "/metrics", headers={"authorization": "Bearer sk-file-key"}).text
        assert metric(text, "semcascade_requests_total", model="ok", status="200") == 3
        assert metric(text, "semcascade_requests_total", status="401") == 3
        assert "sk-" not in text
        assert "sk-" not in caplog.text and '"request_id"' in caplog.text
    finally:
        srv.stop()


def test_auth_misconfiguration_is_a_serve_error(fault: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    cascade = observed_cascade(two_tiers(fault, "cheap", "strong"))
    monkeypatch.delenv(KEYS_ENV, raising=False)
    with pytest.raises(ServeError, match=KEYS_ENV):
        create_app({"ok": cascade}, ServeConfig(api_keys_env=KEYS_ENV))
    with pytest.raises(ServeError, match="loopback"):
        create_app({"ok": cascade}, ServeConfig(auth="off"), host="0.0.0.0")
    with pytest.raises(ServeError, match="cannot be read"):
        create_app({"ok": cascade}, ServeConfig(api_keys_file="/nonexistent/keys"))


def test_saturation_is_503_with_retry_after(fault: FaultServer) -> None:
    srv = serve({"ok": two_tiers(fault, "cheap", "strong")}, max_in_flight=1, max_queue=1, retry_after_s=3)
    try:
        fault.latency_s = 1.0
        fault.script("latency", "latency")  # the first two requests take 1 s each: one runs, one waits
        results: list[int] = []

        def call() -> None:
            results.append(
                httpx.post(srv.base_url + "/chat/completions", json={"model": "ok", "messages": Q}).status_code
            )

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        admission = srv.server.config.app.state.serve.admission
        while admission.admitted < 2:  # one runs (at the provider), one waits for the slot
            time.sleep(0.005)
        c = openai.OpenAI(base_url=srv.base_url, api_key="-", max_retries=0)
        with pytest.raises(openai.InternalServerError) as info:
            c.chat.completions.create(model="ok", messages=Q)
        assert info.value.status_code == 503 and info.value.response.headers["retry-after"] == "3"
        assert info.value.response.json()["error"]["code"] == "server_overloaded"
        for t in threads:
            t.join()
        assert results == [200, 200]
    finally:
        fault.latency_s = 0.3
        srv.stop()


def test_request_log_line_has_no_prompt_unless_enabled(fault: FaultServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="semcascade.serve")
    for log_prompts in (False, True):
        caplog.clear()
        srv = serve({"ok": two_tiers(fault, "cheap", "strong")}, log_prompts=log_prompts)
        try:
            httpx.post(srv.base_url + "/chat/completions", json={"model": "ok", "messages": Q})
        finally:
            srv.stop()
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "semcascade.serve"]
        assert len(lines) == 1 and lines[0]["status"] == 200 and lines[0]["tier"] == "cheap"
        assert ("capital of France" in caplog.text) == log_prompts


def _serve_process(config: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "semcascade.cli", "serve", "--config", str(config), "--port", "0", "--no-auth"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
    )  # fmt: skip


def test_sigterm_drains_in_flight_and_refuses_new(fault: FaultServer, tmp_path: Path) -> None:
    cfg = two_tiers(fault, "cheap", "strong")
    cfg["serve"] = {"shutdown_grace_s": 5, "model_name": "drain"}
    path = tmp_path / "drain.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = _serve_process(path)
    try:
        assert proc.stdout is not None
        base = None
        banner = []
        for line in proc.stdout:
            banner.append(line)
            if "semcascade serve: http://" in line:
                base = line.split()[2].removesuffix("/v1")
            if "openai.OpenAI(base_url=" in line:
                break
        assert base is not None, "".join(banner)

        # keep reading the server's output: a full pipe would block its log writes, and so its requests
        def drain() -> None:
            for x in proc.stdout or ():
                banner.append(x)

        threading.Thread(target=drain, daemon=True).start()
        fault.script("latency")  # the in-flight request takes 0.3 s at the provider
        outcome: dict[str, object] = {}

        def slow() -> None:
            r = httpx.post(base + "/v1/chat/completions", json={"model": "drain", "messages": Q}, timeout=10)
            outcome["status"], outcome["body"] = r.status_code, r.json()

        seen = fault.stats.requests  # an earlier test's request may still be in flight: wait for this one
        t = threading.Thread(target=slow)
        t.start()
        deadline = time.monotonic() + 30
        while (fault.stats.requests == seen or fault.stats.in_flight == 0) and t.is_alive():
            assert time.monotonic() < deadline, "the request never reached the provider:\n" + "".join(banner[-20:])
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        t.join(timeout=10)
        assert outcome.get("status") == 200, outcome  # the in-flight request finished
        with pytest.raises(httpx.TransportError):  # new connections are refused
            for _ in range(50):
                httpx.post(base + "/v1/chat/completions", json={"model": "drain", "messages": Q}, timeout=2)
                time.sleep(0.02)
        # uvicorn re-raises the captured SIGTERM once it has drained and run the shutdown (cascades closed)
        assert proc.wait(timeout=10) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_otel_span_per_request_and_tier(fault: FaultServer) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from semcascade.serve.otel import RequestTracer

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    srv = serve(
        {"esc": two_tiers(fault, "cheap-split", "strong-long"), "f500": two_tiers(fault, "fault-500", "fault-500")}
    )
    srv.server.config.app.state.serve.tracer = RequestTracer(provider)
    try:
        ok = httpx.post(srv.base_url + "/chat/completions", json={"model": "esc", "messages": Q})
        bad = httpx.post(srv.base_url + "/chat/completions", json={"model": "f500", "messages": Q})
    finally:
        srv.stop()
    assert (ok.status_code, bad.status_code) == (200, 502)
    spans = exporter.get_finished_spans()
    requests = [s for s in spans if s.name == "semcascade.request"]
    assert [r.attributes["semcascade.request_id"] for r in requests] == [
        ok.headers["x-semcascade-request-id"],
        bad.headers["x-semcascade-request-id"],
    ]
    first, failed = requests
    assert first.attributes["semcascade.tier"] == "strong" and first.attributes["semcascade.escalated"] is True
    tiers = [s for s in spans if s.name == "semcascade.tier" and s.parent.span_id == first.context.span_id]
    assert [(t.attributes["semcascade.tier"], t.attributes["semcascade.decision"]) for t in tiers] == [
        ("cheap", "escalate"),
        ("strong", "accept"),
    ]
    assert failed.status.status_code.name == "ERROR" and failed.attributes["error.type"] == "CascadeFailedError"
