"""A planted API key never appears in any output of a run, including failing runs.

The key lives only in the environment variable named by ``api_key_env``. The
cascade runs through the real :class:`LiteLLMProvider` against a loopback stub
that behaves like the worst provider: its 401 and 500 error bodies echo the
``Authorization`` header back, and one model hangs past the tier's timeout.
Then every output is grepped for the key: the result JSON and trace, reprs,
exception messages and formatted tracebacks (with their chained causes), log
records at DEBUG from every logger (litellm's own included), stdout/stderr,
the CLI's output (``semcascade.cli.main`` in process), and an eval's files
plus its response cache.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from semcascade import Cascade
from semcascade.cli import main
from semcascade.errors import AuthenticationError, CascadeFailedError, SemcascadeError
from semcascade.evaluation.harness import run_eval

KEY_ENV = "SEMCASCADE_PLANTED_KEY"
KEY = "sk-planted-" + os.urandom(16).hex()
NO_RETRY = {"max_attempts": 2, "backoff_base_s": 0.0, "backoff_max_s": 0.0, "retry_after_max_s": 0.0}


class EchoingProvider(BaseHTTPRequestHandler):
    """``/v1/chat/completions``: the model name picks the behaviour; errors echo the caller's headers."""

    protocol_version = "HTTP/1.1"

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model = str(body.get("model", ""))
        auth = self.headers.get("Authorization", "")
        if model.startswith("echo-401"):
            self._send(401, {"error": {"message": f"Incorrect API key provided: {auth}", "type": "invalid_api_key"}})
        elif model.startswith("echo-500"):
            self._send(500, {"error": {"message": f"internal error handling {auth}", "type": "server_error"}})
        elif model.startswith("hang"):
            time.sleep(3.0)
            self._send(500, {"error": {"message": "too late"}})
        else:
            n = int(body.get("n") or 1)
            choices = [
                {"index": i, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}
                for i in range(n)
            ]
            self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": model,
                             "choices": choices, "usage": {"prompt_tokens": 5, "completion_tokens": n}})  # fmt: skip

    def log_message(self, *args: Any) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client hung up on a hanging request: expected


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    httpd = QuietServer(("127.0.0.1", 0), EchoingProvider)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def planted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record at DEBUG, from every logger (litellm, httpx, openai, semcascade ...)."""
    names = ["", "LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "httpx", "httpcore", "openai", "semcascade"]
    for name in names:
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def tier(base_url: str, name: str, model: str, **over: Any) -> dict[str, Any]:
    return {"name": name, "model": f"openai/{model}", "api_base": base_url, "api_key_env": KEY_ENV, "k": 2,
            "max_tokens": 8, "threshold": 0.5, "timeout": 0.5, "retry": NO_RETRY, "input_cost_per_token": 1e-6,
            "output_cost_per_token": 2e-6, **over}  # fmt: skip


def rendered(exc: BaseException) -> str:
    """Everything an exception shows: message, repr, traceback, and its chained causes, even suppressed ones."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    x: BaseException | None = exc
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        parts += [str(x), repr(x), repr(vars(x)) if hasattr(x, "__dict__") else ""]
        x = x.__cause__ or x.__context__
    return "\n".join(parts)


def assert_clean(where: str, text: str) -> None:
    assert KEY not in text, f"the planted key leaked into {where}"
    assert KEY[3:] not in text, f"the planted key (without its prefix) leaked into {where}"


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    out = []
    for r in caplog.records:
        out.append(r.getMessage())
        if r.exc_info:
            out.append("".join(traceback.format_exception(*r.exc_info)))
        out.append(repr(r.__dict__))
    return "\n".join(out)


