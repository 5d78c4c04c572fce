"""The ``semcascade`` command line.

Errors a user can cause print one line (``semcascade: error: ...``) and exit
with status 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from semcascade.errors import ConfigError, LocalServerError, SemcascadeError

if TYPE_CHECKING:
    from semcascade.evaluation.records import EvalRun

__all__ = ["build_parser", "main"]

Command = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line naming the command, the problem and where help is.

    It raises :class:`SemcascadeError` instead of printing the usage block and
    exiting, so :func:`main` reports it like every other user error.
    """

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("semcascade").strip()
        where = f"{command}: " if command else ""
        hint = f"semcascade {command} --help" if command else "semcascade --help"
        raise SemcascadeError(f"{where}{' '.join(message.split())}; see `{hint}`")


def _usage(args: argparse.Namespace, message: str) -> NoReturn:
    """Reject an argument after parsing (checks argparse cannot make), like a parse error."""
    parser: argparse.ArgumentParser = args.parser
    parser.error(message)


class NumberArg:
    """An argparse ``type``: an int or a finite float within bounds (``open`` bounds exclude the bound)."""

    def __init__(
        self,
        kind: type[int] | type[float],
        low: float | None = None,
        high: float | None = None,
        *,
        open_low: bool = False,
        open_high: bool = False,
    ) -> None:
        self.kind, self.low, self.high, self.open_low, self.open_high = kind, low, high, open_low, open_high
        self.__name__ = kind.__name__

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            lo, hi = "(" if self.open_low else "[", ")" if self.open_high else "]"
            return f"{what} in {lo}{self.low:g}, {self.high:g}{hi}"
        if self.low is not None:
            return f"{what} {'>' if self.open_low else '>='} {self.low:g}"
        if self.high is not None:
            return f"{what} {'<' if self.open_high else '<='} {self.high:g}"
        return what

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}")
        too_low = self.low is not None and (value <= self.low if self.open_low else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.open_high else value > self.high)
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text}")
        return value


