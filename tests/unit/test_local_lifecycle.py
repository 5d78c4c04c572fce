"""LocalServer lifecycle against a fake llama-server (a tiny real HTTP server on loopback).

The fake is a Python script named ``llama-server`` that serves ``/health`` and
``/v1/models`` (the *.gguf files of ``--models-dir``) on ``--host``/``--port``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from semcascade.errors import LocalServerError
from semcascade.local.process import group_alive, pid_alive
from semcascade.local.server import LocalServer, server_args, server_status, stop_running_server
from semcascade.local.state import ServerState, read_state, state_path, write_state
from tests.helpers import install_fake_llama_server, local_server_config

REPO = Path(__file__).resolve().parents[2]

FAKE_SERVER = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path

    args = sys.argv[1:]
    if "--version" in args:
        print("version: fake")
        sys.exit(0)
    opt = lambda name: args[args.index(name) + 1]
    mode = os.environ.get("FAKE_LLAMA_MODE", "ok")
    if os.environ.get("FAKE_PID_FILE"):
        Path(os.environ["FAKE_PID_FILE"]).write_text(str(os.getpid()))
    print("fake llama-server starting, LLAMA_ARG_THREADS=%s" % os.environ.get("LLAMA_ARG_THREADS"), flush=True)
    if mode == "exit":
        print("error: couldn't bind HTTP server socket", flush=True)
        sys.exit(1)
    models = Path(opt("--models-dir"))
    if os.environ.get("FAKE_STUBBORN_CHILD"):  # like a model child that ignores SIGTERM
        import subprocess
        subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 300"])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/health" and mode == "ok":
                code, body = 200, {{"status": "ok"}}
            elif path == "/health":
                code, body = 503, {{"error": "loading"}}
            elif path in ("/v1/models", "/models"):
                code, body = 200, {{"data": [{{"id": p.stem}} for p in sorted(models.glob("*.gguf"))]}}
            else:
                code, body = 404, {{}}
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    ThreadingHTTPServer((opt("--host"), int(opt("--port"))), Handler).serve_forever()
    """
)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cache in tmp, the fake binary as $SEMCASCADE_LLAMA_SERVER, and no-op model assembly."""
    monkeypatch.setenv("LLAMA_ARG_THREADS", "99")  # must not reach the server
    yield install_fake_llama_server(tmp_path, monkeypatch, FAKE_SERVER)
    stop_running_server(grace=1.0)


def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_start_health_state_file_and_stop(fake: Path) -> None:
    server = LocalServer(local_server_config(), ["smollm2-135m"], progress=False).start()
    try:
        assert not server.reused
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.api_key == "local"
        assert httpx.get(f"{server.url}/health").status_code == 200
        state = read_state()
        assert state is not None and (state.pid, state.port) == (server.pid, server.port)
        assert state.binary == str(fake) and not state.detached
        assert server.log_path is not None
        log = server.log_path.read_text()
        assert "--models-dir" in log and "LLAMA_ARG_THREADS=None" in log  # inherited LLAMA_ARG_* dropped
        status = server_status(["smollm2-135m"])
        assert status.running and status.base_url == server.base_url and status.pid == server.pid
        assert f"running at {server.base_url}" in status.describe()
        assert status.owner_pid == os.getpid() and not status.orphaned and not status.detached
    finally:
        pid = server.pid
        server.stop()
    assert pid is not None and wait_dead(pid)
    assert not state_path().exists()
    assert not server_status().running


def test_stop_kills_children_that_ignore_sigterm(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_STUBBORN_CHILD", "1")
    server = LocalServer(local_server_config(), ["smollm2-135m"], progress=False).start()
    pid = server.pid
    assert pid is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(group_members(pid)) < 2:
        time.sleep(0.05)
    assert len(group_members(pid)) == 2
    server.stop()
    assert not group_alive(pid)
    assert group_members(pid) == []


def group_members(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if fields[2] == str(pgid) and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


def test_second_object_reuses_and_does_not_stop_it(fake: Path) -> None:
    with LocalServer(local_server_config(), ["smollm2-135m", "qwen2.5-coder-0.5b"], progress=False) as first:
        second = LocalServer(local_server_config(), ["local/smollm2-135m"], progress=False).start()
        assert second.reused and second.base_url == first.base_url and second.pid == first.pid
        second.stop()
        assert first.pid is not None and pid_alive(first.pid)
        assert httpx.get(f"{first.url}/health").status_code == 200
        pid = first.pid
    assert wait_dead(pid)


def test_different_arguments_start_a_separate_server(fake: Path) -> None:
    with LocalServer(local_server_config(threads=2), ["smollm2-135m"], progress=False) as first:
        with LocalServer(local_server_config(threads=1), ["smollm2-135m"], progress=False) as other:
            assert not other.reused and other.port != first.port
            state = read_state()
            assert state is not None and state.pid == first.pid  # the first keeps the state file
            other_pid = other.pid
        assert other_pid is not None and wait_dead(other_pid)
        assert first.pid is not None and pid_alive(first.pid)


def test_explicit_port_reuses_a_server_on_that_port(fake: Path) -> None:
    with LocalServer(local_server_config(), ["smollm2-135m"], progress=False) as first:
        same = LocalServer(local_server_config(port=first.port), ["smollm2-135m"], progress=False).start()
        assert same.reused and same.port == first.port
        same.stop()


def test_explicit_port_in_use_names_the_port_and_the_fix(fake: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(LocalServerError, match=rf"port {port} on 127\.0\.0\.1 is already in use.*null"):
            LocalServer(local_server_config(port=port), ["smollm2-135m"], progress=False).start()
    assert not state_path().exists()


def test_stale_state_file_is_replaced(fake: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (state_path().parent).mkdir(parents=True, exist_ok=True)
    write_state(ServerState(pid=dead.pid, host="127.0.0.1", port=1, fingerprint="x", binary=str(fake), log="x"))
    with LocalServer(local_server_config(), ["smollm2-135m"], progress=False) as server:
        assert not server.reused
        state = read_state()
        assert state is not None and state.pid == server.pid


def test_state_pointing_at_an_unrelated_process_is_neither_reused_nor_killed(fake: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        write_state(ServerState(pid=sleeper.pid, host="127.0.0.1", port=1, fingerprint="x", binary=str(fake), log="x"))
        assert stop_running_server(grace=0.5) is False
        assert sleeper.poll() is None  # a recycled pid is never signalled
        assert not state_path().exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_detached_server_outlives_stop_until_stop_running_server(fake: Path) -> None:
    server = LocalServer(local_server_config(), ["smollm2-135m"], progress=False, detach=True).start()
    pid = server.pid
    server.stop()
    assert pid is not None and pid_alive(pid)
    state = read_state()
    assert state is not None and state.detached
    later = LocalServer(local_server_config(), ["smollm2-135m"], progress=False).start()
    assert later.reused
    later.stop()
    assert pid_alive(pid)
    assert stop_running_server() is True
    assert wait_dead(pid)
    assert not state_path().exists()
    assert stop_running_server() is False


def test_server_that_exits_while_starting_reports_the_log(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", "exit")
    with pytest.raises(LocalServerError) as info:
        LocalServer(local_server_config(), ["smollm2-135m"], progress=False).start()
    msg = str(info.value)
    assert "exited with code 1" in msg and "couldn't bind HTTP server socket" in msg and "local_server.port" in msg
    assert not state_path().exists()


def test_startup_timeout_kills_the_process(fake: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", "unhealthy")
    monkeypatch.setenv("FAKE_PID_FILE", str(tmp_path / "pid"))
    with pytest.raises(LocalServerError, match=r"not become healthy within 2s.*startup_timeout"):
        LocalServer(local_server_config(startup_timeout=2.0), ["smollm2-135m"], progress=False).start()
    assert wait_dead(int((tmp_path / "pid").read_text()))
    assert not state_path().exists()


def test_unknown_model_is_rejected_before_anything_starts(fake: Path) -> None:
    with pytest.raises(LocalServerError, match=r"unknown local model 'llama-70b'.*smollm2-135m"):
        LocalServer(local_server_config(), ["llama-70b"])


def test_command_line_is_router_mode_with_config_values(fake: Path) -> None:
    args = server_args(
        fake,
        local_server_config(threads=3, parallel=4, ctx_size=4096, models_max=2, cache_ram_mib=256),
        Path("/m"),
        8123,
    )
    assert args == [
        str(fake), "--models-dir", "/m", "--models-max", "2", "-t", "3", "-c", "4096", "-np", "4",
        "--cache-ram", "256", "--host", "127.0.0.1", "--port", "8123", "--threads-http", "32", "--no-webui",
    ]  # fmt: skip
    # the default caps each model's prompt cache (llama-server's own default is 8 GiB per model)
    assert server_args(fake, local_server_config(), Path("/m"), 1)[11:13] == ["--cache-ram", "1024"]


CHILD = """
import sys
import semcascade.local.server as srv
srv.ensure_model = lambda name, progress=True: (srv.models_dir() / f"{name}.gguf").touch()
s = srv.LocalServer(srv.LocalServerConfig(), ["smollm2-135m"], progress=False, detach=sys.argv[1] == "detach")
s.start()
print(s.pid, flush=True)
if sys.argv[1] == "crash":
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)  # dies without running atexit hooks
"""


@pytest.mark.parametrize("mode", ["own", "detach"])
def test_process_exit_stops_only_a_server_it_owns(fake: Path, mode: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    pid = int(out.stdout.strip())
    if mode == "own":
        assert wait_dead(pid)  # the atexit hook stopped it
        assert not state_path().exists()
    else:
        assert pid_alive(pid)
        assert server_status().running
        assert stop_running_server() is True
        assert wait_dead(pid)


def test_orphan_of_a_killed_owner_is_adopted_and_stopped(fake: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", CHILD, "crash"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == -9
    pid = int(out.stdout.strip())
    assert pid_alive(pid)  # the owner died without stopping it
    assert server_status().orphaned
    server = LocalServer(local_server_config(), ["smollm2-135m"], progress=False).start()
    assert server.reused and server.adopted and server.pid == pid and server.owns_process
    state = read_state()
    assert state is not None and state.owner_pid == os.getpid()
    server.stop()
    assert wait_dead(pid)
    assert not state_path().exists()


def test_detach_by_a_reuser_keeps_the_owner_from_stopping_it(fake: Path) -> None:
    owner = LocalServer(local_server_config(), ["smollm2-135m"], progress=False).start()
    reuser = LocalServer(local_server_config(), ["smollm2-135m"], progress=False).start()
    assert reuser.reused and not reuser.adopted and not reuser.owns_process
    reuser.detach()  # what `semcascade local start` does
    pid = owner.pid
    owner.stop()
    assert pid is not None and pid_alive(pid)
    assert stop_running_server() is True
    assert wait_dead(pid)


def test_old_server_logs_are_pruned(fake: Path) -> None:
    log_dir = state_path().parent / "logs"
    log_dir.mkdir(parents=True)
    for i in range(30):
        old = log_dir / f"llama-server-{40000 + i}.log"
        old.write_text("old")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    with LocalServer(local_server_config(), ["smollm2-135m"], progress=False) as server:
        assert server.log_path is not None and server.log_path.exists()
        kept = sorted(p.name for p in log_dir.glob("llama-server-*.log"))
    assert len(kept) == 21  # the 20 newest old ones, plus the new server's
    assert "llama-server-40000.log" not in kept and "llama-server-40029.log" in kept
