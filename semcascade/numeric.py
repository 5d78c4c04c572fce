"""Numbers out of model outputs: the final answer of a math solution, and a safe arithmetic evaluator.

:func:`extract_number` finds the number a math answer ends on, whatever its
style: a GSM8K ``#### N`` line, ``\\boxed{N}``, ``Answer: N`` / ``the answer
is N``, a program-of-thought arithmetic expression (``(12 * 3) + 4``, also
inside a code fence, ``print(...)`` or ``answer = ...``), a trailing ``= N``,
or else the last number in the text. Numbers may carry a currency sign,
thousands separators, a percent sign, decimals or a fraction
(``$1,200.50`` -> 1200.5, ``3/4`` -> 0.75).

:func:`safe_eval` evaluates an arithmetic expression by walking its AST:
only numeric literals, ``+ - * / // % **``, unary ``+``/``-`` and
parentheses are allowed; names, calls, attributes, subscripts and everything
else are rejected (:class:`UnsafeExpressionError`), as are over-long or
over-deep expressions and results beyond :data:`MAX_MAGNITUDE` (so
``9**9**9`` is refused before it is computed). Nothing is ever passed to
:func:`eval`.

>>> extract_number("First 12 * 3 = 36 apples.\\n#### 36")
36.0
>>> extract_number("The answer is $1,200.50.")
1200.5
>>> extract_number("(12 * 3) + 4")
40.0
>>> numbers_equal(0.1 + 0.2, 0.3)
True
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from fractions import Fraction

from semcascade.errors import UnsafeExpressionError

__all__ = [
    "DEFAULT_REL_TOL",
    "MAX_EXPRESSION_CHARS",
    "MAX_MAGNITUDE",
    "UnsafeExpressionError",
    "extract_number",
    "format_number",
    "numbers_equal",
    "parse_number",
    "safe_eval",
    "try_eval",
]

#: Relative tolerance under which two answers are the same number.
DEFAULT_REL_TOL = 1e-6
#: Absolute tolerance (for answers at or near zero).
_ABS_TOL = 1e-9
#: Longest expression :func:`safe_eval` will parse (characters).
MAX_EXPRESSION_CHARS = 400
#: Most AST nodes an expression may have.
_MAX_NODES = 200
#: Largest magnitude of any intermediate or final value.
MAX_MAGNITUDE = 1e15
#: Exact fractions are kept while numerator and denominator fit this many bits; beyond, floats take over
#: (so no chain of powers can build a number with millions of digits).
_MAX_EXACT_BITS = 4096

#: Values while evaluating: exact fractions (integer literals, and what exact operations make of
#: them) or floats (decimal literals, and anything a float touches).
Number = Fraction | float


# --------------------------------------------------------------------------- the evaluator


def _bounded(x: Number) -> Number:
    if isinstance(x, float) and not math.isfinite(x):
        raise UnsafeExpressionError("non-finite value")
    if abs(float(x)) > MAX_MAGNITUDE:
        raise UnsafeExpressionError(f"value beyond {MAX_MAGNITUDE:g}")
    if isinstance(x, Fraction) and x.numerator.bit_length() + x.denominator.bit_length() > _MAX_EXACT_BITS:
        return float(x)
    return x


def _exact(x: Number | int) -> Number:
    return Fraction(x) if isinstance(x, int) else x


def _add(a: Number, b: Number) -> Number:
    return a + b


def _sub(a: Number, b: Number) -> Number:
    return a - b


def _mul(a: Number, b: Number) -> Number:
    return a * b


def _divide(a: Number, b: Number) -> Number:
    if b == 0:
        raise UnsafeExpressionError("division by zero")
    return a / b  # exact over fractions: 1 / 3 * 3 == 1


def _floordiv(a: Number, b: Number) -> Number:
    if b == 0:
        raise UnsafeExpressionError("division by zero")
    return _exact(a // b)


def _mod(a: Number, b: Number) -> Number:
    if b == 0:
        raise UnsafeExpressionError("modulo by zero")
    return a % b


def _log10_abs(x: Number) -> float:
    """log10 |x| for x != 0, also for fractions too small for a float."""
    if isinstance(x, Fraction):
        return math.log10(abs(x.numerator)) - math.log10(x.denominator)
    return math.log10(abs(x))


def _power(base: Number, exponent: Number) -> Number:
    # Refused before it is computed: |base| ** exponent must stay within MAX_MAGNITUDE.
    if base == 0:
        if exponent < 0:
            raise UnsafeExpressionError("zero to a negative power")
        return Fraction(0) if exponent > 0 else Fraction(1)
    if float(exponent) * _log10_abs(base) > math.log10(MAX_MAGNITUDE):
        raise UnsafeExpressionError(f"power beyond {MAX_MAGNITUDE:g}")
    integral = float(exponent).is_integer()
    if isinstance(base, Fraction) and isinstance(exponent, Fraction) and integral:
        bits = (base.numerator.bit_length() + base.denominator.bit_length()) * abs(int(exponent))
        if bits <= _MAX_EXACT_BITS:
            return base ** int(exponent)  # exact, and of bounded size
    if base < 0 and not integral:
        raise UnsafeExpressionError("fractional power of a negative number")
    return math.pow(float(base), float(exponent))


def _pos(a: Number) -> Number:
    return a


def _neg(a: Number) -> Number:
    return -a


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: _add,
    ast.Sub: _sub,
    ast.Mult: _mul,
    ast.Div: _divide,
    ast.FloorDiv: _floordiv,
    ast.Mod: _mod,
    ast.Pow: _power,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {ast.UAdd: _pos, ast.USub: _neg}


def _walk(node: ast.AST) -> Number:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UnsafeExpressionError(f"not a number: {value!r}")
        return _bounded(_exact(value))
    if isinstance(node, ast.BinOp):
        op = _BINARY.get(type(node.op))
        if op is None:
            raise UnsafeExpressionError(f"operator {type(node.op).__name__} is not allowed")
        return _bounded(op(_walk(node.left), _walk(node.right)))
    if isinstance(node, ast.UnaryOp):
        uop = _UNARY.get(type(node.op))
        if uop is None:
            raise UnsafeExpressionError(f"operator {type(node.op).__name__} is not allowed")
        return _bounded(uop(_walk(node.operand)))
    raise UnsafeExpressionError(f"{type(node).__name__} is not allowed")


def safe_eval(expression: str) -> float:
    """The value of an arithmetic ``expression`` (numbers, ``+ - * / // % **``, parentheses).

    Raises :class:`UnsafeExpressionError` for anything else (names, calls,
    attribute access, strings, comparisons, ...), for expressions longer than
    :data:`MAX_EXPRESSION_CHARS` or with more than 200 nodes, for division by
    zero and for any value beyond :data:`MAX_MAGNITUDE` (powers are bounded
    before they are computed). Division is exact (fractions) over integers.
    """
    text = expression.strip()
    if not text:
        raise UnsafeExpressionError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise UnsafeExpressionError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise UnsafeExpressionError(f"not an expression: {exc}") from None
    if sum(1 for _ in ast.walk(tree)) > _MAX_NODES:
        raise UnsafeExpressionError(f"expression with more than {_MAX_NODES} nodes")
    try:
        return float(_walk(tree.body))
    except UnsafeExpressionError:
        raise
    except (ArithmeticError, RecursionError, ValueError) as exc:  # overflow, math domain errors
        raise UnsafeExpressionError(f"cannot evaluate: {exc}") from None


def try_eval(expression: str) -> float | None:
    """:func:`safe_eval`, or ``None`` where it refuses."""
    try:
        return safe_eval(expression)
    except UnsafeExpressionError:
        return None


# --------------------------------------------------------------------------- numbers in text

# One number as written: optional sign and currency, thousands groups or plain digits, decimals,
# an optional "/denominator" (a fraction) and an optional percent sign.
_NUM = (
    r"(?P<sign>[-−]\s?)?[$€£]?\s?"
    r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)?(?P<frac>\.\d+)?(?P<exp>(?<=\d)[eE][-+]?\d{1,3}(?![\w]))?"
    r"(?:\s?/\s?(?P<den>\d+(?:\.\d+)?))?"
)
_NUMBER_RE = re.compile(r"(?<![\w.,])" + _NUM + r"(?![\d])")
_FULL_NUMBER_RE = re.compile(r"^\s*" + _NUM + r"\s*%?\s*\.?\s*$")


def _from_match(m: re.Match[str]) -> float | None:
    whole, frac, den = m.group("int"), m.group("frac"), m.group("den")
    if whole is None and frac is None:
        return None
    value = float((whole or "0").replace(",", "") + (frac or "") + (m.group("exp") or ""))
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        return None
    if den is not None:
        d = float(den)
        if d == 0:
            return None
        value /= d
    return -value if m.group("sign") else value


def parse_number(text: str) -> float | None:
    """``text`` as one number (``"$1,200.50"``, ``"-3/4"``, ``"12%"``, ``"42."``), else ``None``."""
    m = _FULL_NUMBER_RE.match(text.replace("\u2212", "-"))
    return _from_match(m) if m else None


def _numbers(text: str) -> list[float]:
    out = []
    for m in _NUMBER_RE.finditer(text):
        v = _from_match(m)
        if v is not None:
            out.append(v)
    return out


_MARKERS = (
    re.compile(r"####\s*(?P<x>[^\n]+)"),
    re.compile(r"\\boxed\{(?P<x>[^{}]+)\}"),
    re.compile(r"\banswer\s*(?:is|=|:|would\s+be|is\s+equal\s+to)\s*:?\s*(?P<x>[^\n]+)", re.IGNORECASE),
)
_BOLD = re.compile(r"(?:(?<=\s)|^)\*\*(?P<x>[^*]+)\*\*")  # markdown bold, not a power
_FENCE = re.compile(r"```[a-zA-Z]*\n?(?P<body>.*?)(?:```|$)", re.DOTALL)
_ASSIGN = re.compile(r"^\s*[A-Za-z_][A-Za-z_0-9]*\s*=(?!=)\s*")
_PRINT = re.compile(r"^\s*print\s*\((?P<x>.*)\)\s*;?\s*$")
_EXPR_CHARS = re.compile(r"^[\d\s.,+\-*/%()×÷−]+$")


def _clean_expression(line: str) -> str:
    s = line.strip().rstrip(";").strip()
    if s.startswith("`") and s.endswith("`"):
        s = s.strip("`").strip()
    m = _PRINT.match(s)
    if m:
        s = m.group("x")
    s = _ASSIGN.sub("", s)
    s = s.replace("×", "*").replace("÷", "/").replace("−", "-")
    return s.strip()


def _as_expression(line: str) -> str | None:
    """``line`` as an arithmetic expression ready for :func:`safe_eval`, or ``None`` if it is not one."""
    s = _clean_expression(line)
    if s.endswith("."):  # a full stop after an expression, not a decimal point
        s = s[:-1].rstrip()
    if not s or not _EXPR_CHARS.match(s) or not re.search(r"\d", s):
        return None
    # Thousands separators inside an expression ("1,200 * 3"), never tuples.
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)
    return None if "," in s else s


def _expression_value(line: str) -> float | None:
    """The value of ``line`` if it is (only) an arithmetic expression :func:`safe_eval` accepts, else ``None``."""
    expr = _as_expression(line)
    return None if expr is None else try_eval(expr)


def _value_of(fragment: str) -> float | None:
    """A marker's payload: a number, an expression (after its last ``=``, if any), or its first number."""
    frag = _BOLD.sub(r"\g<x>", fragment)
    if "=" in frag:
        frag = frag.rsplit("=", 1)[1]
    frag = frag.strip().strip("*").strip().rstrip(".").strip()
    n = parse_number(frag)
    if n is not None:
        return n
    v = _expression_value(frag)
    if v is not None:
        return v
    nums = _numbers(frag)
    return nums[0] if nums else None


def extract_number(text: str) -> float | None:
    """The final numeric answer of ``text``, or ``None`` if it holds no number.

    In order: the last ``#### N`` / ``\\boxed{N}`` / ``answer is N`` /
    ``Answer: N`` marker; a program-of-thought output (an arithmetic
    expression alone on the first non-empty line, or on the last line of a
    code block, possibly as ``print(...)`` or ``x = ...``), evaluated with
    :func:`safe_eval`; the number after the last ``=`` of the last line that
    has one; the last number anywhere.
    """
    if not text or not text.strip():
        return None
    text = text.replace("\u2212", "-")
    for marker in _MARKERS:
        hits = list(marker.finditer(text))
        for m in reversed(hits):
            v = _value_of(m.group("x"))
            if v is not None:
                return v
    fence = _FENCE.search(text)
    body = fence.group("body") if fence else text
    lines = [ln for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if lines:
        candidates = [lines[-1], lines[0]] if fence else [lines[0]]
        for line in candidates:
            expr = _as_expression(line)
            if expr is not None:
                # An expression the evaluator refuses (9**9**9, 1/0) has no answer: never fall
                # back to one of its literals.
                return try_eval(expr)
    for line in reversed(text.splitlines()):
        if "=" in line:
            nums = _numbers(line.rsplit("=", 1)[1])
            if nums:
                return nums[0]
            v = _expression_value(line.rsplit("=", 1)[1])
            if v is not None:
                return v
    nums = _numbers(text)
    return nums[-1] if nums else None


def numbers_equal(a: float, b: float, rel_tol: float = DEFAULT_REL_TOL) -> bool:
    """Whether ``a`` and ``b`` are the same answer: within ``rel_tol`` relative (or 1e-9 absolute)."""
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=_ABS_TOL)


def format_number(x: float) -> str:
    """``x`` as an answer is written: ``"12"`` for integral values, else up to 10 significant digits."""
    if math.isfinite(x) and abs(x - round(x)) <= _ABS_TOL * max(1.0, abs(x)):
        return str(round(x))
    return f"{x:.10g}"
