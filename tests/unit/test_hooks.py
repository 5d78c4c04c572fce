"""The hooks seam: a feature attaches to the cascade without touching its loop."""

from __future__ import annotations

from typing import Any

from semcascade import Cascade, MockProvider
from semcascade.hooks import FinishContext, HookRequest, HookSession
from semcascade.providers import Completion, CompletionRequest
from semcascade.result import CascadeResult

CFG: dict[str, Any] = {
    "tiers": [
        {"name": "cheap", "model": "openai/cheap", "k": 3, "threshold": 0.9},
        {"name": "strong", "model": "openai/strong", "k": 1, "temperature": 0.0},
    ],
    "scorer": {"name": "lexical"},
}


class Tagging:
    """Adds a line to every tier's system prompt and records what it saw."""

    def __init__(self, tag: str, log: list[str]) -> None:
        self.tag, self.log = tag, log

    async def start(self, request: HookRequest) -> HookSession | None:
        self.log.append(f"{self.tag}:start:{request.question}")
        return self

    def augment(self, tier_index: int, messages: list[dict[str, Any]], tier_name: str) -> list[dict[str, Any]]:
        self.log.append(f"{self.tag}:augment:{tier_name}")
        return [{"role": "system", "content": f"[{self.tag}]"}, *messages]

    async def finish(self, result: CascadeResult, ctx: FinishContext) -> CascadeResult:
        self.log.append(f"{self.tag}:finish:{ctx.tier.config.name}:{ctx.is_last}")
        return result.model_copy(update={"text": result.text + f" +{self.tag}"})

    async def aclose(self) -> None:
        self.log.append(f"{self.tag}:aclose")


def handler(req: CompletionRequest) -> Completion:
    system = " ".join(str(m["content"]) for m in req.messages if m["role"] == "system")
    if req.model == "openai/cheap":  # disagrees: the request escalates
        return MockProvider.texts(req.model, [f"guess {i}" for i in range(req.n)])
    return MockProvider.texts(req.model, [f"answer with {system}"])


async def test_hooks_see_every_tier_and_the_result_in_order() -> None:
    log: list[str] = []
    provider = MockProvider(handler)
    async with Cascade(CFG, provider=provider, hooks=[Tagging("a", log), Tagging("b", log)]) as cascade:
        result = await cascade.generate("Who?")
    # both hooks' prompt lines reached the provider, b's outermost (hooks run in order)
    assert result.text == "answer with [b] [a] +a +b"
    assert [m["content"] for m in provider.calls[0].messages if m["role"] == "system"] == ["[b]", "[a]"]
    assert log == [
        "a:start:Who?", "b:start:Who?",
        "a:augment:cheap", "b:augment:cheap", "a:augment:strong", "b:augment:strong",
        "a:finish:strong:True", "b:finish:strong:True",
        "a:aclose", "b:aclose",
    ]  # fmt: skip


async def test_a_hook_may_sit_out_a_request() -> None:
    class Idle:
        async def start(self, request: HookRequest) -> HookSession | None:
            return None

        async def aclose(self) -> None:
            return None

    async with Cascade(CFG, provider=MockProvider(handler), hooks=[Idle()]) as cascade:
        result = await cascade.generate("Who?")
    assert result.text == "answer with" and result.tier == "strong"
