"""Answer-span extraction: the part of a sample that is the answer, before samples are compared.

Small models wrap a short answer in chatter ("The answer is: Texas.") or run
on past it until the token cap. Comparing raw outputs then measures the
chatter, not the answer, and breaks lexical and majority agreement. An
:data:`AnswerFormat` names how much of each sample is kept:

- ``"raw"``: the whole output, stripped (open-ended generation: the default);
- ``"first_line"``: the first non-empty line;
- ``"short"``: the first non-empty line without answer preambles
  ("Answer:", "The answer is"), wrapping quotes or bold markers and a
  trailing full stop;
- ``"number"``: the final numeric answer (a ``#### N`` line, an arithmetic
  expression evaluated by :func:`semcascade.numeric.safe_eval`, the last
  number: see :func:`semcascade.numeric.extract_number`), written as
  :func:`semcascade.numeric.format_number` writes it (math word problems).

>>> extract_answer("The answer is: **Texas**.\\n\\nTexas is a state.", "short")
'Texas'
>>> extract_answer("  Paris\\nThe capital of France.", "first_line")
'Paris'
>>> extract_answer("(3 * 12) - 5", "number")
'31'
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from semcascade.numeric import extract_number, format_number

__all__ = ["ANSWER_FORMATS", "AnswerFormat", "extract_answer"]

AnswerFormat = Literal["raw", "first_line", "short", "number"]
ANSWER_FORMATS: tuple[str, ...] = get_args(AnswerFormat)

_PREAMBLE = re.compile(
    r"^\s*(?:(?:final\s+)?answer\s*[:\-]|a\s*:|the\s+(?:short\s+|final\s+)?answer\s+(?:is|would\s+be)\s*:?)\s*",
    re.IGNORECASE,
)
_WRAPPERS = ('"', "'", "`", "*", "“", "”", "_")


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def _short(text: str) -> str:
    line = _first_line(text)
    prev = None
    while prev != line:  # peel preambles and wrappers until nothing changes
        prev = line
        line = _PREAMBLE.sub("", line).strip()
        if len(line) > 1 and line[-1] == "." and not line[-2].isupper():  # keep "U.S." and initials
            line = line[:-1].rstrip()
        for w in _WRAPPERS:
            if len(line) >= 2 * len(w) and line.startswith(w) and line.endswith(w):
                line = line[len(w) : -len(w)].strip()
        line = line.strip("*").strip() if line.startswith("**") or line.endswith("**") else line
    return line


def extract_answer(text: str, fmt: str = "raw") -> str:
    """The answer span of ``text`` under ``fmt`` (see the module doc).

    Never returns an empty string for a non-empty output: if extraction
    would remove everything, the stripped output is returned instead.
    """
    if fmt not in ANSWER_FORMATS:
        raise ValueError(f"unknown answer format {fmt!r}; choose from {', '.join(ANSWER_FORMATS)}")
    raw = text.strip()
    if fmt == "raw":
        return raw
    if fmt == "number":
        value = extract_number(raw)
        return raw if value is None else format_number(value)
    out = _first_line(raw) if fmt == "first_line" else _short(raw)
    return out or raw
