"""Ablation of the "make the cascade pay" levers on reading-comprehension QA (HaluEval, calibration split).

One pool of outputs per question is collected through the shared response
cache (reruns are free): the cheap model's greedy answer and k samples at two
temperatures, the strong model's greedy answer and samples. Every lever is then
replayed on the same pool:

- answer format: raw outputs vs the extracted answer span (``answer_format: short``);
- sampling: best-of-k consensus vs greedy, temperature, k, the greedy answer in the ensemble;
- deferral signals: agreement (lexical, embedding), token probability P(T), grounding, and
  their logistic combination (5-fold cross-validated AUROC on the pool);
- the cascade at matched escalation rates: quality, cost and latency relative to the strong tier;
- consensus mode: a weighted vote over both tiers' samples.

    python benchmarks/rc_ablation.py --n 300

writes ``benchmarks/results/rc_ablation.{json,md}``. Costs are FLOP-proportional
(parameters x tokens, as in configs/local.yaml); latencies are the recorded wall
times of the calls (one request in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from semcascade.aggregation import consensus, pair_indices, weighted_vote
from semcascade.answers import extract_answer
from semcascade.cascade import Cascade
from semcascade.confidence import TierEvidence, feature_vector, fit_logistic
from semcascade.config import EquivalenceConfig, load_config
from semcascade.evaluation.datasets import load_dataset
from semcascade.evaluation.metrics import auroc
from semcascade.evaluation.prompts import get_template
from semcascade.evaluation.quality import contains
from semcascade.local.paths import cache_dir
from semcascade.providers import CompletionRequest, LiteLLMProvider
from semcascade.response_cache import CachingProvider, ResponseCache
from semcascade.scoring._registry import create_scorer
from semcascade.scoring.base import PairJudgement

CHEAP, STRONG = "local/qwen2.5-coder-0.5b", "local/qwen2.5-coder-1.5b"
PARAMS = {CHEAP: 4.94e8, STRONG: 1.54e9}
RESULTS = Path(__file__).parent / "results"
#: (model, n, temperature) calls per question
PLAN = [(CHEAP, 1, 0.0), (CHEAP, 6, 0.7), (CHEAP, 6, 0.3), (STRONG, 1, 0.0), (STRONG, 3, 0.7)]
FEATURE_SETS = {
    "agreement (lexical)": ["agreement", "cluster_share"],
    "P(T): token probabilities": ["lp_mean", "lp_min", "lp_first"],
    "P(T) + grounding + form": ["lp_mean", "lp_min", "lp_first", "grounding", "yes_no", "answer_tokens"],
    "all (agreement + P(T) + grounding + form)": [
        "agreement", "cluster_share", "lp_mean", "lp_min", "lp_first", "grounding", "yes_no", "answer_tokens",
    ],
}  # fmt: skip


async def collect(n: int, seed: int, limit: int | None) -> list[dict[str, Any]]:
    exs = load_dataset("halueval_qa", n, seed, "calibration")[:limit]
    tpl = get_template("rc")
    cascade = Cascade(load_config(None))
    cascade.prepare(load_models=False)
    provider = CachingProvider(LiteLLMProvider(), ResponseCache(cache_dir() / "responses.sqlite"))
    rows = []
    try:
        for ex in tqdm(exs, desc="collecting the pool", unit="q"):
            msgs = tpl.render(ex)
            calls = {}
            for model, k, temp in PLAN:
                rm = cascade.resolve_model(model)
                req = CompletionRequest(
                    model=rm.litellm_model, messages=msgs, n=k, temperature=temp, max_tokens=tpl.max_tokens,
                    api_base=rm.api_base, api_key="local", stop=list(tpl.stop) or None, logprobs=True,
                )  # fmt: skip
                info = await provider.complete_with_info(req)
                c = info.completion
                calls[f"{model}|{k}|{temp}"] = {
                    "latency": info.latency_s,
                    "prompt_tokens": c.prompt_tokens,
                    "choices": [
                        {"text": ch.text.strip(), "tokens": ch.completion_tokens,
                         "lps": [t.logprob for t in (ch.logprobs or ())]}
                        for ch in c.choices
                    ],
                }  # fmt: skip
            rows.append({"id": ex.id, "refs": list(ex.references), "question": ex.input, "context": ex.context or "",
                         "prompt": "\n".join(m["content"] for m in msgs), "calls": calls})  # fmt: skip
    finally:
        cascade.close()
    return rows


def _choices(row: dict[str, Any], model: str, k: int, temp: float) -> list[dict[str, Any]]:
    return list(row["calls"][f"{model}|{k}|{temp}"]["choices"])


def _call(row: dict[str, Any], model: str, k: int, temp: float) -> dict[str, Any]:
    return dict(row["calls"][f"{model}|{k}|{temp}"])


def _cost(model: str, prompt: int, completion: int) -> float:
    return PARAMS[model] * (prompt + completion)


class Pool:
    """Agreement matrices over a tier's answers, computed once per (question, answers)."""

    def __init__(self) -> None:
        self.lex = create_scorer("lexical")
        self.emb = create_scorer("embedding")
        self.rule = EquivalenceConfig(rule="bidirectional", threshold=0.5)

    async def matrix(self, scorer: Any, question: str, answers: list[str]) -> np.ndarray:
        n = len(answers)
        js = await scorer.judge(question, [(answers[a], answers[b]) for a, b in pair_indices(n)])
        m = np.eye(n)
        for (a, b), j in zip(pair_indices(n), js, strict=True):
            m[a, b] = m[b, a] = (j.forward + j.backward) / 2
        return m


