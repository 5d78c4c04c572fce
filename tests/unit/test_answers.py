import pytest

from semcascade.answers import ANSWER_FORMATS, extract_answer


@pytest.mark.parametrize(
    ("raw", "short"),
    [
        ("The answer is: Texas.", "Texas"),
        ("Answer: King Michael.", "King Michael"),
        ("**Ill Bill**", "Ill Bill"),
        ('"Tux"', "Tux"),
        ("Atlanta, Georgia", "Atlanta, Georgia"),
        ("Yes\n\nBecause the context says so.", "Yes"),
        ("\n\n  January 7, 1950  \n", "January 7, 1950"),
        ("the final answer is 924.", "924"),
        ("Washington, D.C.", "Washington, D.C."),  # an abbreviation keeps its full stop
        ("J. R. R. Tolkien.", "J. R. R. Tolkien"),
    ],
)
def test_short_format_strips_chatter_but_keeps_the_answer(raw: str, short: str) -> None:
    assert extract_answer(raw, "short") == short


def test_first_line_and_raw() -> None:
    text = "  Paris is the capital.\nMore text\n"
    assert extract_answer(text, "first_line") == "Paris is the capital."
    assert extract_answer(text, "raw") == "Paris is the capital.\nMore text"


def test_never_empties_a_non_empty_output() -> None:
    assert extract_answer("Answer:", "short") == "Answer:"
    assert extract_answer("", "short") == ""


def test_unknown_format_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="first_line"):
        extract_answer("x", "span")
    assert set(ANSWER_FORMATS) == {"raw", "first_line", "short", "number"}


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        ("(3 * 12) - 5", "31"),  # a program-of-thought expression, evaluated
        ("(6 * 12) / 10\n\nbecause ...", "7.2"),
        ("Tom has 4 apples, then 3 more.\n#### 7", "7"),  # a GSM8K-style final line wins
        ("The answer is 1,250.", "1250"),
        ("12 / 4 = 3.0", "3"),  # integral values are written as integers
    ],
)
def test_number_format_is_the_evaluated_final_answer(raw: str, number: str) -> None:
    assert extract_answer(raw, "number") == number


def test_number_format_keeps_an_output_without_a_number() -> None:
    # no number to give: the output itself, never an empty or invented answer
    assert extract_answer("  I cannot tell.  ", "number") == "I cannot tell."
    assert extract_answer("9 ** 9 ** 9", "number") == "9 ** 9 ** 9"  # refused by the evaluator
