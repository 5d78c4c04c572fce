"""LocalServerGuard: a managed server that dies mid-run is restarted once and the call retried.

Runs against a fake ``llama-server`` (a small real HTTP server on loopback that
also answers ``/v1/chat/completions`` with its pid), through the real
:class:`LiteLLMProvider`, and kills it with SIGKILL like the OOM killer would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from semcascade import Cascade
from semcascade.errors import LocalServerError, ProviderError
from semcascade.local.guard import LocalServerGuard
from semcascade.local.process import group_alive, pid_alive
from semcascade.local.server import LocalServer, stop_running_server
from semcascade.local.state import read_state
from semcascade.providers import CompletionRequest, LiteLLMProvider, MockProvider
from tests.helpers import install_fake_llama_server, local_server_config

FAKE_SERVER = textwrap.dedent(
    """\
    #!{python}
    import json, os, subprocess, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path

    args = sys.argv[1:]
    if "--version" in args:
        print("version: fake")
        sys.exit(0)
    opt = lambda name: args[args.index(name) + 1]
    mode = os.environ.get("FAKE_LLAMA_MODE", "ok")
    print("fake llama-server pid %d" % os.getpid(), flush=True)
    if mode == "exit":
        print("error: fake start failure", flush=True)
        sys.exit(1)
    models = Path(opt("--models-dir"))
    if os.environ.get("FAKE_CHILD_PID_FILE"):  # like the router's model child process
        child = subprocess.Popen(["sleep", "300"])
        Path(os.environ["FAKE_CHILD_PID_FILE"]).write_text(str(child.pid))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/health":
                self.reply(200, {{"status": "ok"}})
            elif path in ("/v1/models", "/models"):
                self.reply(200, {{"data": [{{"id": p.stem}} for p in sorted(models.glob("*.gguf"))]}})
            else:
                self.reply(404, {{}})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if mode == "500":
                self.reply(500, {{"error": {{"message": "fake failure", "type": "server_error"}}}})
                return
            n = body.get("n", 1)
            text = "pid %d" % os.getpid()
            choices = [
                {{"index": i, "message": {{"role": "assistant", "content": text}}, "finish_reason": "stop"}}
                for i in range(n)
            ]
            self.reply(200, {{"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": choices, "usage": {{"prompt_tokens": 3, "completion_tokens": n}}}})

        def log_message(self, *a):
            pass

    ThreadingHTTPServer((opt("--host"), int(opt("--port"))), Handler).serve_forever()
    """
)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cache in tmp, the fake binary as $SEMCASCADE_LLAMA_SERVER, and no-op model assembly."""
    yield install_fake_llama_server(tmp_path, monkeypatch, FAKE_SERVER)
    stop_running_server(grace=1.0)


@pytest.fixture
def server(fake: Path) -> Iterator[LocalServer]:
    srv = LocalServer(local_server_config(), ["smollm2-135m"], progress=False)
    srv.start()
    yield srv
    srv.stop()


def request(base: str, n: int = 1) -> CompletionRequest:
    return CompletionRequest(
        model="openai/smollm2-135m", messages=[{"role": "user", "content": "hi"}], n=n, api_base=base,
        api_key="local", timeout=10.0, tier="cheap",
    )  # fmt: skip


def kill9(pid: int | None) -> None:
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(pid)


