"""Prompt token counts for the context-window check, with no tokenizer on the common path.

A byte-level BPE token is at least one byte, so a prompt's UTF-8 length (plus
the chat format's few tokens a message) bounds its token count from above.
When that bound already fits a tier's window, nothing is tokenised and no
provider SDK is imported; only a prompt whose bound does not fit is counted
exactly, with litellm's counter (imported then), so every prompt is accepted
or refused exactly as an exact count alone would decide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PromptTokens", "count_prompt_tokens", "prompt_token_bound"]

#: the exact count's tokenizer (what the check has always used)
_COUNT_MODEL = "gpt-3.5-turbo"
#: chat-format tokens per message (OpenAI's accounting: 3, or 4 for the oldest models), bounded from above
_PER_MESSAGE = 4
#: an extra token for a message's ``name``, and the tokens that prime the reply
_PER_NAME = 1
_REPLY_PRIMER = 3


def prompt_token_bound(messages: Sequence[Mapping[str, Any]]) -> int | None:
    """An upper bound on the exact count of ``messages``' tokens (``None``: not boundable this cheaply).

    Text-only messages are bounded (each string counts its UTF-8 bytes);
    content parts (images, files) and tool calls are not, and get ``None``.
    """
    total = _REPLY_PRIMER
    for message in messages:
        total += _PER_MESSAGE
        for key, value in message.items():
            if value is None:
                continue
            if not isinstance(value, str):
                return None
            total += len(value.encode("utf-8", "surrogatepass")) + (_PER_NAME if key == "name" else 0)
    return total


def count_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """The exact token count of ``messages`` (litellm's counter; litellm is imported on first use)."""
    from semcascade._litellm_env import prepare_litellm_env

    prepare_litellm_env()
    import litellm

    return int(litellm.token_counter(model=_COUNT_MODEL, messages=[dict(m) for m in messages]))


class PromptTokens:
    """One prompt's token count, as cheaply as each question about it allows.

    :meth:`over` answers "does it leave room for ``reserve`` more tokens in
    ``window``?" from the upper bound when it can, and counts exactly (once)
    only when the bound does not fit.
    """

    def __init__(self, messages: Sequence[Mapping[str, Any]]) -> None:
        self._messages = messages
        self._bound = prompt_token_bound(messages)
        self._exact: int | None = None

    @property
    def exact(self) -> int:
        """The exact count (computed on first use)."""
        if self._exact is None:
            self._exact = count_prompt_tokens(self._messages)
        return self._exact

    def over(self, window: int, reserve: int) -> int | None:
        """``None`` when the prompt plus ``reserve`` tokens fit ``window``, else the exact prompt count."""
        if self._bound is not None and self._bound + reserve <= window:
            return None
        return self.exact if self.exact + reserve > window else None
