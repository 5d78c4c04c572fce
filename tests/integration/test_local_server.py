"""The real managed llama-server in router mode, with the real GGUF models.

Runs in a private cache folder (so a server someone else left running is not
picked up) but reuses the llama-server binary of the normal cache (built there
once if missing, ~6 min on 2 cores).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import litellm
import pytest

from semcascade.config import LocalServerConfig
from semcascade.local import LOCAL_MODELS, LocalServer, ensure_llama_server
from semcascade.local.process import group_alive, pid_alive
from semcascade.local.state import read_state, state_path

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    binary = ensure_llama_server(progress=False)  # from the normal cache
    cache = tmp_path_factory.mktemp("semcascade-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMCASCADE_CACHE", str(cache))
        mp.setenv("SEMCASCADE_LLAMA_SERVER", str(binary))
        srv = LocalServer(LocalServerConfig(), list(LOCAL_MODELS), progress=False)
        try:
            srv.start()
            yield srv
        finally:
            srv.stop()
            shutil.rmtree(cache / "models", ignore_errors=True)  # ~1.6 GB of assembled models


def test_router_is_healthy_and_lists_every_model(server: LocalServer) -> None:
    assert not server.reused
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    listed = {m["id"] for m in httpx.get(f"{server.base_url}/models", timeout=10).json()["data"]}
    assert set(LOCAL_MODELS) <= listed


async def test_native_n_returns_that_many_choices_with_logprobs(server: LocalServer) -> None:
    response = await litellm.acompletion(
        model="openai/smollm2-135m",
        api_base=server.base_url,
        api_key=server.api_key,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
        n=3,
        temperature=0.8,
        max_tokens=24,
        logprobs=True,
        top_logprobs=2,
        timeout=120,
    )
    assert len(response.choices) == 3
    for choice in response.choices:
        assert choice.message.content.strip()
        content = choice.logprobs["content"] if isinstance(choice.logprobs, dict) else choice.logprobs.content
        assert len(content) > 0
        first = content[0]
        top = first["top_logprobs"] if isinstance(first, dict) else first.top_logprobs
        assert len(top) == 2
    assert "paris" in " ".join(c.message.content.lower() for c in response.choices)


def test_second_object_reuses_the_running_server(server: LocalServer) -> None:
    other = LocalServer(LocalServerConfig(), ["smollm2-135m"], progress=False).start()
    assert other.reused and other.base_url == server.base_url and other.pid == server.pid
    other.stop()
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def test_stop_leaves_no_process(server: LocalServer) -> None:
    server.load_models(["smollm2-135m"])  # make sure a model child process exists
    pid = server.pid
    assert pid is not None and read_state() is not None
    server.stop()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    assert not pid_alive(pid)
    assert not group_alive(pid)  # neither the router nor any model child is left in its group
    assert not state_path().exists()
    assert not Path(f"/proc/{pid}").exists()
