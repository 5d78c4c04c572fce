"""``task: auto``: the task classifier (fit, save/load, errors) and the cascade running the predicted task."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semcascade import Cascade, ConfigError, MockProvider, load_config
from semcascade.messages import normalize_messages, question_of
from semcascade.providers import Completion, CompletionRequest
from semcascade.task_classifier import TaskClassifier
from tests.unit.test_tasks import CFG


class BagOfLetters:
    """A deterministic stand-in embedder: letter counts (digits weigh on one axis)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 27), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                if ch.isdigit():
                    out[i, 26] += 1
                elif "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


PROMPTS = {
    "math": ["12 + 30 * 4 = ?", "What is 7 * 8 - 3?", "17 apples, 5 eaten, 2 bought?", "99 / 3 + 1"],
    "qa": ["who wrote hamlet", "where is the eiffel tower", "who painted the mona lisa", "what river flows in egypt"],
}


def test_fit_separates_the_tasks_and_round_trips(tmp_path: Path) -> None:
    emb = BagOfLetters()
    clf = TaskClassifier.fit(PROMPTS, embedder=emb)  # type: ignore[arg-type]
    assert clf.classify(["3 * 14 + 8", "who discovered penicillin"]) == ["math", "qa"]
    path = clf.save(tmp_path / "t.json")
    back = TaskClassifier.load(path)
    back._embedder = emb  # type: ignore[assignment]
    x = emb.embed(["3 * 14 + 8", "who discovered penicillin", "5"])
    assert back.classify_vectors(x) == clf.classify_vectors(x)
    np.testing.assert_allclose(back.scores(x), clf.scores(x), atol=1e-4)
    assert back.meta["fitted_on"] == {"math": 4, "qa": 4}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("not json", "not a task classifier artifact"),
        ('{"format": "other"}', "not a semcascade.task_classifier/1 artifact"),
        ('{"format": "semcascade.task_classifier/1", "tasks": ["a"]}', "lacks its tasks or parameters"),
        (
            '{"format": "semcascade.task_classifier/1", "tasks": ["a", "b"], "weights": [[1, 2]], "bias": [0, 0],'
            ' "mean": [0, 0], "scale": [1, 1]}',
            "one weight row and bias per task",
        ),
        (
            '{"format": "semcascade.task_classifier/1", "tasks": ["a", "a"], "weights": [[1], [2]], "bias": [0, 0],'
            ' "mean": [0], "scale": [1]}',
            "labels repeat",
        ),
    ],
)
def test_bad_artifacts_are_named(tmp_path: Path, content: str, match: str) -> None:
    p = tmp_path / "t.json"
    p.write_text(content)
    with pytest.raises(ConfigError, match=match):
        TaskClassifier.load(p)


def test_missing_and_unknown_builtin() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        TaskClassifier.load("/nonexistent/t.json")
    with pytest.raises(ConfigError, match="no builtin task classifier 'nope'; choose from tasks-v1"):
        TaskClassifier.load("builtin:nope")
    with pytest.raises(ConfigError, match="at least two tasks"):
        TaskClassifier.fit_vectors({"a": np.ones((2, 3))})


def test_the_shipped_classifier_loads_with_the_tasks_of_the_embedded_default() -> None:
    clf = TaskClassifier.load("builtin:tasks-v1")
    assert sorted(clf.tasks) == ["math", "qa", "rc", "summarization", "translation"]
    raw = json.loads((Path(__file__).resolve().parents[2] / "semcascade/artifacts/tasks-v1.json").read_text())
    assert raw["meta"]["split"] == "calibration"


def handler(req: CompletionRequest) -> Completion:
    return MockProvider.texts(req.model, ["12"] * req.n)


def _auto_cfg(artifact: Path) -> dict[str, Any]:
    return {**CFG, "task_classifier": str(artifact), "default_task": "auto"}


async def test_auto_runs_the_predicted_tasks_cascade(tmp_path: Path) -> None:
    emb = BagOfLetters()
    clf = TaskClassifier.fit(PROMPTS, embedder=emb)  # type: ignore[arg-type]
    path = clf.save(tmp_path / "t.json")
    async with Cascade(_auto_cfg(path), provider=MockProvider(handler)) as cascade:
        loaded = TaskClassifier.load(path)
        loaded._embedder = emb  # type: ignore[assignment]
        cascade._classifier = loaded
        seen = set()
        for prompt, task in (("What is 5 * 7 + 2?", None), ("who wrote the odyssey", "auto")):
            want = clf.classify([question_of(normalize_messages(prompt))])[0]
            got = await cascade.generate(prompt, task=task)  # None: default_task auto
            assert got.task == want
            # qa's cascade is the strong tier alone; math's has both tiers
            assert got.tiers_tried[0] == ("strong" if want == "qa" else "cheap")
            seen.add(got.task)
        assert seen == {"math", "qa"}


async def test_a_label_outside_the_configs_tasks_runs_the_base_cascade(tmp_path: Path) -> None:
    emb = BagOfLetters()
    other = {"poetry": ["roses are red violets are blue"], "qa": PROMPTS["qa"]}
    path = TaskClassifier.fit(other, embedder=emb).save(tmp_path / "t.json")  # type: ignore[arg-type]
    async with Cascade(_auto_cfg(path), provider=MockProvider(handler)) as cascade:
        cascade._classifier = TaskClassifier.load(path)
        cascade._classifier._embedder = emb  # type: ignore[assignment]
        got = await cascade.generate("roses are red, violets are blue", task="auto")
    assert got.task is None and got.tiers_tried[0] == "cheap"


async def test_auto_without_a_classifier_is_refused() -> None:
    async with Cascade(CFG, provider=MockProvider(handler)) as cascade:
        with pytest.raises(ConfigError, match="task 'auto' needs a task classifier: set task_classifier"):
            await cascade.generate("hi", task="auto")
    with pytest.raises(ConfigError, match="default_task 'auto' is not one of the tasks"):
        load_config({**CFG, "default_task": "auto"})
    with pytest.raises(ConfigError, match=r"tasks\.qa\.task_classifier: set it at the top level"):
        load_config({**CFG, "tasks": {"qa": {"task_classifier": "builtin:tasks-v1"}}})