def test_failing_tiers_then_an_answer_leak_nothing(
    base_url: str, debug_logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    config = {
        "tiers": [
            tier(base_url, "server-error", "echo-500"),  # 500 whose body echoes the key, retried, then escalated
            tier(base_url, "slow", "hang"),  # times out
            tier(base_url, "strong", "ok", k=1),
        ],
        "scorer": {"name": "lexical"},
    }
    with Cascade(config) as cascade:
        result = cascade.generate_sync("What is the capital of France?")
        assert result.text == "Paris" and result.tier == "strong"
        errors = [e for t in result.trace for e in t.errors]
        assert any("500" in e or "server error" in e for e in errors) and any("timed out" in e for e in errors)
        assert any("***" in e for e in errors)  # the echoed key was there, and was redacted
        outputs = {
            "result JSON": result.model_dump_json(),
            "result summary": result.summary(),
            "result repr": repr(result),
            "trace": repr(result.trace),
            "cascade repr": repr(cascade) + repr(vars(cascade)),
            "config": repr(cascade.config) + cascade.config.model_dump_json(),
            "provider repr": repr(cascade.provider),
            "resolved tiers": repr(cascade.tiers),
        }
    outputs["logs"] = log_text(debug_logs)
    captured = capfd.readouterr()
    outputs["stdout/stderr"] = captured.out + captured.err
    for where, text in outputs.items():
        assert_clean(where, text)


def test_auth_error_with_the_key_echoed_leaks_nothing(
    base_url: str, debug_logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    config = {"tiers": [tier(base_url, "cheap", "echo-401"), tier(base_url, "strong", "ok", k=1)]}
    with Cascade({**config, "scorer": {"name": "lexical"}}) as cascade, pytest.raises(AuthenticationError) as info:
        cascade.generate_sync("What is the capital of France?")
    assert "authentication failed" in str(info.value)
    assert_clean("the exception", rendered(info.value))
    assert_clean("logs", log_text(debug_logs))
    captured = capfd.readouterr()
    assert_clean("stdout/stderr", captured.out + captured.err)


def test_every_tier_failing_leaks_nothing_in_the_cascade_failed_error(
    base_url: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    config = {"tiers": [tier(base_url, "a", "echo-500"), tier(base_url, "b", "hang")], "scorer": {"name": "lexical"}}
    with Cascade(config) as cascade, pytest.raises(CascadeFailedError) as info:
        cascade.generate_sync("What is the capital of France?")
    assert_clean("CascadeFailedError", rendered(info.value) + repr(info.value.trace))
    assert_clean("logs", log_text(debug_logs))


def test_cli_output_leaks_nothing(base_url: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    tiers = [tier(base_url, "cheap", "echo-500"), tier(base_url, "strong", "ok", k=1)]
    good.write_text(yaml.safe_dump({"tiers": tiers, "scorer": {"name": "lexical"}}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"tiers": [tier(base_url, "cheap", "echo-401")], "scorer": {"name": "lexical"}}))
    runs: dict[str, tuple[int, str, str]] = {}
    for name, args in {
        "generate": ["generate", "--config", str(good), "What is the capital of France?"],
        "generate --json": ["generate", "--json", "--config", str(bad.parent / "good.yaml"), "What is the capital?"],
        "failing generate": ["generate", "--config", str(bad), "What is the capital of France?"],
    }.items():
        code = main(args)
        captured = capfd.readouterr()
        runs[name] = (code, captured.out, captured.err)
    assert runs["generate"][0] == 0 and runs["generate"][1].strip() == "Paris"
    assert "--- trace" in runs["generate"][2] and "***" in runs["generate"][2]  # the echoed key, redacted
    assert runs["generate --json"][0] == 0 and json.loads(runs["generate --json"][1])["text"] == "Paris"
    code, out, err = runs["failing generate"]
    assert code == 2 and err.splitlines()[-1].startswith("semcascade: error: ") and "Traceback" not in err
    for name, (_, out, err) in runs.items():
        assert_clean(f"`semcascade {name}` output", out + err)


async def test_eval_outputs_and_response_cache_leak_nothing(
    base_url: str, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    config = {
        "tiers": [tier(base_url, "cheap", "ok", k=3, native_n=True), tier(base_url, "strong", "ok", k=1, temperature=0.0)],
        "scorer": {"name": "lexical"},
    }  # fmt: skip
    out, cache = tmp_path / "out", tmp_path / "responses.sqlite"
    report = await run_eval(
        Cascade(config).config, dataset="nq", n=3, signals=("lexical", "random"), cache_path=cache, out_dir=out,
        progress=False,
    )  # fmt: skip
    assert report.n == 3
    files = sorted(p for p in [*out.iterdir(), *tmp_path.glob("responses.sqlite*")] if p.is_file())
    assert {"examples.jsonl", "report.json", "report.md", "summary.csv", "responses.sqlite"} <= {p.name for p in files}
    for path in files:
        data = path.read_bytes()
        assert KEY.encode() not in data and KEY[3:].encode() not in data, f"the planted key leaked into {path.name}"
    assert_clean("eval report", repr(report) + report.markdown())
    assert_clean("logs", log_text(debug_logs))


def test_errors_raised_by_the_library_never_carry_the_key_in_their_attributes(base_url: str) -> None:
    """A SemcascadeError's public attributes (what a caller may log) stay clean too."""
    config = {"tiers": [tier(base_url, "cheap", "echo-401")], "scorer": {"name": "lexical"}}
    with Cascade(config) as cascade:
        try:
            cascade.generate_sync("hello?")
        except SemcascadeError as exc:
            assert_clean("exception attributes", repr(vars(exc)))
        else:
            raise AssertionError("the 401 did not raise")
