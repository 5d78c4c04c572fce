"""Quality metrics: hand-computed values and equality with rouge-score / sacrebleu called directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from statistics import fmean

import pytest

from semcascade.evaluation.datasets import TASKS
from semcascade.evaluation.quality import (
    ROUGE_TYPES,
    TASK_METRICS,
    bleu,
    chrf,
    chrf_sentence,
    contains,
    exact_match,
    f1,
    get_task_metrics,
    hallucination_rate_qa,
    lsum_text,
    rouge,
    rouge_scores,
)

REPO = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- EM / F1 / contains (by hand)


@pytest.mark.parametrize(
    ("pred", "refs", "expected"),
    [
        ("The Eiffel Tower!", ["eiffel tower"], 1.0),  # case, article, punctuation
        ("an  apple.", "Apple", 1.0),  # a single string reference
        ("Eiffel", ["Eiffel Tower"], 0.0),
        ("May 18, 2018", ["May 18 , 2018"], 1.0),  # DPR tokenisation
        ("NYC", ["New York City", "nyc"], 1.0),  # any alias
        ("New York", ["New York City", "NYC"], 0.0),
        ("Paris", [], 0.0),
    ],
)
def test_exact_match(pred: str, refs: list[str] | str, expected: float) -> None:
    assert exact_match(pred, refs) == expected


@pytest.mark.parametrize(
    ("pred", "refs", "expected"),
    [
        ("the big cat", ["a cat"], 2 / 3),  # {big, cat} vs {cat}: P=1/2, R=1
        ("New York City", ["NYC", "New York"], 0.8),  # best alias: P=2/3, R=1
        ("cat cat dog", ["cat dog dog"], 2 / 3),  # multiset overlap 2: P=R=2/3
        ("Barack Obama", ["obama, barack"], 1.0),  # bag of tokens
        ("the", ["a"], 1.0),  # both empty after normalisation
        ("Lyon", ["Paris"], 0.0),
        ("Lyon", [], 0.0),
    ],
)
def test_f1(pred: str, refs: list[str], expected: float) -> None:
    assert f1(pred, refs) == pytest.approx(expected)


def test_contains() -> None:
    assert contains("It is Paris, France.", ["Lyon", "paris"]) == 1.0
    assert contains("Parisian", ["Paris"]) == 0.0
    assert contains("It came out on May 18, 2018", "May 18 , 2018") == 1.0
    assert contains("anything", [")"]) == 0.0  # a reference that normalises to nothing never matches


def test_hallucination_rate_qa() -> None:
    preds = ["Paris", None, "Lyon", "", "It is Rome.", "Madrid"]
    refs = [["Paris"], ["x"], ["Paris"], ["y"], ["Rome"], ["Spain"]]
    # blank/None -> abstained; answered: Paris(ok) Lyon(wrong) Rome(ok) Madrid(wrong) -> 2/4
    assert hallucination_rate_qa(preds, refs) == 0.5
    # explicit flags decide alone: abstain on Lyon; the blank answer now counts as answered (and wrong)
    flags = [False, True, True, False, False, False]
    assert hallucination_rate_qa(preds, refs, flags) == pytest.approx(2 / 4)
    assert hallucination_rate_qa(["Paris", "Rome"], [["Paris"], ["Rome"]]) == 0.0
    assert hallucination_rate_qa([None, " "], [["a"], ["b"]]) is None
    with pytest.raises(ValueError):
        hallucination_rate_qa(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError):
        hallucination_rate_qa(["a"], [["a"]], [True, False])


# --------------------------------------------------------------------------- ROUGE


SUMMARIES = [
    (
        "The cat sat on the mat. It was very happy there.",
        "A cat was sitting on the mat. The cat seemed happy.",
    ),
    (
        "Police arrested two men on Tuesday. Both were later released on bail.",
        "Two men were arrested by police. They were released on bail on Wednesday. No charges were filed.",
    ),
    ("Short.", "Completely different words here."),
    ("", "An empty prediction scores zero."),
]


def _punkt_lines(text: str) -> str:
    import punkt

    tok = punkt.PunktSentenceTokenizer(punkt.load_model("english"))
    return "\n".join(s.strip() for line in text.splitlines() for s in tok.tokenize(line) if s.strip())


def test_rouge_equals_rouge_score_called_directly() -> None:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    preds = [p for p, _ in SUMMARIES]
    refs = [r for _, r in SUMMARIES]
    ours = rouge_scores(preds, refs)
    for (pred, ref), got in zip(SUMMARIES, ours, strict=True):
        plain = scorer.score(ref, pred)  # (target, prediction)
        for t in ("rouge1", "rouge2", "rougeL"):
            assert got[t] == pytest.approx(plain[t].fmeasure, abs=1e-12)
        split = scorer.score(_punkt_lines(ref), _punkt_lines(pred))
        assert got["rougeLsum"] == pytest.approx(split["rougeLsum"].fmeasure, abs=1e-12)
    corpus = rouge(preds, refs)
    assert set(corpus) == set(ROUGE_TYPES)
    for t in ROUGE_TYPES:
        assert corpus[t] == pytest.approx(fmean(s[t] for s in ours))
    assert ours[3] == dict.fromkeys(ROUGE_TYPES, 0.0)


def test_rouge_by_hand_and_multi_reference() -> None:
    # unigrams: pred {the, cat, sat} vs ref {the, cat, sat, down}: P=1, R=3/4 -> F=6/7
    (s,) = rouge_scores(["the cat sat"], ["the cat sat down"])
    assert s["rouge1"] == pytest.approx(6 / 7)
    assert s["rouge2"] == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))  # bigrams 2/2 vs 2/3
    # several references: the best per type, as rouge-score's score_multi
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    refs = ["A dog barked loudly.", "The cat sat on the mat."]
    (multi,) = rouge_scores(["The cat sat on a mat."], [refs])
    direct = scorer.score_multi(refs, "The cat sat on a mat.")
    for t in ROUGE_TYPES:
        assert multi[t] == pytest.approx(direct[t].fmeasure)
    assert multi["rouge1"] > rouge_scores(["The cat sat on a mat."], [refs[0]])[0]["rouge1"]
    # Porter stemming: "cats" matches "cat"
    assert rouge_scores(["cats"], ["cat"])[0]["rouge1"] == 1.0


def test_rouge_lsum_differs_from_rouge_l_on_reordered_sentences() -> None:
    # Whole-text LCS can follow only one sentence (3 of 6 tokens): ROUGE-L = 0.5.
    # Summary-level LCS matches each reference sentence in full: ROUGE-Lsum = 1.0.
    (s,) = rouge_scores(["The dog barked. The cat sat."], ["The cat sat. The dog barked."])
    assert s["rougeL"] == pytest.approx(0.5)
    assert s["rougeLsum"] == pytest.approx(1.0)
    assert s["rouge1"] == pytest.approx(1.0)


def test_lsum_text_splits_sentences_with_punkt() -> None:
    text = "Dr. Smith arrived at 5 p.m. on Monday. He left early.\nNew paragraph here."
    assert lsum_text(text) == "Dr. Smith arrived at 5 p.m. on Monday.\nHe left early.\nNew paragraph here."
    assert lsum_text("") == ""


def test_rouge_input_checks() -> None:
    with pytest.raises(ValueError, match="2 predictions but 1"):
        rouge(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no reference"):
        rouge(["a"], [[]])
    assert rouge([], []) == dict.fromkeys(ROUGE_TYPES, 0.0)


def test_sentence_splitting_and_metrics_work_offline(tmp_path: Path) -> None:
    """A fresh interpreter with sockets disabled and an empty NLTK data path: no download needed."""
    script = textwrap.dedent(
        """
        import json, socket, sys

        def refuse(*args, **kwargs):
            raise OSError("network disabled in this test")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        import semcascade.evaluation.quality as q
        import semcascade.evaluation.prompts
        light = not any(m in sys.modules for m in ("rouge_score", "sacrebleu", "nltk"))
        import semcascade.text as text
        lines = q.lsum_text("Dr. Smith arrived at 5 p.m. on Monday. He left early.")
        s = q.rouge_scores(["The dog barked. The cat sat."], ["The cat sat. The dog barked."])[0]
        b = q.bleu(["the cat sat on the mat"], ["the cat sat on the mat"])
        print(json.dumps({"light": light, "punkt": text._punkt_tokenizer is not None, "lines": lines,
                          "L": s["rougeL"], "Lsum": s["rougeLsum"], "bleu": b[0]}))
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", NLTK_DATA=str(tmp_path), PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["light"] is True  # importing the evaluation modules pulls in no metric library
    assert got["punkt"] is True  # the offline Punkt model was used, not the regex fallback
    assert got["lines"] == "Dr. Smith arrived at 5 p.m. on Monday.\nHe left early."
    assert got["L"] == pytest.approx(0.5) and got["Lsum"] == pytest.approx(1.0)
    assert got["bleu"] == pytest.approx(100.0)


