"""The request body of ``POST /v1/chat/completions``: what is honoured, what is refused by name.

Every field the cascade honours is validated here; a field of OpenAI's API the cascade cannot honour
(``tools``, ``response_format``, ``n > 1``, ``logprobs`` ...) or a field OpenAI does not know is a 400
naming it, never silently dropped.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from semcascade.errors import RequestRejectedError

__all__ = ["ChatRequest", "parse_chat_request", "request_schema"]

#: OpenAI chat-completions fields the cascade does not honour (yet): a 400 naming the field
UNSUPPORTED = frozenset(
    {
        "tools", "tool_choice", "parallel_tool_calls", "functions", "function_call", "response_format",
        "logprobs", "top_logprobs", "logit_bias", "top_p", "presence_penalty", "frequency_penalty",
        "audio", "modalities", "prediction", "web_search_options", "reasoning_effort", "service_tier",
        "store", "metadata",
    }
)  # fmt: skip


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TextPart(_Body):
    """A text part of a message's content (the only kind a cascade compares)."""

    type: Literal["text"] = Field(description="'text'")
    text: str = Field(description="the text")


class ChatMessage(_Body):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant"] = Field(description="who wrote it")
    content: str | list[TextPart] = Field(description="the text, or a list of text parts")
    name: str | None = Field(default=None, max_length=64, description="an optional participant name")


class StreamOptions(_Body):
    """``stream_options``: ``include_usage`` adds a last chunk with the usage."""

    include_usage: bool = Field(default=False, description="send a final chunk with the token usage")


class SemcascadeOptions(_Body):
    """``extra_body={"semcascade": {...}}``: semcascade's own request options."""

    trace: bool = Field(default=False, description="include the full per-tier trace in the response")


class ChatRequest(_Body):
    """The honoured subset of OpenAI's chat-completions request."""

    model: str = Field(min_length=1, max_length=256, description="a model listed by GET /v1/models")
    messages: list[ChatMessage] = Field(min_length=1, max_length=1024, description="the conversation")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, description="applies to every tier")
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000, description="applies to every tier")
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1_000_000, description="same as max_tokens")
    stop: str | list[str] | None = Field(default=None, description="up to 4 stop sequences, for every tier")
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1, description="applies to every tier")
    n: int | None = Field(default=None, description="must be 1 (one answer per request)")
    stream: bool | None = Field(default=None, description="server-sent events")
    stream_options: StreamOptions | None = Field(default=None, description="with stream: include_usage")
    user: str | None = Field(default=None, max_length=256, description="accepted, not used")
    semcascade: SemcascadeOptions | None = Field(default=None, description="semcascade's own options")

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and (len(v) > 4 or not all(v)):
            raise ValueError("at most 4 non-empty stop sequences")
        if v == "":
            raise ValueError("an empty stop sequence")
        return v

    def overrides(self) -> dict[str, Any]:
        """The tier overrides of this request (fields it sets)."""
        out: dict[str, Any] = {}
        if self.temperature is not None:
            out["temperature"] = self.temperature
        tokens = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        if tokens is not None:
            out["max_tokens"] = tokens
        if self.stop is not None:
            out["stop"] = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def wants_trace(self) -> bool:
        return self.semcascade is not None and self.semcascade.trace


_FIELDS = frozenset(ChatRequest.model_fields)


def _bad(message: str, *, param: str | None, code: str) -> RequestRejectedError:
    return RequestRejectedError(400, message, code=code, param=param)


def parse_chat_request(body: bytes) -> ChatRequest:
    """The validated request, or a :class:`RequestRejectedError` (400) naming what is wrong."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"the request body is not valid JSON: {exc}", param=None, code="invalid_json") from None
    if not isinstance(raw, dict):
        raise _bad("the request body must be a JSON object", param=None, code="invalid_request")
    for key in raw:
        if key in UNSUPPORTED:
            raise _bad(
                f"{key!r} is not supported by the semcascade server (the cascade cannot honour it); remove it",
                param=key,
                code="unsupported_parameter",
            )
        if key not in _FIELDS:
            raise _bad(f"Unrecognized request argument supplied: {key}", param=key, code="unknown_parameter")
    n = raw.get("n")
    if n is not None and n != 1:
        raise _bad(
            f"n={n!r} is not supported: the cascade returns one answer per request; send n=1 or omit it",
            param="n",
            code="unsupported_parameter",
        )
    if raw.get("stream_options") is not None and not raw.get("stream"):
        raise _bad("stream_options needs stream: true", param="stream_options", code="invalid_value")
    try:
        return ChatRequest.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(x) for x in err["loc"])
        code = "unknown_parameter" if err["type"] == "extra_forbidden" else "invalid_value"
        raise _bad(f"{loc}: {err['msg']}", param=loc or None, code=code) from None


def request_schema() -> dict[str, Any]:
    """The JSON schema of the request body (for the OpenAPI document)."""
    return ChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")