async def test_dead_server_is_restarted_on_the_same_port_and_the_call_answered(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    guard = LocalServerGuard(LiteLLMProvider(), server)
    base, old_pid, old_log = server.base_url, server.pid, server.log_path
    first = await guard.complete(request(base))
    assert first.choices[0].text == f"pid {old_pid}"
    kill9(old_pid)
    with caplog.at_level(logging.WARNING, logger="semcascade.local"):
        second = await guard.complete(request(base, n=3))
    assert guard.restarts == 1
    assert server.pid != old_pid and server.process_alive()
    assert [c.text for c in second.choices] == [f"pid {server.pid}"] * 3
    assert server.base_url == base  # the old port was free again, so it was kept
    state = read_state()
    assert state is not None and state.pid == server.pid
    # the dead server's log is kept (not overwritten by the new server on the same port) and named
    assert server.crash_log is not None and f"fake llama-server pid {old_pid}" in server.crash_log.read_text()
    assert old_log is not None and f"pid {server.pid}" in old_log.read_text()
    assert any(str(server.crash_log) in r.getMessage() for r in caplog.records)


def bind_when_released(sock: socket.socket, port: int, timeout: float = 15.0) -> None:
    """Bind ``port`` once the dead server's connections have let go of it (a connection the killed server
    had open can hold the port for a moment after the process is gone)."""
    import gc

    gc.collect()  # close client sockets nobody references any more
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.bind(("127.0.0.1", port))
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def test_port_taken_after_the_death_moves_the_server_and_readdresses_old_requests(server: LocalServer) -> None:
    guard = LocalServerGuard(LiteLLMProvider(), server)
    old_base, old_port = server.base_url, server.port
    kill9(server.pid)
    squatter = socket.socket()
    try:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bind_when_released(squatter, old_port)
        squatter.listen()
        out = await guard.complete(request(old_base))
        assert server.port != old_port and out.choices[0].text == f"pid {server.pid}"
        again = await guard.complete(request(old_base))  # requests still built with the old address
        assert again.choices[0].text == f"pid {server.pid}" and guard.restarts == 1
    finally:
        squatter.close()


async def test_concurrent_calls_that_see_the_death_share_one_restart(server: LocalServer) -> None:
    guard = LocalServerGuard(LiteLLMProvider(), server)
    base = server.base_url
    kill9(server.pid)
    outs = await asyncio.gather(*(guard.complete(request(base)) for _ in range(6)))
    assert guard.restarts == 1
    assert {o.choices[0].text for o in outs} == {f"pid {server.pid}"}


async def test_orphaned_model_children_of_the_dead_router_are_killed(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.stop()
    child_file = tmp_path / "child.pid"
    monkeypatch.setenv("FAKE_CHILD_PID_FILE", str(child_file))
    server.start()
    router = server.pid
    assert router is not None and group_alive(router)
    child = int(child_file.read_text())
    kill9(router)
    assert pid_alive(child) and group_alive(router)  # the router's child outlives it
    guard = LocalServerGuard(LiteLLMProvider(), server)
    await guard.complete(request(server.base_url))
    assert guard.restarts == 1
    assert not group_alive(router) and not pid_alive(child)


async def test_failed_restart_raises_a_local_server_error_naming_the_crash_log(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = LocalServerGuard(LiteLLMProvider(), server)
    base, old_pid = server.base_url, server.pid
    kill9(old_pid)
    monkeypatch.setenv("FAKE_LLAMA_MODE", "exit")  # the next start fails
    with pytest.raises(LocalServerError) as info:
        await guard.complete(request(base))
    msg = str(info.value)
    assert "died" in msg and "could not be restarted" in msg
    assert f"-crashed-{old_pid}.log" in msg  # where to look for why it died
    assert "llama-server exited with code 1 while starting" in msg  # why the restart failed, with its log
    assert guard.restarts == 0


async def test_a_server_that_keeps_dying_is_not_restarted_forever(server: LocalServer) -> None:
    guard = LocalServerGuard(LiteLLMProvider(), server, max_restarts=1)
    kill9(server.pid)
    await guard.complete(request(server.base_url))
    kill9(server.pid)
    with pytest.raises(LocalServerError, match=r"died 2 times in this run.*not restarted again.*out of memory"):
        await guard.complete(request(server.base_url))
    assert guard.restarts == 1 and not server.process_alive()


async def test_errors_from_a_live_server_propagate_without_a_restart(
    fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", "500")
    with LocalServer(local_server_config(), ["smollm2-135m"], progress=False) as srv:
        guard = LocalServerGuard(LiteLLMProvider(), srv)
        pid = srv.pid
        with pytest.raises(ProviderError):
            await guard.complete(request(srv.base_url))
        assert guard.restarts == 0 and srv.pid == pid


async def test_requests_to_other_providers_are_never_touched(server: LocalServer) -> None:
    def fail(req: CompletionRequest) -> object:
        raise ProviderError("remote is down", model=req.model)

    inner = MockProvider(fail)  # type: ignore[arg-type]
    guard = LocalServerGuard(inner, server)
    kill9(server.pid)  # even with the local server dead, a remote failure is not a reason to restart it
    with pytest.raises(ProviderError, match="remote is down"):
        await guard.complete(request("https://api.example.invalid/v1"))
    assert guard.restarts == 0 and inner.calls[0].api_base == "https://api.example.invalid/v1"


def test_cascade_on_local_tiers_survives_a_killed_server(fake: Path) -> None:
    config = {
        "tiers": [
            {"name": "cheap", "model": "local/smollm2-135m", "k": 3, "threshold": 0.5},
            {"name": "strong", "model": "local/qwen2.5-coder-0.5b", "k": 1},
        ],
        "scorer": {"name": "lexical"},
        "local_server": {"startup_timeout": 15.0},
    }
    with Cascade(config) as cascade:
        first = cascade.generate_sync("What is 2+2?")
        server = cascade.local_server
        assert server is not None and first.text == f"pid {server.pid}" and first.tier == "cheap"
        old = server.pid
        kill9(old)
        second = cascade.generate_sync("What is 2+2?")
        assert server.pid != old and second.text == f"pid {server.pid}" and second.tier == "cheap"
        assert not second.trace[0].errors
