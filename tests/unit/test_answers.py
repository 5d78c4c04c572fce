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
    assert set(ANSWER_FORMATS) == {"raw", "first_line", "short"}
