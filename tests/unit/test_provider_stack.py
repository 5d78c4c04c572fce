"""The one provider stack (base per tier -> local-server guard -> per-tier retry -> response cache),
built by build_provider_stack for both the cascade and the eval harness, and the public ways to inject into it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from semcascade import Cascade, ConfigError, MockProvider, ProviderUnavailableError, RetryingProvider
from semcascade.config import load_config
from semcascade.evaluation.harness import run_eval
from semcascade.local.guard import LocalServerGuard
from semcascade.providers import (
    Choice,
    Completion,
    CompletionRequest,
    LiteLLMProvider,
    TokenLogprob,
    close_loop_clients,
)
from semcascade.providers.stack import TierProviders, build_provider_stack
from semcascade.response_cache import CachingProvider, ResponseCache

CFG: dict[str, Any] = {
    "tiers": [
        {"name": "cheap", "model": "openai/cheap", "k": 3, "max_concurrency": 4, "retry": {"max_attempts": 5}},
        {"name": "strong", "model": "openai/strong", "k": 1, "max_concurrency": 2},
    ],
    "scorer": {"name": "lexical"},
}


def paris(req: CompletionRequest) -> Completion:
    return MockProvider.texts(req.model, ["Paris"] * req.n)


class FakeServer:
    """Stands in for the managed llama-server (the guard only reads it when a request is addressed to it)."""

    started = False


def test_default_stack_is_base_per_tier_then_retry() -> None:
    stack = build_provider_stack(load_config(CFG))
    assert isinstance(stack.base, TierProviders) and stack.guard is None and stack.cache is None
    assert stack.caller is stack.retrying and stack.retrying.inner is stack.base
    assert (
        stack.retrying.policy_for("cheap").max_attempts == 5 and stack.retrying.policy_for("strong").max_attempts == 3
    )


def test_local_tiers_get_the_guard_under_the_retry() -> None:
    cfg = load_config({"tiers": [{"name": "t", "model": "local/qwen2.5-coder-0.5b", "k": 2}]})
    stack = build_provider_stack(cfg, base=MockProvider(paris), local_server=FakeServer)  # type: ignore[arg-type]
    assert isinstance(stack.guard, LocalServerGuard) and stack.retrying.inner is stack.guard
    assert stack.guard.inner is stack.base
    # no local tiers: no guard, even when a server is at hand
    assert build_provider_stack(load_config(CFG), local_server=FakeServer).guard is None  # type: ignore[arg-type]


def test_the_cache_goes_on_top(tmp_path: Path) -> None:
    stack = build_provider_stack(load_config(CFG), base=MockProvider(paris), cache=ResponseCache(tmp_path / "c.sqlite"))
    assert isinstance(stack.cache, CachingProvider) and stack.caller is stack.cache
    assert stack.cache.inner is stack.retrying


def test_a_provider_that_already_retries_is_not_wrapped_again(tmp_path: Path) -> None:
    own = RetryingProvider(MockProvider(paris))
    assert build_provider_stack(load_config(CFG), base=own).caller is own
    cached = CachingProvider(own, ResponseCache(tmp_path / "c.sqlite"))  # a wrapper of a retrying provider
    stack = build_provider_stack(load_config(CFG), base=cached)
    assert stack.caller is cached and stack.retrying is own


async def test_cascade_takes_a_provider_or_a_whole_stack() -> None:
    given = MockProvider(paris)
    cascade = Cascade(CFG, provider=given)
    assert cascade.provider is given and cascade.stack.retrying.inner is given
    r = await cascade.generate("Capital of France?")
    assert r.text == "Paris" and [c.n for c in given.calls] == [3]

    whole = build_provider_stack(load_config(CFG), base=MockProvider(paris))
    c2 = Cascade(CFG, provider=whole)
    assert c2.stack is whole and c2.provider is whole.caller
    assert (await c2.generate("Capital of France?")).text == "Paris"


async def test_tier_provider_from_config() -> None:
    cfg = {
        "tiers": [
            {"name": "cheap", "model": "m1", "k": 2, "provider": {"name": "mock", "options": {"texts": ["Lyon"]}}},
            {"name": "strong", "model": "m2", "k": 1, "provider": "mock"},
        ],
        "scorer": {"name": "lexical"},
    }
    cascade = Cascade(cfg)
    base = cascade.stack.base
    assert isinstance(base, TierProviders) and [type(p).__name__ for p in base.providers()] == ["MockProvider"] * 2
    r = await cascade.generate("Capital of France?")
    assert r.tier == "cheap" and r.text == "Lyon"


def test_unknown_tier_provider_is_a_config_error() -> None:
    cfg = {"tiers": [{"name": "cheap", "model": "m", "provider": "carrier-pigeon"}]}
    with pytest.raises(ConfigError, match=r"tier 'cheap'.*unknown provider 'carrier-pigeon'"):
        Cascade(cfg).stack  # noqa: B018
    with pytest.raises(ConfigError, match=r"tier 'cheap'.*bad options for provider 'mock'"):
        Cascade({"tiers": [{"name": "cheap", "model": "m", "provider": {"name": "mock", "options": {"x": 1}}}]}).stack  # noqa: B018


def test_http_providers_get_a_keep_alive_pool_sized_from_the_tier_limits() -> None:
    cfg = load_config({**CFG, "tiers": [{**t, "provider": "litellm"} for t in CFG["tiers"]]})
    (provider,) = TierProviders(cfg).providers()
    assert isinstance(provider, LiteLLMProvider) and provider.pool_size == 4 + 2


async def test_aclose_closes_the_stacks_clients_of_this_loop_only() -> None:
    cfg = load_config({**CFG, "tiers": [{**t, "provider": "litellm"} for t in CFG["tiers"]]})
    cascade = Cascade(cfg)
    (provider,) = cascade.stack.base.providers()  # type: ignore[attr-defined]
    assert isinstance(provider, LiteLLMProvider)
    provider._clients.get()  # the client this loop would use
    other = LiteLLMProvider()
    other._clients.get()
    assert provider._clients.open_loops() == 1 == other._clients.open_loops()
    await cascade.aclose()
    assert provider._clients.open_loops() == 0 and other._clients.open_loops() == 1
    await close_loop_clients()  # no owner: every provider's clients of this loop (a loop about to end)
    assert other._clients.open_loops() == 0


def test_no_client_outlives_generate_syncs_loop() -> None:
    cfg = {**CFG, "tiers": [{**t, "provider": "litellm"} for t in CFG["tiers"]]}
    cascade = Cascade(cfg, provider=None)
    (provider,) = cascade.stack.base.providers()  # type: ignore[attr-defined]
    used: list[Any] = []

    async def fake_complete(request: CompletionRequest) -> Completion:
        used.append(provider._clients.get())  # the clients this loop's calls would use
        return paris(request)

    provider.complete = fake_complete  # type: ignore[method-assign]
    assert cascade.generate_sync("Capital of France?").text == "Paris"
    assert used and all(clients.http.is_closed for clients in used)  # closed before the loop ended


# --------------------------------------------------------------------------- the harness uses the same stack


def _judge_answer(req: CompletionRequest) -> Completion:
    top = {"yes": -0.05, "no": -4.0, "maybe": -5.0}
    choice = Choice(text="yes", completion_tokens=1, finish_reason="stop", logprobs=(TokenLogprob("yes", -0.05, top),))
    return Completion(model=req.model, choices=(choice,), prompt_tokens=20)


async def test_harness_calls_go_through_the_retrying_stack(tmp_path: Path) -> None:
    """A judge call (the NLI signal's) that fails transiently once is retried, as the cascade's calls are."""
    failed: list[str] = []

    def handler(req: CompletionRequest) -> Completion:
        if req.top_logprobs:  # the NLI judge's call
            if not failed:
                failed.append(req.model)
                raise ProviderUnavailableError("server error 503: overloaded", model=req.model, tier=req.tier)
            return _judge_answer(req)
        question = str(req.messages[-1]["content"])
        texts = [question] * req.n if req.model == "openai/strong" else [f"{question} {i}" for i in range(req.n)]
        return MockProvider.texts(req.model, texts)

    cfg = {
        **CFG,
        "tiers": [{**t, "retry": {"max_attempts": 2, "backoff_base_s": 0, "backoff_max_s": 0}} for t in CFG["tiers"]],
    }
    rep = await asyncio.wait_for(
        run_eval(
            cfg,
            dataset="nq",
            n=2,
            seed=1,
            signals=("nli",),
            cache_path=tmp_path / "c.sqlite",
            provider=MockProvider(handler),
            progress=False,
        ),
        60,
    )
    assert failed and rep.n == 2 and any(r.system.startswith("cascade: nli") for r in rep.systems)


# --------------------------------------------------------------------------- the local-server guard in the stack


class LiveServer:
    """A started, live stand-in for the managed server; counts how often the guard checks on the process."""

    started = True
    base_url = "http://127.0.0.1:9/v1"
    log_path = "server.log"

    def __init__(self) -> None:
        self.checks = 0

    def process_alive(self) -> bool:
        self.checks += 1
        return True


async def test_the_guard_does_not_wait_on_errors_only_a_live_server_gives() -> None:
    from semcascade import BadRequestError, ProviderTimeoutError

    server = LiveServer()
    req = CompletionRequest(model="openai/m", messages=[{"role": "user", "content": "q"}], api_base=server.base_url)
    for exc in (BadRequestError("bad 'top_k'", param="top_k"), ProviderTimeoutError("slow")):
        server.checks = 0

        def fail(r: CompletionRequest, exc: Exception = exc) -> Completion:
            raise exc

        guard = LocalServerGuard(MockProvider(fail), lambda: server)  # type: ignore[arg-type, return-value]
        with pytest.raises(type(exc)):
            await guard.complete(req)
        # a 400 means the server answered: no check whether it died (which waits while it is alive)
        assert (server.checks == 0) == isinstance(exc, BadRequestError)
