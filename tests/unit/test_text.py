from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semcascade.text import (
    answer_tokens,
    contains_answer,
    normalize_answer,
    split_sentences,
    strip_question_echo,
    token_f1,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  A   cat,\tan apple;  THE end. ", "cat apple end"),
        ("May 18 , 2018", "may 18 2018"),
        ("May 18, 2018", "may 18 2018"),
        ("Jean-Paul Sartre", "jean paul sartre"),
        ("“Quoted” — text…", "quoted text"),
        ("theatre another", "theatre another"),  # articles only as whole words
        ("", ""),
        ("?!.", ""),
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_answer_tokens() -> None:
    assert answer_tokens("The U.S. Army") == ["u", "s", "army"]
    assert answer_tokens("  ") == []


def test_strip_question_echo_removes_restated_question() -> None:
    out = strip_question_echo("Hamlet was written by William Shakespeare.", "Who wrote Hamlet?")
    assert out == "was written by william shakespeare"


def test_strip_question_echo_capital_example() -> None:
    assert strip_question_echo("The capital of France is Paris", "What is the capital of France?") == "paris"


def test_strip_question_echo_falls_back_to_normalised_answer() -> None:
    # "France" only repeats a question word; stripping would leave nothing.
    assert strip_question_echo("France.", "Is Paris in France or Germany?") == "france"
    assert strip_question_echo("", "anything") == ""


def test_contains_answer_whole_tokens() -> None:
    assert contains_answer("I think it is Paris, France.", ["Paris"])
    assert not contains_answer("Parisian cafes", ["Paris"])
    assert contains_answer("It happened on May 18, 2018.", "May 18 , 2018")
    assert not contains_answer("May 2018", "May 18 , 2018")
    assert contains_answer("the answer is george washington", ["Abraham Lincoln", "George Washington"])
    assert not contains_answer("anything", ["", "the"])  # empty after normalisation never matches
    assert not contains_answer("", ["Paris"])


def test_token_f1_values() -> None:
    assert token_f1("the cat sat", "cat sat down") == pytest.approx(0.8)
    assert token_f1("Paris", "paris!") == 1.0
    assert token_f1("Paris", "Berlin") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("", "x") == 0.0
    assert token_f1("x", "the") == 0.0  # "the" normalises to nothing
    # multiplicity counts: "x x" vs "x": P=1/2, R=1
    assert token_f1("x x", "x") == pytest.approx(2 / 3)


def test_split_sentences() -> None:
    assert split_sentences("Dr. Smith went home. He was tired!  Was he? Yes.") == [
        "Dr. Smith went home.",
        "He was tired!",
        "Was he?",
        "Yes.",
    ]
    assert split_sentences("   ") == []
    assert split_sentences("no final stop") == ["no final stop"]


def test_split_sentences_regex_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    import semcascade.text as text

    monkeypatch.setattr(text, "_punkt_tokenizer", None)
    monkeypatch.setattr(text, "_punkt_missing", True)
    assert text.split_sentences('He said "Go." Then he left. 3 men came') == [
        'He said "Go."',
        "Then he left.",
        "3 men came",
    ]


@given(st.text(max_size=60))
def test_normalize_is_idempotent(s: str) -> None:
    once = normalize_answer(s)
    assert normalize_answer(once) == once
    assert once == once.strip()
    assert "  " not in once


@given(st.text(max_size=40), st.text(max_size=40))
def test_token_f1_symmetric_and_bounded(a: str, b: str) -> None:
    f = token_f1(a, b)
    assert 0.0 <= f <= 1.0
    assert f == pytest.approx(token_f1(b, a))


@given(st.text(max_size=40), st.text(max_size=40))
def test_strip_question_echo_never_adds_tokens(answer: str, question: str) -> None:
    out = strip_question_echo(answer, question).split()
    assert set(out) <= set(answer_tokens(answer))
    assert bool(out) == bool(answer_tokens(answer))