def _evidence(row: dict[str, Any], chs: list[dict[str, Any]], answers: list[str], m: np.ndarray | None,
              rep: int) -> TierEvidence:  # fmt: skip
    n = len(answers)
    agreement = float((m.sum() - n) / (n * (n - 1))) if m is not None and n > 1 else None
    largest = int((m[rep] >= 0.5).sum()) if m is not None else 1
    lps = [c["lps"] or [0.0] for c in chs]
    return TierEvidence(
        answers=answers, representative=rep, agreement=agreement, largest_cluster=largest,
        mean_logprobs=[float(np.mean(x)) for x in lps], min_logprobs=[min(x) for x in lps],
        first_logprobs=[x[0] for x in lps], tokens=[c["tokens"] for c in chs], question=row["question"],
        prompt=row["prompt"],
    )  # fmt: skip


def _cv_scores(x: np.ndarray, y: np.ndarray, names: list[str], seed: int = 0) -> np.ndarray:
    idx = np.random.default_rng(seed).permutation(len(y))
    p = np.zeros(len(y))
    for fold in np.array_split(idx, 5):
        train = np.setdiff1d(idx, fold)
        model = fit_logistic(x[train], y[train], names, name="cv", version="cv")
        p[fold] = [model.score(r) for r in x[fold]]
    return p


