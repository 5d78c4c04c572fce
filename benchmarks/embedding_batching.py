"""Embedding agreement at 64 concurrent requests x k=5: batched encodes vs one encode per request (issue 12).

    nice -n 10 python benchmarks/embedding_batching.py [--concurrency 64] [--k 5] [--rounds 2]

The real scorer (int8 ONNX all-MiniLM-L6-v2, loaded offline) judges the
k(k-1)/2 pairs of k answers for each of ``--concurrency`` requests at once,
``--rounds`` times, alternating batched (defaults: ``batch_window_ms=2``,
``max_batch=256``) and unbatched (``batch_window_ms: null``: each request
encodes on its own in a worker thread, the old behaviour). Every request's
answers are distinct from every other request's, so cross-request deduplication
does not flatter batching. Reports requests/s (median round), encoder calls,
and the largest difference in any pair's similarity between the two modes.

Writes ``benchmarks/results/embedding_batching.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"

CITIES = ("Paris", "Lyon", "Marseille", "Toulouse", "Nice", "Nantes", "Lille", "Bordeaux")
TEMPLATES = (
    "The answer is {c}, founded in {y}.",
    "{c} ({y})",
    "I believe it is {c}; records from {y} say so.",
    "It was {c} in the year {y}",
    "Probably {c}, around {y}.",
)


def workload(requests: int, k: int, round_: int) -> list[list[tuple[str, str]]]:
    """Per request: the pairs of its k answers (distinct across requests and rounds)."""
    out = []
    for r in range(requests):
        year = 1000 + round_ * requests + r
        answers = [TEMPLATES[j % len(TEMPLATES)].format(c=CITIES[(r + j) % len(CITIES)], y=year) for j in range(k)]
        out.append([(answers[i], answers[j]) for i in range(k) for j in range(i + 1, k)])
    return out


async def one_round(scorer: Any, reqs: Sequence[list[tuple[str, str]]]) -> tuple[float, list[list[float]]]:
    t0 = time.perf_counter()
    got = await asyncio.gather(*(scorer.judge("Which city?", pairs) for pairs in reqs))
    return time.perf_counter() - t0, [[j.forward for j in g] for g in got]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "embedding_batching")
    args = ap.parse_args(argv)
    from benchmarks._report import write_report
    from semcascade.scoring.embedding import EmbeddingScorer

    modes = {"unbatched": EmbeddingScorer(batch_window_ms=None), "batched": EmbeddingScorer()}
    encoder = modes["batched"]._encoder
    calls = {"n": 0, "texts": 0}
    original = encoder.encode

    def counting(texts: Sequence[str], batch_size: int) -> Any:
        calls["n"] += 1
        calls["texts"] += len(texts)
        return original(texts, batch_size)

    encoder.encode = counting  # type: ignore[method-assign]
    asyncio.run(one_round(modes["batched"], workload(8, args.k, 10_000)))  # warm the session
    res: dict[str, dict[str, Any]] = {m: {"round_s": [], "encoder_calls": 0, "texts": 0} for m in modes}
    scores: dict[str, list[list[list[float]]]] = {m: [] for m in modes}
    for rnd in range(args.rounds):
        reqs = workload(args.concurrency, args.k, rnd)
        for mode in ("unbatched", "batched") if rnd % 2 == 0 else ("batched", "unbatched"):
            calls.update(n=0, texts=0)
            elapsed, got = asyncio.run(one_round(modes[mode], reqs))
            res[mode]["round_s"].append(elapsed)
            res[mode]["encoder_calls"] += calls["n"]
            res[mode]["texts"] += calls["texts"]
            scores[mode].append(got)
            print(f"  round {rnd} {mode}: {elapsed:.2f}s, {calls['n']} encoder calls", file=sys.stderr, flush=True)
    for r in res.values():
        r["median_round_s"] = statistics.median(r["round_s"])
        r["requests_per_s"] = args.concurrency / r["median_round_s"]
        r["encoder_calls_per_round"] = r["encoder_calls"] / args.rounds
    diffs = [
        abs(a - b)
        for ra, rb in zip(scores["batched"], scores["unbatched"], strict=True)
        for xa, xb in zip(ra, rb, strict=True)
        for a, b in zip(xa, xb, strict=True)
    ]
    rep = {
        "command": "python benchmarks/embedding_batching.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "concurrency": args.concurrency,
        "k": args.k,
        "rounds": args.rounds,
        "batched_options": {
            "batch_window_ms": modes["batched"].batch_window_ms,
            "max_batch": modes["batched"].max_batch,
        },
        "modes": res,
        "speedup": res["batched"]["requests_per_s"] / res["unbatched"]["requests_per_s"],
        "max_abs_similarity_diff": max(diffs),
        "mean_abs_similarity_diff": statistics.fmean(diffs),
    }
    write_report(args.out, rep, markdown)
    return 0


def markdown(rep: dict[str, Any]) -> str:
    u, b = rep["modes"]["unbatched"], rep["modes"]["batched"]
    opts = rep["batched_options"]
    return "\n".join(
        [
            f"# Embedding agreement, {rep['concurrency']} concurrent requests x k={rep['k']}: batched vs unbatched",
            "",
            f"`{rep['command']}` on {rep['machine']} ({rep['cpus']} CPUs, Python {rep['python']}); int8 ONNX "
            f"MiniLM; {rep['rounds']} rounds per mode, alternating; median round. Batched: "
            f"`batch_window_ms={opts['batch_window_ms']}`, `max_batch={opts['max_batch']}`.",
            "",
            "| mode | requests/s | median round s | encoder calls / round | ratio |",
            "|---|---|---|---|---|",
            f"| unbatched (one encode per request) | {u['requests_per_s']:.1f} | {u['median_round_s']:.2f} | "
            f"{u['encoder_calls_per_round']:.1f} | 1.00x |",
            f"| batched | {b['requests_per_s']:.1f} | {b['median_round_s']:.2f} | "
            f"{b['encoder_calls_per_round']:.1f} | {rep['speedup']:.2f}x |",
            "",
            f"Largest difference in a pair's similarity between the modes: {rep['max_abs_similarity_diff']:.2e} "
            f"(mean {rep['mean_abs_similarity_diff']:.2e}).",
            "",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
