"""Chat prompts for the evaluation tasks, one :class:`PromptTemplate` per task.

>>> from semcascade.evaluation.datasets import Example
from semcascade.messages import prompt_text, question_of
>>> build_messages(Example(id="x", task="qa", input="Who wrote Hamlet?", references=("Shakespeare",)))[1]
{'role': 'user', 'content': 'Who wrote Hamlet?'}
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from semcascade.answers import AnswerFormat
from semcascade.evaluation.datasets import Example
from semcascade.messages import prompt_text, question_of
from semcascade.text import split_sentences

__all__ = [
    "DEFAULT_MAX_ARTICLE_CHARS",
    "MATH_COT_PROMPT",
    "MATH_POT_PROMPT",
    "PROMPTS",
    "PromptTemplate",
    "build_messages",
    "get_template",
    "scoring_inputs",
    "truncate_text",
]

#: Articles longer than this (characters) are cut on a sentence boundary before summarisation.
DEFAULT_MAX_ARTICLE_CHARS = 3000


@dataclass(frozen=True)
class PromptTemplate:
    """How one task is asked.

    ``user`` is a :meth:`str.format` template with the fields ``{input}``
    and ``{context}`` (the example's text is substituted, never itself
    formatted, so braces in it are safe). ``max_tokens`` and ``stop`` are the
    generation settings that fit the task; ``max_input_chars`` (if set) cuts
    an over-long ``input`` on a sentence boundary before it is substituted.
    """

    system: str
    user: str
    max_tokens: int
    stop: tuple[str, ...] = ()
    max_input_chars: int | None = None
    #: which span of an output is compared and scored (see :mod:`semcascade.answers`)
    answer_format: AnswerFormat = "raw"

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if self.max_input_chars is not None and self.max_input_chars < 1:
            raise ValueError("max_input_chars must be >= 1 or None")

    def render(self, example: Example) -> list[dict[str, str]]:
        """The chat messages (system, user) for ``example``."""
        if "{context}" in self.user and not example.context:
            raise ValueError(f"example {example.id!r} has no context but the {example.task!r} prompt needs one")
        text = example.input
        if self.max_input_chars is not None:
            text = truncate_text(text, self.max_input_chars)
        user = self.user.format(input=text, context=example.context or "")
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def generation_kwargs(self) -> dict[str, Any]:
        """``max_tokens`` and (if any) ``stop``, ready to pass to a chat-completion call."""
        kwargs: dict[str, Any] = {"max_tokens": self.max_tokens}
        if self.stop:
            kwargs["stop"] = list(self.stop)
        return kwargs


#: Math, program of thought: the model writes one arithmetic expression, which
#: :func:`semcascade.numeric.extract_number` evaluates with an AST whitelist (never ``eval``).
MATH_POT_PROMPT = PromptTemplate(
    system=(
        "Translate the math word problem into one Python arithmetic expression that computes the answer. "
        "Use only numbers, + - * / // % ** and parentheses: no variables, no functions, no units, no words. "
        "Reply with the expression only, on one line.\n"
        "Example: Tom buys 3 bags of 12 apples and eats 5 of them. How many apples are left?\n"
        "(3 * 12) - 5"
    ),
    user="{input}",
    max_tokens=96,
    stop=("\n\n",),
)

#: Math, short chain of thought ending on a GSM8K-style ``#### N`` line.
MATH_COT_PROMPT = PromptTemplate(
    system=(
        "Solve the math word problem. Reason briefly, one short line of arithmetic per step, "
        "then give the final answer on a last line as '#### N', where N is a number only."
    ),
    user="{input}",
    max_tokens=200,
)

#: The default template of each task in :data:`semcascade.evaluation.datasets.TASKS`.
PROMPTS: dict[str, PromptTemplate] = {
    "qa": PromptTemplate(
        system="Answer the question with a short answer of a few words only.",
        user="{input}",
        max_tokens=32,
        stop=("\n\n",),
        answer_format="short",
    ),
    "rc": PromptTemplate(
        system="Answer the question using the context. Reply with a short answer of a few words only.",
        user="Context: {context}\nQuestion: {input}",
        max_tokens=32,
        stop=("\n\n",),
        answer_format="short",
    ),
    "summarization": PromptTemplate(
        system="Summarize the article in 3 short sentences.",
        user="{input}",
        max_tokens=160,
        max_input_chars=DEFAULT_MAX_ARTICLE_CHARS,
    ),
    "translation": PromptTemplate(
        system="Translate the Japanese text into English. Reply with the translation only.",
        user="{input}",
        max_tokens=128,
    ),
    "math": MATH_POT_PROMPT,
}


def get_template(task: str) -> PromptTemplate:
    """The registered template of ``task``."""
    try:
        return PROMPTS[task]
    except KeyError:
        raise ValueError(f"no prompt for task {task!r}; choose from {sorted(PROMPTS)}") from None


def scoring_inputs(template: PromptTemplate, example: Example) -> tuple[list[dict[str, str]], str, str]:
    """The messages of ``example``, and the question and prompt text the live cascade derives from them.

    The harness scores recorded samples with exactly these (the last user turn
    as the question, :func:`semcascade.messages.question_of`; everything shown as
    the prompt, :func:`semcascade.messages.prompt_text`), so a recorded signal is
    the one the live tier step computes for the same messages.
    """
    messages = template.render(example)
    return messages, question_of(messages), prompt_text(messages)


def build_messages(
    example: Example,
    template: PromptTemplate | None = None,
    *,
    max_input_chars: int | None = None,
) -> list[dict[str, str]]:
    """Chat messages for ``example`` with its task's template (or ``template``).

    ``max_input_chars`` overrides the template's input limit (e.g. a larger
    article budget for a model with a longer context).
    """
    tpl = template if template is not None else get_template(example.task)
    if max_input_chars is not None:
        tpl = replace(tpl, max_input_chars=max_input_chars)
    return tpl.render(example)


def truncate_text(text: str, max_chars: int = DEFAULT_MAX_ARTICLE_CHARS) -> str:
    """``text`` cut to at most ``max_chars`` characters, ending on a sentence boundary.

    Keeps the longest run of whole leading sentences (found with
    :func:`semcascade.text.split_sentences`, offline) that fits, with the
    original spacing and line breaks. If even the first sentence is too
    long, cuts at the last space before the limit (or hard at the limit).
    Text that already fits is returned unchanged.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be >= 1")
    if len(text) <= max_chars:
        return text
    cut, cursor = 0, 0
    for sentence in split_sentences(text):
        start = text.find(sentence, cursor)
        if start < 0:  # the splitter altered the sentence; stop at what we have
            break
        end = start + len(sentence)
        if end > max_chars:
            break
        cut, cursor = end, end
    if cut > 0:
        return text[:cut]
    head = text[:max_chars]
    space = head.rfind(" ")
    return (head[:space] if space > 0 else head).rstrip()