async def analyse(rows: list[dict[str, Any]]) -> dict[str, Any]:
    pool = Pool()
    out: dict[str, Any] = {"n": len(rows)}
    y_cheap, y_strong, cost_c, cost_s, lat_c, lat_c_k, lat_s = [], [], [], [], [], [], []
    acc: dict[str, list[float]] = {}
    sig: dict[str, list[float]] = {}
    feats: dict[str, list[list[float]]] = {k: [] for k in FEATURE_SETS}
    votes: dict[str, list[float]] = {}
    for row in tqdm(rows, desc="replaying levers", unit="q"):
        refs = row["refs"]
        g = _choices(row, CHEAP, 1, 0.0)[0]
        sg = _choices(row, STRONG, 1, 0.0)[0]
        ga, sa = extract_answer(g["text"], "short"), extract_answer(sg["text"], "short")
        yc, ys = contains(ga, refs), contains(sa, refs)
        y_cheap.append(yc)
        y_strong.append(ys)
        acc.setdefault("cheap greedy, raw output", []).append(contains(g["text"], refs))
        acc.setdefault("cheap greedy, answer span", []).append(yc)
        acc.setdefault("strong greedy, raw output", []).append(contains(sg["text"], refs))
        acc.setdefault("strong greedy, answer span", []).append(ys)
        gcall, scall = _call(row, CHEAP, 1, 0.0), _call(row, STRONG, 1, 0.0)
        cost_c.append(_cost(CHEAP, gcall["prompt_tokens"], g["tokens"]))
        cost_s.append(_cost(STRONG, scall["prompt_tokens"], sg["tokens"]))
        lat_c.append(gcall["latency"])
        lat_s.append(scall["latency"])
        kcall = _call(row, CHEAP, 6, 0.7)
        lat_c_k.append(max(gcall["latency"], kcall["latency"]))
        for temp in (0.7, 0.3):
            samples = _choices(row, CHEAP, 6, temp)
            for k in (3, 5):
                for with_greedy in (False, True):
                    chs = ([g, *samples[: k - 1]]) if with_greedy else samples[:k]
                    answers = [extract_answer(c["text"], "short") for c in chs]
                    raw = [c["text"] for c in chs]
                    m = await pool.matrix(pool.lex, row["question"], answers)
                    js = [PairJudgement(m[a, b], m[a, b]) for a, b in pair_indices(k)]
                    cons = consensus(k, js, pool.rule, prefer=0 if with_greedy else None)
                    tag = f"k={k}, T={temp}{', greedy in' if with_greedy else ''}"
                    acc.setdefault(f"cheap best-of-{tag}", []).append(contains(answers[cons.representative], refs))
                    if temp == 0.7 and with_greedy:
                        acc.setdefault(f"cheap best-of-{tag}, raw outputs", []).append(
                            contains(raw[cons.representative], refs)
                        )
                    sig.setdefault(f"lexical agreement ({tag})", []).append(float(cons.score or 0.0))
                    if k == 5 and temp == 0.7:
                        me = await pool.matrix(pool.emb, row["question"], answers)
                        sig.setdefault(f"embedding agreement ({tag})", []).append(float((me.sum() - k) / (k * (k - 1))))
                    if k == 3 and temp == 0.7 and with_greedy:
                        ev = _evidence(row, chs, answers, m, 0)
                        for name, names in FEATURE_SETS.items():
                            feats[name].append(feature_vector(ev, names))
        ev1 = _evidence(row, [g], [ga], None, 0)
        one = feature_vector(ev1, ["lp_mean", "lp_min", "lp_first", "grounding"])
        for name, f in zip(("p_mean", "p_min", "p_first", "grounding"), one, strict=True):
            sig.setdefault(f"{name} (greedy answer)", []).append(math.exp(f) if name.startswith("p_") else f)
        # consensus mode: both tiers ran; vote over cheap greedy + samples and strong greedy + samples
        cheap_all = [g, *_choices(row, CHEAP, 6, 0.7)]
        strong_all = [sg, *_choices(row, STRONG, 3, 0.7)]
        for kc, ks, ws in ((1, 1, 1.0), (3, 1, 3.0), (3, 3, 1.0), (5, 3, 2.0)):
            answers = [extract_answer(c["text"], "short") for c in cheap_all[:kc] + strong_all[:ks]]
            m = await pool.matrix(pool.lex, row["question"], answers)
            n = len(answers)
            js = [PairJudgement(m[a, b], m[a, b]) for a, b in pair_indices(n)]
            best, _ = weighted_vote(n, js, pool.rule, [1.0] * kc + [ws] * ks)
            votes.setdefault(f"vote: cheap {kc} + strong {ks} (weight {ws:g})", []).append(
                contains(answers[best], refs)
            )
    yc_a, ys_a = np.array(y_cheap, dtype=bool), np.array(y_strong, dtype=bool)
    cc, cs, lc, lck, ls = map(np.array, (cost_c, cost_s, lat_c, lat_c_k, lat_s))
    out["accuracy"] = {k: float(np.mean(v)) for k, v in acc.items()}
    out["oracle"] = float(np.maximum(yc_a, ys_a).mean())
    out["signal_auroc"] = {k: auroc(v, yc_a.tolist()) for k, v in sig.items()}
    cv: dict[str, Any] = {}
    for name, xs in feats.items():
        p = _cv_scores(np.array(xs), yc_a, FEATURE_SETS[name])
        k = "k=3" if "agreement" in FEATURE_SETS[name] else "k=1"
        lat_cheap = lck if k == "k=3" else lc
        curve = []
        order = np.argsort(p)
        for d in (0.0, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0):
            esc = np.zeros(len(p), dtype=bool)
            esc[order[: round(d * len(p))]] = True
            curve.append({
                "escalated": d, "quality": float(np.where(esc, ys_a, yc_a).mean()),
                "cost_vs_strong": float((cc.sum() + cs[esc].sum()) / cs.sum()),
                "latency_vs_strong": float((lat_cheap.mean() + ls[esc].sum() / len(p)) / ls.mean()),
            })  # fmt: skip
        cv[name] = {"cheap_tier": k, "cv_auroc": auroc(p.tolist(), yc_a.tolist()), "curve": curve}
    out["combined"] = cv
    out["consensus_mode"] = {k: float(np.mean(v)) for k, v in votes.items()}
    out["consensus_mode_cost_vs_strong"] = float((cc.sum() + cs.sum()) / cs.sum())
    out["strong_quality"] = float(ys_a.mean())
    out["cheap_latency_vs_strong"] = {"k=1": float(lc.mean() / ls.mean()), "k=3": float(lck.mean() / ls.mean())}
    return out


