"""The streaming policy and the chunks of a streamed answer (server-sent events, OpenAI's shapes).

Policy (README "Serve"):

1. A tier whose answer still awaits the agreement decision is never streamed: a rejected draft never
   reaches the client.
2. Once a tier's answer is chosen, it is sent at once, as one content chunk.
3. The last tier, when nothing is decided after it (it draws one sample whose raw text is the answer:
   :func:`semcascade.live.live_streamable`), streams live, token by token, as the model generates it.

The response starts (status 200, headers) with the first content; errors before it are ordinary HTTP
errors, errors after it an ``error`` event. The last content chunk carries ``finish_reason`` and a
``semcascade`` object with the decision (tier, escalated, agreement, cost, request id); with
``stream_options.include_usage`` a usage chunk (``choices: []``) follows; then ``data: [DONE]``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DONE", "WhitespaceTrim", "chunk", "sse"]

DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def chunk(
    rid: str,
    created: int,
    model: str,
    *,
    content: str | None = None,
    role: bool = False,
    finish: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with one choice (``extra``: top-level fields, e.g. ``semcascade``)."""
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    out: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if extra:
        out.update(extra)
    return out


class WhitespaceTrim:
    """Deltas of a live answer with leading and trailing whitespace held back, so that the streamed
    text equals the final answer (which is stripped): ``feed`` returns what may be sent now."""

    def __init__(self) -> None:
        self._started = False
        self._held = ""
        self.sent = ""

    def feed(self, delta: str) -> str:
        if not self._started:
            delta = delta.lstrip()
            if not delta:
                return ""
            self._started = True
        text = self._held + delta
        body = text.rstrip()
        self._held = text[len(body) :]
        self.sent += body
        return body
