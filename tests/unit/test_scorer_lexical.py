from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semcascade.errors import ScorerError
from semcascade.scoring import lexical
from semcascade.scoring._registry import available_scorers, create_scorer
from semcascade.scoring.base import AgreementScorer
from semcascade.scoring.lexical import LexicalScorer, lcs_length, rouge_l_f1, token_f1_tokens
from semcascade.text import token_f1


def test_lcs_length() -> None:
    assert lcs_length(["x", "y", "z", "w"], ["x", "z", "w", "v"]) == 3
    assert lcs_length([], ["x"]) == 0
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4  # textbook example


def test_rouge_l_values() -> None:
    assert rouge_l_f1(["x", "y", "z", "w"], ["x", "z", "w", "v"]) == pytest.approx(0.75)
    # P = 2/2, R = 2/4 -> F = 2/3
    assert rouge_l_f1(["x", "y"], ["x", "q", "y", "r"]) == pytest.approx(2 / 3)


async def test_order_matters_for_rouge_not_token_f1() -> None:
    pairs = [("John loves Mary", "Mary loves John")]
    rouge = (await LexicalScorer("rouge_l", "ignore").judge("", pairs))[0]
    f1 = (await LexicalScorer("token_f1", "ignore").judge("", pairs))[0]
    assert rouge.forward == pytest.approx(1 / 3)
    assert f1.forward == pytest.approx(1.0)


async def test_question_echo_stripping_changes_the_verdict() -> None:
    q = "What is the capital of France?"
    pairs = [("The capital of France is Paris.", "The capital of France is Lyon.")]
    ignore = (await LexicalScorer(question_mode="ignore").judge(q, pairs))[0]
    strip = (await LexicalScorer(question_mode="strip").judge(q, pairs))[0]
    assert ignore.forward == pytest.approx(0.8)  # 4 of 5 tokens shared: the restated question
    assert strip.forward == 0.0  # "paris" vs "lyon"


async def test_default_mode_strips_question_echo() -> None:
    q = "Who wrote Hamlet?"
    pairs = [("Hamlet was written by Shakespeare", "Shakespeare"), ("Shakespeare", "Marlowe")]
    out = await LexicalScorer().judge(q, pairs)
    # stripped: "was written by shakespeare" vs "shakespeare": P=1/4, R=1 -> 0.4
    assert out[0].forward == pytest.approx(0.4)
    assert out[1].forward == 0.0


async def test_empty_texts() -> None:
    out = await LexicalScorer().judge("q", [("", ""), ("", "Paris"), ("Paris", "  "), ("?!", "the")])
    assert [j.forward for j in out] == [1.0, 0.0, 0.0, 1.0]


async def test_judgement_shape_and_order() -> None:
    pairs = [("Paris", "Paris"), ("Paris", "Berlin"), ("red big car", "big red car")]
    out = await LexicalScorer(question_mode="ignore").judge("q", pairs)
    assert len(out) == 3
    assert [j.forward for j in out] == pytest.approx([1.0, 0.0, 2 / 3])
    for j in out:
        assert j.forward == j.backward
        assert j.contradiction is None
    assert await LexicalScorer().judge("q", []) == []


async def test_large_inputs_are_scored_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    original = LexicalScorer._judge_sync

    def spy(self: LexicalScorer, question: str, pairs: list[tuple[str, str]]) -> object:
        threads.append(threading.current_thread().name)
        return original(self, question, pairs)

    monkeypatch.setattr(LexicalScorer, "_judge_sync", spy)
    scorer = LexicalScorer()
    long_a = " ".join(f"w{i}" for i in range(800))
    long_b = " ".join(f"w{i}" for i in range(0, 1600, 2))
    big = await scorer.judge("q", [(long_a, long_b)])
    await scorer.judge("q", [("short", "answer")])
    assert threads[0] != threading.main_thread().name
    assert threads[1] == threading.main_thread().name
    # 400 shared tokens in order; 800 each -> 0.5
    assert big[0].forward == pytest.approx(0.5)


def test_registry_and_protocol() -> None:
    assert "lexical" in available_scorers()
    scorer = create_scorer("lexical", metric="token_f1", question_mode="ignore")
    assert isinstance(scorer, LexicalScorer)
    assert isinstance(scorer, AgreementScorer)
    assert scorer.name == "lexical" and scorer.kind == "similarity"
    assert "token_f1" in repr(scorer)


def test_bad_options() -> None:
    with pytest.raises(ScorerError, match="metric"):
        LexicalScorer(metric="bleu")  # type: ignore[arg-type]
    with pytest.raises(ScorerError, match="question_mode"):
        LexicalScorer(question_mode="prefix")  # type: ignore[arg-type]
    with pytest.raises(ScorerError, match="bad options"):
        create_scorer("lexical", nonsense=1)


@given(st.text(max_size=30), st.text(max_size=30))
def test_metrics_bounded_symmetric_and_token_f1_matches_text(a: str, b: str) -> None:
    scorer = LexicalScorer(question_mode="ignore")
    ta, tb = scorer._tokens(a, ""), scorer._tokens(b, "")
    for fn in (rouge_l_f1, token_f1_tokens):
        v = fn(ta, tb)
        assert 0.0 <= v <= 1.0
        assert v == pytest.approx(fn(tb, ta))
    assert token_f1_tokens(ta, tb) == pytest.approx(token_f1(a, b))
    assert rouge_l_f1(ta, tb) <= token_f1_tokens(ta, tb) + 1e-12  # LCS <= bag overlap


def test_importing_scorers_loads_no_heavy_packages() -> None:
    # Registering every scorer must not import torch/onnxruntime/litellm or load a model.
    code = (
        "import sys\n"
        "from semcascade.scoring._registry import available_scorers\n"
        "import semcascade.scoring.cache, semcascade.text\n"
        "assert available_scorers() == ['cross_encoder', 'embedding', 'lexical', 'llm_judge', 'numeric']\n"
        "heavy = ('torch', 'onnxruntime', 'sentence_transformers', 'transformers', 'litellm', 'tokenizers')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert lexical.LexicalScorer is LexicalScorer