# --------------------------------------------------------------------------- BLEU / chrF

HYPS = ["The cat is on the mat.", "There is a dog in the garden today.", "He reads books"]
REFS = ["The cat sat on the mat.", "A dog is in the garden.", "He is reading a book"]


def test_bleu_and_chrf_equal_sacrebleu_called_directly() -> None:
    from sacrebleu import BLEU, CHRF

    direct_bleu = BLEU()
    expected = direct_bleu.corpus_score(HYPS, [REFS])
    score, sig = bleu(HYPS, REFS)
    assert score == expected.score
    assert sig == str(direct_bleu.get_signature())
    assert sig.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")

    direct_chrf = CHRF()
    expected_c = direct_chrf.corpus_score(HYPS, [REFS])
    score_c, sig_c = chrf(HYPS, REFS)
    assert score_c == expected_c.score
    assert sig_c == str(direct_chrf.get_signature())
    assert "nc:6" in sig_c

    for h, r in zip(HYPS, REFS, strict=True):
        assert chrf_sentence(h, r) == CHRF().sentence_score(h, [r]).score
    # corpus chrF pools statistics: not the mean of sentence scores
    assert score_c != pytest.approx(fmean(chrf_sentence(h, r) for h, r in zip(HYPS, REFS, strict=True)))

    # a different tokenizer is passed through
    intl, sig_i = bleu(HYPS, REFS, tokenize="intl")
    assert intl == BLEU(tokenize="intl").corpus_score(HYPS, [REFS]).score and "tok:intl" in sig_i