def markdown(res: dict[str, Any], command: str) -> str:
    lines = [
        f"# Lever ablation on HaluEval QA (calibration split, n={res['n']})",
        "",
        f"Command: `{command}`. Cheap tier Qwen2.5-Coder-0.5B, strong tier Qwen2.5-Coder-1.5B; cost is "
        "FLOP-proportional and relative to the strong tier alone; latency is recorded wall time.",
        "",
        f"Strong tier alone: **{res['strong_quality']:.3f}**; oracle deferral: {res['oracle']:.3f}.",
        "",
        "## Answer format and sampling (accuracy)",
        "",
        "| system | accuracy |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.3f} |" for k, v in res["accuracy"].items()]
    lines += ["", "## Deferral signals alone (AUROC for the cheap greedy answer being right)", ""]
    lines += ["| signal | AUROC |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in res["signal_auroc"].items() if v is not None]
    lines += ["", "## Signals combined (logistic regression, 5-fold cross-validated on the pool)", ""]
    lines += ["| features | cheap tier | CV AUROC | escalated | quality | cost / strong | latency / strong |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for name, v in res["combined"].items():
        for pt in v["curve"]:
            if pt["escalated"] in (0.1, 0.15, 0.2, 0.3):
                lines.append(
                    f"| {name} | {v['cheap_tier']} | {v['cv_auroc']:.3f} | {pt['escalated']:.2f} | "
                    f"{pt['quality']:.3f} | {pt['cost_vs_strong']:.2f} | {pt['latency_vs_strong']:.2f} |"
                )
    lines += ["", f"## Consensus mode (every question runs both tiers: cost {res['consensus_mode_cost_vs_strong']:.2f}"
              " of the strong tier alone, plus the strong samples)", ""]  # fmt: skip
    lines += ["| vote | accuracy |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in res["consensus_mode"].items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="only the first LIMIT questions of the --n draw")
    args = ap.parse_args()
    rows = asyncio.run(collect(args.n, args.seed, args.limit))
    res = asyncio.run(analyse(rows))
    RESULTS.mkdir(exist_ok=True)
    command = "python benchmarks/rc_ablation.py " + " ".join(sys.argv[1:])
    (RESULTS / "rc_ablation.json").write_text(json.dumps({"command": command, **res}, indent=1))
    (RESULTS / "rc_ablation.md").write_text(markdown(res, command))
    print(markdown(res, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
