"""Does the hallucination judge work? Its accuracy on HaluEval's right-vs-hallucinated pairs.

The judge is :class:`semcascade.evaluation.hallucination.FactualityJudge` on the
local strong model (``local/qwen2.5-coder-1.5b`` through the managed
llama-server, started if it is not running), with the document prompt. For n
HaluEval summarisation pairs (CNN/DailyMail article, right summary,
hallucinated summary; seeded draw from the ``--split``) each summary sentence
is judged against its ``--top-m`` most similar article sentences; a summary
is hallucinated if one sentence has P(supported) < ``--threshold``. The same
is done for ``--qa-n`` HaluEval QA pairs (knowledge passage as the premise,
``The answer to "Q" is: A`` as the claim; 0 skips them).

Every judge call goes through the shared SQLite response cache, so a rerun is free.

    .venv/bin/python benchmarks/hallucination_judge.py --n 50 --qa-n 50 --split test

writes ``benchmarks/results/hallucination_judge.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from semcascade._retry import RetryingProvider
from semcascade.cascade import Cascade
from semcascade.config import load_config
from semcascade.evaluation.datasets import load_dataset
from semcascade.evaluation.hallucination import (
    DOCUMENT_PROMPT_TEMPLATE,
    FactualityJudge,
    HaluEvalCheck,
    judge_accuracy_on_halueval,
)
from semcascade.local.paths import cache_dir
from semcascade.providers import LiteLLMProvider
from semcascade.response_cache import CachingProvider, ResponseCache

JUDGE = "local/qwen2.5-coder-1.5b"
RESULTS = Path(__file__).parent / "results"


def _check_json(check: HaluEvalCheck, seconds: float) -> dict[str, Any]:
    right = [v.score for v in check.right]
    fake = [v.score for v in check.hallucinated]
    return {
        **asdict(check.accuracy),
        "calls": check.calls,
        "seconds": round(seconds, 1),
        "mean_score_right": statistics.fmean(right),
        "mean_score_hallucinated": statistics.fmean(fake),
        "pairs": [
            {
                "id": i,
                "right_score": r.score,
                "right_hallucinated": r.hallucinated,
                "hallucinated_score": h.score,
                "hallucinated_flagged": h.hallucinated,
                "right_sentences": len(r.claims),
                "hallucinated_sentences": len(h.claims),
            }
            for i, r, h in zip(check.ids, check.right, check.hallucinated, strict=True)
        ],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cascade = Cascade(load_config(None))
    await asyncio.to_thread(cascade.prepare, load_models=False)
    provider = CachingProvider(RetryingProvider(LiteLLMProvider()), ResponseCache(cache_dir() / "responses.sqlite"))
    try:
        resolved = cascade.resolve_model(JUDGE)
        judge = FactualityJudge.from_model(
            resolved.litellm_model,
            api_base=resolved.api_base,
            api_key="local",
            provider=provider,
            max_concurrency=args.concurrency,
            top_m=args.top_m,
            threshold=args.threshold,
        )
        out: dict[str, Any] = {
            "command": " ".join(["python", "benchmarks/hallucination_judge.py", *sys.argv[1:]]),
            "judge_model": JUDGE,
            "prompt_template": DOCUMENT_PROMPT_TEMPLATE,
            "top_m": args.top_m,
            "threshold": args.threshold,
            "seed": args.seed,
            "split": args.split,
            "concurrency": args.concurrency,
            "machine": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}",
        }
        for name, dataset, n in (("summarization", "cnn_dailymail", args.n), ("qa", "halueval_qa", args.qa_n)):
            if n <= 0:
                continue
            examples = load_dataset(dataset, n, args.seed, args.split)
            started = time.perf_counter()
            with tqdm(total=2 * len(examples), desc=f"judging {dataset}", unit="output") as bar:
                check = await judge_accuracy_on_halueval(judge, examples, bar.update)
            out[name] = _check_json(check, time.perf_counter() - started)
        out["cache"] = asdict(provider.stats)
        out["unparsed_replies"] = judge.nli.unparsed
        return out
    finally:
        await asyncio.to_thread(cascade.close)  # a server this run did not start keeps running


def _markdown(out: dict[str, Any]) -> str:
    lines = [
        "# Hallucination judge on HaluEval right-vs-hallucinated pairs",
        "",
        f"Judge: `{out['judge_model']}` (local llama-server), one direction (source => claim), "
        f"prompt `{out['prompt_template']!r}`; top-{out['top_m']} source sentences by token F1 per summary "
        f"sentence; an output is hallucinated if a claim has P(supported) < {out['threshold']}. "
        f"Split `{out['split']}`, seed {out['seed']}, {out['concurrency']} judge calls in flight.",
        "",
        f"    {out['command']}",
        "",
        "| task | pairs | accuracy (2n outputs) | TPR (hallucinated flagged) | FPR (right flagged) "
        "| pairwise accuracy | mean score right / hallucinated | judge calls | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task in ("summarization", "qa"):
        r = out.get(task)
        if r is None:
            continue
        lines.append(
            f"| {task} | {r['n_pairs']} | {r['accuracy']:.3f} | {r['true_positive_rate']:.3f} | "
            f"{r['false_positive_rate']:.3f} | {r['pairwise_accuracy']:.3f} | "
            f"{r['mean_score_right']:.3f} / {r['mean_score_hallucinated']:.3f} | {r['calls']} | {r['seconds']} |"
        )
    c = out["cache"]
    lines += [
        "",
        "Score = the lowest P(supported) over an output's sentences (summaries) or of the answer claim (QA). "
        "Pairwise accuracy = share of pairs whose hallucinated output scores strictly lower (ties count 1/2); "
        "0.5 is chance. Seconds are wall time including cached calls (cached calls are near-free): "
        f"this run made {c['paid_calls']} paid calls and served {c['hits']} from the response cache; "
        f"{out['unparsed_replies']} judge replies had no yes/no/maybe token. Machine: {out['machine']} "
        "(shared with other jobs).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="HaluEval summarisation pairs (default 50)")
    parser.add_argument("--qa-n", type=int, default=50, help="HaluEval QA pairs (default 50; 0 skips)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="test", choices=["all", "calibration", "test"])
    parser.add_argument("--top-m", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=4, help="judge calls in flight (default 4)")
    args = parser.parse_args()
    out = asyncio.run(run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hallucination_judge.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "hallucination_judge.md").write_text(_markdown(out), encoding="utf-8")
    print(_markdown(out))


if __name__ == "__main__":
    main()