def _text(what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{what} is empty; pass some text")
        return text

    check.__name__ = "text"
    return check


def _dataset(name: str) -> str:
    from semcascade.evaluation.datasets import available_datasets

    if name not in available_datasets():
        raise argparse.ArgumentTypeError(f"unknown dataset {name!r}; choose from {', '.join(available_datasets())}")
    return name


def _results(path: str) -> str:
    """An eval results folder (or its examples.jsonl) that exists."""
    from semcascade.evaluation.records import examples_file

    examples_file(path, error=argparse.ArgumentTypeError)
    return path


def _names(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing; give comma-separated names")
    return names


def _consensus_signals(results: str) -> list[str]:
    """The signals an eval log recorded a consensus sample for (none when every tier drew one sample)."""
    from semcascade.evaluation.records import examples_file

    found: set[str] = set()
    with examples_file(results).open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # the router reports a damaged log with its line number
            tiers = rec.get("tiers") if isinstance(rec, dict) else None
            for tier in tiers if isinstance(tiers, list) else []:
                consensus = tier.get("consensus") if isinstance(tier, dict) else None
                if isinstance(consensus, dict):
                    found.update(str(k) for k in consensus)
    return sorted(found)


def _check_signal(args: argparse.Namespace, runs: Sequence[EvalRun], signal: str) -> None:
    for run in runs:
        if signal not in run.signals:
            choose = ", ".join(sorted(run.signals)) or "(none)"
            _usage(args, f"no scores for signal {signal!r} in {run.path}; choose --signal from {choose}")


def _cmd_generate(args: argparse.Namespace) -> int:
    from semcascade.cascade import Cascade

    with Cascade(args.config) as cascade:
        if args.task is not None and args.task != "auto":
            cascade.config.task_config(args.task)  # an unknown task: one line, before anything is paid
        result = cascade.generate_sync(args.prompt, task=args.task)
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    print(result.text)
    if not args.quiet:
        print("--- trace", file=sys.stderr)
        print(result.summary(), file=sys.stderr)
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from semcascade.batch.run import run_batch

    if args.concurrency < 1:
        _usage(args, f"--concurrency must be >= 1, got {args.concurrency}")
    summary = run_batch(
        args.input, args.output, config=args.config, engine=args.engine, concurrency=args.concurrency,
        ray_address=args.ray_address, progress=not args.quiet,
    )  # fmt: skip
    s = summary
    print(
        f"{s.written} written ({s.failed} failed, {s.answer_cache_hits} answer-cache hits), {s.skipped} already in "
        f"{args.output}; cost {s.cost:.6g}; {s.wall_s:.1f}s"
        + (f" ({s.written / s.wall_s:.2f} req/s)" if s.wall_s > 0 else ""),
        file=sys.stderr,
    )
    return 0


def _cmd_local_status(args: argparse.Namespace) -> int:
    from semcascade.local import server_status

    status = server_status()
    if args.json:
        print(json.dumps(_jsonable(status), indent=2))
    else:
        print(status.describe() if hasattr(status, "describe") else status)
    return 0


def _cmd_local_prepare(args: argparse.Namespace) -> int:
    from semcascade.local import LOCAL_MODELS, ensure_llama_server, ensure_model

    unknown = [name for name in args.models if name not in LOCAL_MODELS]
    if unknown:  # before the (long) llama-server build
        known = ", ".join(sorted(LOCAL_MODELS))
        raise LocalServerError(f"unknown local model {unknown[0]!r}; use one of: {known} (or none: all of them)")
    binary = ensure_llama_server(progress=True)
    print(f"llama-server: {binary}")
    for name in args.models or sorted(LOCAL_MODELS):
        path = ensure_model(name, progress=True)
        print(f"{name}: {path}")
    return 0


def _cmd_local_start(args: argparse.Namespace) -> int:
    from semcascade.cascade import Cascade
    from semcascade.local import LocalServer

    cascade = Cascade(args.config)
    models = cascade.local_models()
    if not models:
        raise ConfigError(
            "has no local models (local/NAME), so there is no local server to start; "
            "pass a config with a local/NAME tier, e.g. the default (omit --config)",
            source=args.config,
        )
    server = LocalServer(cascade.config.local_server, models)
    server.start()
    server.detach()  # outlives this process; later commands reuse it
    print(f"llama-server {'already running' if server.reused else 'started'} at {server.base_url}")
    return 0


def _cmd_local_stop(args: argparse.Namespace) -> int:
    from semcascade.local import stop_running_server

    stopped = stop_running_server()
    print("stopped the running llama-server" if stopped else "no semcascade llama-server is running")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from semcascade.evaluation.harness import run_eval_sync

    out = args.out or f"eval/results/{args.dataset}"
    if Path(out).exists() and not Path(out).is_dir():
        _usage(args, f"--out {out} is a file; pass a folder for the reports (it is created if missing)")
    command = "semcascade " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("semcascade") else None
    report = run_eval_sync(
        args.config,
        dataset=args.dataset,
        n=args.n,
        seed=args.seed,
        split=args.split,
        out_dir=out,
        signals=args.signals or _all_signals(),
        cache_path=args.cache,
        concurrency=args.concurrency,
        command=command,
        hallucination_judge=not args.no_hallucination_judge,
    )
    print(report.markdown())
    print(f"wrote {out}/report.md, summary.csv, examples.jsonl, report.json and plots", file=sys.stderr)
    return 0


def _cmd_fit_confidence(args: argparse.Namespace) -> int:
    from semcascade.evaluation.fit_confidence import DEFAULT_FEATURES, fit_confidence

    features = args.features or DEFAULT_FEATURES
    rep = fit_confidence(args.results, tier=args.tier, features=features, name=args.name, l2=args.l2, split=args.split)
    path = rep.model.save(args.out)
    auc = ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in rep.feature_auroc.items())
    print(f"fitted {rep.model.name} v{rep.model.version} on {rep.n} examples (share right {rep.positive_rate:.3f})")
    print(f"AUROC: in-sample {rep.auroc_fit or float('nan'):.3f}, 5-fold CV {rep.auroc_cv or float('nan'):.3f}")
    print(f"each feature alone: {auc}")
    print(f"wrote {path}; use it with `confidence_model: {path}` on tier {args.tier} of a config")
    return 0


def _all_signals() -> tuple[str, ...]:
    from semcascade.evaluation.harness import ALL_SIGNALS

    return ALL_SIGNALS


def _cmd_demo(args: argparse.Namespace) -> int:
    from semcascade.demo import run_demo

    return run_demo(config=args.config, questions=args.question or None)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from semcascade.calibration import calibrate_run, write_calibrated_config
    from semcascade.errors import CalibrationError

    if args.risk is not None:
        return _calibrate_risk(args)
    for flag, value in (("--delta", args.delta), ("--loss", args.loss), ("--fwer", args.fwer)):
        if value is not None:
            raise CalibrationError(f"{flag} applies to a risk target; add --risk EPS (e.g. --risk 0.05 {flag} ...)")
    if (args.budget is None) == (args.quality is None):
        raise CalibrationError(
            "give exactly one target: --budget X (cost vs the final tier alone), --quality Y or --risk EPS"
        )
    quality, relative = None, False
    if args.quality is not None:
        text = args.quality.strip()
        relative = text.endswith("%")
        try:
            quality = float(text.rstrip("%")) / (100.0 if relative else 1.0)
        except ValueError:
            raise CalibrationError(
                f"--quality {args.quality!r} is not a number; give e.g. 0.11 (absolute) or 95% (of final tier alone)"
            ) from None
    results, cal_run = _priced_runs(args)
    rep = calibrate_run(
        results, budget=args.budget, quality=quality, quality_relative=relative, signal=args.signal,
        method=args.method, seed=args.seed, calibration_run=cal_run,
    )  # fmt: skip
    print(rep.text())
    if not args.dry_run:
        command = "semcascade " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("semcascade") else None
        path = write_calibrated_config(rep, args.out, config=args.config, command=command, task=args.task)
        print(f"\nwrote {path}")
    return 0


def _priced_runs(args: argparse.Namespace) -> tuple[Any, Any]:
    """``calibrate``'s results and calibration run, re-priced first with ``--prices``."""
    results, cal_run = args.results, args.calibration_run
    if args.prices is None:
        return results, cal_run
    from semcascade.evaluation.prices import load_price_table, reprice_run
    from semcascade.evaluation.records import load_run

    results = load_run(results)
    table = load_price_table(args.prices, results.n_tiers)
    results = reprice_run(results, table, config=args.config)
    if cal_run is not None:
        cal_run = reprice_run(load_run(cal_run), table, config=args.config)
    print(f"prices: {table.name} ({table.source}; cheap/strong price ratio {table.ratio:.3f})")
    return results, cal_run


def _calibrate_risk(args: argparse.Namespace) -> int:
    from semcascade.calibration.risk import calibrate_risk_run, write_certified_config
    from semcascade.errors import CalibrationError

    if args.budget is not None or args.quality is not None:
        raise CalibrationError("give exactly one target: --risk EPS replaces --budget and --quality")
    if args.method != "auto":
        raise CalibrationError("--method chooses the budget/quality search; a --risk target tests a fixed path")
    results, cal_run = _priced_runs(args)
    rep = calibrate_risk_run(
        results, eps=args.risk, delta=0.1 if args.delta is None else args.delta,
        loss=args.loss or "quality_drop", signal=args.signal,
        correction="bonferroni" if args.fwer == "bonferroni" else "fixed_sequence", seed=args.seed,
        calibration_run=cal_run,
    )  # fmt: skip
    print(rep.text())
    if not args.dry_run:
        command = "semcascade " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("semcascade") else None
        path = write_certified_config(rep, args.out, config=args.config, command=command, task=args.task)
        print(f"\nwrote {path}")
    return 0


def _cmd_envelope(args: argparse.Namespace) -> int:
    from semcascade.calibration import model_pool, pairwise_envelope, plot_envelope
    from semcascade.evaluation.records import load_run

    runs = [load_run(p) for p in args.results]
    signal = args.signal or runs[0].shipped_signal or "embedding"
    _check_signal(args, runs, signal)
    env = pairwise_envelope(model_pool(runs), signal)
    print(env.text())
    title = " + ".join(str(r.report.get("dataset", r.path.name)) for r in runs[:1]) + f" (n={env.n})"
    metric = str(runs[0].report.get("quality_metric", "quality"))
    print(f"\nwrote {plot_envelope(env, args.out, title=f'{title}: pairwise envelope', quality_label=metric)}")
    return 0


def _cmd_rescore(args: argparse.Namespace) -> int:
    from semcascade.evaluation.rescore import rescore_run

    for path in args.results:
        extra = f" --add-signals {','.join(args.add_signals)}" if args.add_signals else ""
        res = rescore_run(
            path,
            write=not args.dry_run,
            command=f"semcascade rescore {path}{extra}",
            add_signals=args.add_signals,
        )
        moved = ", ".join(f"{s} {n}" for s, n in res.changed.items() if n) or "none"
        verb = "would rewrite" if args.dry_run else "rewrote"
        print(f"{verb} {res.path} ({res.n} examples; signals {', '.join(res.signals)}; first-tier changes: {moved})")
    return 0


def _cmd_train_router(args: argparse.Namespace) -> int:
    from semcascade.routing import train_pik

    if args.label == "consensus":
        known = _consensus_signals(args.results)
        if known and args.signal not in known:  # the router would silently label by the first sample
            _usage(
                args,
                f"no consensus for signal {args.signal!r} in {args.results}; choose --signal from {', '.join(known)}",
            )
    model = train_pik(
        args.results, seed=args.seed, validation_share=args.validation_share, label=args.label, signal=args.signal
    )
    path = model.save(args.out)
    t = model.training
    print(f"trained on {t['n_train']} examples, validation {t['n_validation']}, test {t['n_test']} (seed {args.seed})")
    for tier in model.tiers:
        m = tier.metrics
        auc = {s: "n/a" if m.get(f"{s}_auroc") is None else f"{m[f'{s}_auroc']:.3f}" for s in ("validation", "test")}
        val = f"{m['validation_positive']}/{m['validation_n']}"
        test = f"{m['test_positive']}/{m['test_n']}"
        print(f"{tier.name}: AUROC validation {auc['validation']} ({val} right), test {auc['test']} ({test} right)")
    print(f"wrote {path}")
    return 0


def _jsonable(obj: Any) -> Any:
    import dataclasses
    from pathlib import Path

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from semcascade.serve.runner import serve
    except ImportError as exc:  # the 'serve' extra is not installed
        raise SemcascadeError(
            f"semcascade serve needs the 'serve' extra: pip install 'semcascade[serve]' ({exc})"
        ) from None
    return serve(args.config or [None], host=args.host, port=args.port, no_auth=args.no_auth)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="semcascade",
        description="Semantic-agreement LLM cascades: cheap models first, escalate only on disagreement.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", default=None, help="cascade YAML (default: the embedded configs/local.yaml)")

    g = sub.add_parser("generate", help="answer one prompt through the cascade")
    g.add_argument("prompt", type=_text("the prompt"), help="the question or instruction")
    config_arg(g)
    g.add_argument("--json", action="store_true", help="print the full result with its trace as JSON")
    g.add_argument("--quiet", "-q", action="store_true", help="print only the answer")
    g.add_argument("--task", default=None, help="run one of the config's tasks (default: its default_task)")
    g.set_defaults(func=_cmd_generate)

    b = sub.add_parser("batch", help="run a JSONL file of requests through the cascade (resumable; local or Ray)")
    b.add_argument("input", help="JSONL: one {prompt | messages, task?, id?} a line")
    b.add_argument("output", help="JSONL results; ids already in it are skipped (resume)")
    config_arg(b)
    b.add_argument("--engine", choices=["local", "ray"], default="local", help="asyncio here, or Ray actors")
    b.add_argument("--concurrency", type=int, default=16, help="requests in flight (in all)")
    b.add_argument("--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a new one)")
    b.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    b.set_defaults(func=_cmd_batch)

    d = sub.add_parser("demo", help="run the cascade on sample questions next to the strong tier alone")
    config_arg(d)
    d.add_argument(
        "--question",
        action="append",
        type=_text("the question"),
        help="a question to ask (repeatable; default: built-in set)",
    )
    d.set_defaults(func=_cmd_demo)

    ev = sub.add_parser("eval", help="measure quality, cost, latency and deferral against every baseline")
    config_arg(ev)
    ev.add_argument(
        "--dataset",
        type=_dataset,
        default="nq",
        help="nq, trivia, halueval_qa, cnn_dailymail, translation, gsm_symbolic",
    )
    ev.add_argument("--n", type=NumberArg(int, 1), default=100, help="number of examples (seeded subset)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument(
        "--split",
        default="all",
        choices=["all", "calibration", "test"],
        help="evaluate only the calibration (30%%) or test (70%%) split of the dataset",
    )
    ev.add_argument("--out", default=None, help="output folder (default: eval/results/DATASET)")
    ev.add_argument("--signals", type=_names, default=None, help="comma-separated deferral signals (default: all)")
    ev.add_argument("--cache", default=None, help="response cache file (default: ~/.cache/semcascade/responses.sqlite)")
    ev.add_argument(
        "--concurrency", type=NumberArg(int, 1), default=1, help="examples in flight (1 keeps latencies clean)"
    )
    ev.add_argument(
        "--no-hallucination-judge",
        action="store_true",
        help="summarisation: skip the NLI judge's hallucination rate (about 3 judge calls per summary)",
    )
    ev.set_defaults(func=_cmd_eval)

    fc = sub.add_parser(
        "fit-confidence", help="fit a tier's deferral confidence model from an eval run (use the calibration split)"
    )
    fc.add_argument("results", type=_results, help="directory written by `semcascade eval --out DIR`")
    fc.add_argument("--out", required=True, help="where to write the model artifact (JSON)")
    fc.add_argument(
        "--tier", type=NumberArg(int, 0), default=0, help="index of the tier whose correctness is predicted"
    )
    fc.add_argument("--features", type=_names, default=None, help="comma-separated feature names (default: all)")
    fc.add_argument("--name", default=None, help="model name recorded in the artifact")
    fc.add_argument("--l2", type=NumberArg(float, 0), default=1.0, help="L2 penalty on the standardised weights")
    fc.add_argument(
        "--split",
        choices=["all", "calibration", "test"],
        default="all",
        help="fit on these ids only (calibration: keep a run's test ids held out)",
    )
    fc.set_defaults(func=_cmd_fit_confidence)

    ca = sub.add_parser("calibrate", help="choose thresholds from eval results for a cost budget or quality target")
    ca.add_argument("results", type=_results, help="a folder written by `semcascade eval` (holds examples.jsonl)")
    ca.add_argument(
        "--budget",
        type=NumberArg(float, 0, open_low=True),
        default=None,
        help="max cost as a multiple of the final tier alone",
    )
    ca.add_argument("--quality", default=None, help="min quality: absolute (0.11) or %% of the final tier alone (95%%)")
    ca.add_argument(
        "--risk",
        type=NumberArg(float, 0, 1, open_low=True, open_high=True),
        default=None,
        help="certify the cheapest thresholds whose --loss on new traffic is <= EPS (Learn-then-Test)",
    )
    ca.add_argument(
        "--delta",
        type=NumberArg(float, 0, 1, open_low=True, open_high=True),
        default=None,
        help="with --risk: the bound may fail with probability <= DELTA over the calibration draw (default 0.1)",
    )
    ca.add_argument(
        "--loss",
        choices=["quality_drop", "error", "hallucination"],
        default=None,
        help="with --risk: the per-request loss (default quality_drop: below the final tier alone)",
    )
    ca.add_argument(
        "--fwer",
        choices=["fixed-sequence", "bonferroni"],
        default=None,
        help="with --risk: family-wise correction over the candidates (default fixed-sequence)",
    )
    ca.add_argument("--signal", default=None, help="deferral signal to calibrate (default: the run's shipped one)")
    ca.add_argument("--method", default="auto", choices=["auto", "exact", "shadow-price"])
    ca.add_argument("--config", "-c", default=None, help="the config the run used (default: from report.json)")
    ca.add_argument("--out", default="configs/calibrated.yaml", help="where to write the calibrated config")
    ca.add_argument("--dry-run", action="store_true", help="print the choice, write nothing")
    ca.add_argument(
        "--prices",
        default=None,
        help="re-price the recorded tokens first: a preset (gpt-4o-mini/gpt-4o, claude-haiku/claude-sonnet, "
        "gpt-4.1-nano/gpt-4.1-mini/gpt-4.1) or a YAML price file",
    )
    ca.add_argument(
        "--task",
        default=None,
        help="write the calibrated cascade as tasks.TASK of --out (kept if it exists) instead of the whole config",
    )
    ca.add_argument("--seed", type=int, default=0, help="seed of the 50/50 fallback split")
    ca.add_argument(
        "--calibration-run",
        type=_results,
        default=None,
        help="choose on this run (e.g. an `eval --split calibration` folder); RESULTS is then the held-out run",
    )
    ca.set_defaults(func=_cmd_calibrate)

    en = sub.add_parser("envelope", help="pairwise envelope of a model pool: every two-tier cascade, switching points")
    en.add_argument(
        "results", nargs="+", type=_results, help="eval result folders over the same examples (each tier is a model)"
    )
    en.add_argument("--signal", default=None, help="deferral signal (default: the first run's shipped one)")
    en.add_argument("--out", default="envelope.png", help="PNG plot of the pair curves and the envelope")
    en.set_defaults(func=_cmd_envelope)

    rs = sub.add_parser(
        "rescore", help="recompute a recorded run's offline signals and report with the current code (no model call)"
    )
    rs.add_argument("results", nargs="+", type=_results, help="folders written by `semcascade eval`")
    rs.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    rs.add_argument(
        "--add-signals",
        type=_names,
        default=(),
        help="comma-separated offline signals to score too (e.g. confidence)",
    )
    rs.set_defaults(func=_cmd_rescore)

    tr = sub.add_parser("train-router", help="train the black-box P(IK) router from eval results")
    tr.add_argument("results", type=_results, help="a folder written by `semcascade eval` (holds examples.jsonl)")
    tr.add_argument("--out", default="models/router.json", help="where to write the router artifact (JSON)")
    tr.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    tr.add_argument(
        "--validation-share",
        type=NumberArg(float, 0, 1, open_low=True, open_high=True),
        default=0.25,
        help="share of the non-test examples held out",
    )
    tr.add_argument("--label", default="consensus", choices=["consensus", "greedy"], help="which answer is judged")
    tr.add_argument("--signal", default="embedding", help="whose consensus answer counts (with --label consensus)")
    tr.set_defaults(func=_cmd_train_router)

    sv = sub.add_parser("serve", help="serve the cascade as an OpenAI-compatible API (chat completions, SSE, metrics)")
    sv.add_argument(
        "--config",
        "-c",
        action="append",
        default=None,
        help="cascade YAML (repeatable: one served model each; default: the embedded configs/local.yaml)",
    )
    sv.add_argument("--host", default=None, help="interface to listen on (default: serve.host, 127.0.0.1)")
    sv.add_argument("--port", type=NumberArg(int, 0, 65535), default=None, help="TCP port (default: serve.port, 8000)")
    sv.add_argument("--no-auth", action="store_true", help="no API keys (allowed only on a loopback host)")
    sv.set_defaults(func=_cmd_serve)

    local = sub.add_parser("local", help="the embedded local models and llama-server")
    lsub = local.add_subparsers(dest="local_command", required=True)
    st = lsub.add_parser("status", help="show what is built, assembled and running")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_cmd_local_status)
    pr = lsub.add_parser("prepare", help="build llama-server and assemble the models (one-time, with progress)")
    pr.add_argument("models", nargs="*", help="model names (default: all)")
    pr.set_defaults(func=_cmd_local_prepare)
    sa = lsub.add_parser("start", help="start a long-lived server that later commands reuse")
    config_arg(sa)
    sa.set_defaults(func=_cmd_local_start)
    so = lsub.add_parser("stop", help="stop the long-lived server")
    so.set_defaults(func=_cmd_local_stop)
    for leaf in _leaves(parser):
        leaf.set_defaults(parser=leaf)  # for _usage
    return parser


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers of the runnable subcommands (those without subcommands of their own)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    return [leaf for action in subs for child in action.choices.values() for leaf in _leaves(child)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the subcommand that was given them, with its --help
            owner: argparse.ArgumentParser = getattr(args, "parser", parser)
            owner.error(f"unrecognized arguments: {' '.join(extra)}")
        func: Command = args.func
        return func(args)
    except SemcascadeError as exc:
        print(f"semcascade: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        # a path the user gave (--out, --cache, ...) cannot be read or written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"semcascade: error: {where}{exc.strerror or exc}; check the path and its permissions", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("semcascade: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
