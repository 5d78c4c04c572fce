"""A provider that answers from a Python function, for unit and fault tests (like ``httpx.MockTransport``)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence

from semcascade.providers.base import Choice, Completion, CompletionRequest

__all__ = ["MockProvider"]


Handler = Callable[[CompletionRequest], "Completion | Awaitable[Completion]"]


class MockProvider:
    """A provider that answers from ``handler(request)`` (sync or async).

    For tests only: the handler may also raise any :class:`ProviderError` to
    simulate faults. Without a handler every choice is the next of ``texts``, in
    turn (so a config can name it: ``provider: {name: mock, options: {texts: [...]}}``).
    ``calls`` records every request received.
    """

    def __init__(self, handler: Handler | None = None, *, texts: Sequence[str] = ("mock answer",)) -> None:
        if not texts:
            raise ValueError("texts must not be empty")
        answers = tuple(texts)

        def cycle(request: CompletionRequest) -> Completion:
            start = len(self.calls) - 1
            return self.texts(request.model, [answers[(start + i) % len(answers)] for i in range(request.n)])

        self._handler = handler if handler is not None else cycle
        self.calls: list[CompletionRequest] = []

    async def complete(self, request: CompletionRequest) -> Completion:
        self.calls.append(request)
        out = self._handler(request)
        if inspect.isawaitable(out):
            out = await out
        assert isinstance(out, Completion)
        return out

    @staticmethod
    def texts(model: str, texts: Sequence[str], prompt_tokens: int = 10) -> Completion:
        """Build a Completion whose choices are ``texts`` (one token per word)."""
        return Completion(
            model=model,
            choices=tuple(
                Choice(text=t, completion_tokens=max(1, len(t.split())), finish_reason="stop") for t in texts
            ),
            prompt_tokens=prompt_tokens,
        )