def test_bleu_multi_and_variable_references() -> None:
    from sacrebleu import BLEU, CHRF

    refs = [["The cat sat on the mat.", "A cat is on the mat."], ["A dog is in the garden."], ["He is reading a book"]]
    streams = [
        ["The cat sat on the mat.", "A dog is in the garden.", "He is reading a book"],
        ["A cat is on the mat.", None, None],
    ]
    score, sig = bleu(HYPS, refs)
    assert score == BLEU().corpus_score(HYPS, streams).score  # type: ignore[arg-type]
    assert "nrefs:var" in sig
    assert chrf(HYPS, refs)[0] == CHRF().corpus_score(HYPS, streams).score  # type: ignore[arg-type]
    assert score > bleu(HYPS, [r[0] for r in refs])[0]  # the extra reference helps sentence 1


def test_bleu_by_hand() -> None:
    assert bleu(["the cat sat on the mat"], [["the cat sat on the mat"]])[0] == pytest.approx(100.0)
    assert bleu(["completely unrelated words"], ["the cat sat on the mat"])[0] == 0.0
    assert chrf(["abc"], ["abc"])[0] == pytest.approx(100.0)
    assert chrf_sentence("xyz", "abc") == 0.0


# --------------------------------------------------------------------------- per-task registry


def test_registry_covers_every_task() -> None:
    assert set(TASK_METRICS) == set(TASKS)
    assert {t: m.headline for t, m in TASK_METRICS.items()} == {
        "qa": "accuracy",
        "rc": "accuracy",
        "summarization": "rougeL",
        "translation": "chrf",
        "math": "accuracy",
    }
    with pytest.raises(ValueError, match="no metrics"):
        get_task_metrics("chat")


def test_qa_task_metrics() -> None:
    m = get_task_metrics("qa")
    preds = ["The Eiffel Tower", "It is in Paris, France", "Lyon"]
    refs = [["Eiffel Tower"], ["Paris"], ["Paris"]]
    assert m.per_example(preds[1], ("Paris",)) == {"accuracy": 1.0, "exact_match": 0.0, "f1": pytest.approx(2 / 6)}
    assert m.score(preds[2], "Paris") == 0.0
    agg = m.evaluate(preds, refs)
    assert agg["accuracy"] == pytest.approx(2 / 3)
    assert agg["exact_match"] == pytest.approx(1 / 3)
    assert agg["f1"] == pytest.approx((1 + 2 / 6 + 0) / 3)
    assert get_task_metrics("rc").evaluate(preds, refs) == agg
    assert m.evaluate([], []) == {"accuracy": 0.0, "exact_match": 0.0, "f1": 0.0}
    with pytest.raises(ValueError):
        m.evaluate(["a"], [])


def test_summarization_and_translation_task_metrics() -> None:
    preds = [p for p, _ in SUMMARIES]
    refs = [r for _, r in SUMMARIES]
    summ = get_task_metrics("summarization")
    per = rouge_scores(preds, refs)
    assert [summ.score(p, r) for p, r in SUMMARIES] == [s["rougeL"] for s in per]
    assert summ.evaluate(preds, refs) == pytest.approx(rouge(preds, refs))

    mt = get_task_metrics("translation")
    assert mt.score(HYPS[0], REFS[0]) == chrf_sentence(HYPS[0], REFS[0])
    agg = mt.evaluate(HYPS, REFS)
    assert agg["bleu"] == bleu(HYPS, REFS)[0]
    assert agg["chrf"] == chrf(HYPS, REFS)[0]
    assert agg["chrf_mean"] == pytest.approx(fmean(chrf_sentence(h, r) for h, r in zip(HYPS, REFS, strict=True)))
    assert mt.evaluate([], []) == {"bleu": 0.0, "chrf": 0.0, "chrf_mean": 0.0}
    assert 0.0 < mt.per_example(HYPS[0], (REFS[0],))["bleu"] < 100.0
