"""Fit the shipped ``task: auto`` classifier and measure it on a mixed stream of the tasks' test prompts.

Each task's prompts are its datasets' examples rendered with the task's template (what a user of that
task sends: the last user turn). The classifier (``semcascade.task_classifier``: one-vs-rest logistic models
over MiniLM embeddings) is fitted on the **calibration** split and measured on the **test** split, with a
seeded draw of up to ``--n`` prompts per dataset on each side.

    .venv/bin/python benchmarks/task_classifier.py

Writes semcascade/artifacts/tasks-v1.json (the artifact ``task_classifier: builtin:tasks-v1`` loads) and
benchmarks/results/task_classifier.{json,md}. Offline: the datasets and the embedder are local.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _report import write_report

from semcascade.evaluation.datasets import load_dataset
from semcascade.evaluation.prompts import build_messages
from semcascade.messages import question_of
from semcascade.scoring.embedding import EmbeddingScorer
from semcascade.task_classifier import TaskClassifier

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "task_classifier"
ARTIFACT = ROOT / "semcascade" / "artifacts" / "tasks-v1.json"
#: config task -> the datasets whose prompts it serves
DATASETS: dict[str, tuple[str, ...]] = {
    "rc": ("halueval_qa",),
    "qa": ("nq", "trivia"),
    "summarization": ("cnn_dailymail",),
    "translation": ("translation",),
    "math": ("gsm_symbolic",),
}


def prompts(split: str, n: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """task -> [(example id, last user turn)] for ``split``."""
    out: dict[str, list[tuple[str, str]]] = {}
    for task, names in DATASETS.items():
        rows = []
        for name in names:
            for ex in load_dataset(name, n=n, seed=seed, split=split):
                rows.append((str(ex.id), question_of(build_messages(ex))))
        out[task] = rows
    return out


def markdown(rep: dict[str, Any]) -> str:
    tasks = rep["tasks"]
    lines = [
        "# `task: auto`: a task classifier on MiniLM embeddings (one-vs-rest logistic)",
        "",
        f"Command: `{rep['command']}`. Fitted on the calibration split ({rep['fitted_on']} prompts per task), "
        f"measured on a mixed stream of {rep['n_test']} test-split prompts.",
        "",
        f"Accuracy on the mixed stream: **{rep['accuracy']:.3f}**.",
        "",
        "| true task \\ predicted | " + " | ".join(tasks) + " | n | recall |",
        "|---" * (len(tasks) + 3) + "|",
    ]
    for t in tasks:
        row = rep["confusion"][t]
        n = sum(row.values())
        lines.append(
            f"| {t} | " + " | ".join(str(row.get(p, 0)) for p in tasks) + f" | {n} | {row.get(t, 0) / n:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=150, help="prompts per dataset and split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--artifact", default=str(ARTIFACT))
    args = ap.parse_args(argv)
    cal = prompts("calibration", args.n, args.seed)
    test = prompts("test", args.n, args.seed)
    emb = EmbeddingScorer(backend="onnx")
    clf = TaskClassifier.fit_vectors(
        {t: emb.embed([p for _, p in rows]) for t, rows in cal.items()},
        meta={
            "split": "calibration",
            "datasets": {t: list(v) for t, v in DATASETS.items()},
            "command": "python benchmarks/task_classifier.py",
            "created": dt.date.today().isoformat(),
        },
    )
    clf.save(args.artifact)
    stream = [(t, i, p) for t, rows in test.items() for i, p in rows]
    predicted = clf.classify_vectors(emb.embed([p for _, _, p in stream]))
    confusion: dict[str, dict[str, int]] = {t: {} for t in clf.tasks}
    for (t, _, _), p in zip(stream, predicted, strict=True):
        confusion[t][p] = confusion[t].get(p, 0) + 1
    right = sum(t == p for (t, _, _), p in zip(stream, predicted, strict=True))
    rep = {
        "command": "python benchmarks/task_classifier.py" + (f" --n {args.n}" if args.n != 150 else ""),
        "tasks": clf.tasks,
        "fitted_on": args.n,
        "n_test": len(stream),
        "accuracy": right / len(stream),
        "confusion": confusion,
        "predictions": {i: p for (_, i, _), p in zip(stream, predicted, strict=True)},
        "artifact": str(Path(args.artifact).relative_to(ROOT)) if Path(args.artifact).is_relative_to(ROOT) else "",
    }
    write_report(Path(args.out), rep, markdown)
    print(f"wrote {args.artifact}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
