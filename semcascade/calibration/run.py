"""Calibrate a run's thresholds on its calibration split, check them on the held-out split, and
write the run's config with the chosen thresholds.

    rep = calibrate_run("eval/results/nq", budget=0.5)
    print(rep.text())
    write_calibrated_config(rep, "configs/calibrated.yaml")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from semcascade.calibration.solver import ThresholdChoice, calibrate_thresholds
from semcascade.config import DEFAULT_CONFIG_PATH, load_config
from semcascade.errors import CalibrationError, ConfigError
from semcascade.evaluation.records import EvalRun, load_run
from semcascade.evaluation.replay import ExampleRecord, cascade_outcomes, summarize, tier_alone
from semcascade.evaluation.splits import split_of

__all__ = ["CalibrationReport", "HeldOut", "calibrate_run", "split_records", "write_calibrated_config"]

#: deferral signal -> the config scorers that compute it in a live cascade
SIGNAL_SCORERS: dict[str, tuple[str, ...]] = {
    "embedding": ("embedding",),
    "lexical": ("lexical",),
    "nli": ("llm_judge", "cross_encoder"),
}


def split_records(run: EvalRun, *, seed: int = 0) -> tuple[list[ExampleRecord], list[ExampleRecord], str]:
    """(calibration, test, how): by :func:`split_of` when the run holds both splits, else a seeded 50/50."""
    cal = [r for r in run.records if split_of(r.id) == "calibration"]
    test = [r for r in run.records if split_of(r.id) == "test"]
    if run.split == "all" and cal and test:
        return cal, test, "calibration/test split by example id (semcascade.evaluation.splits)"
    ids = sorted(r.id for r in run.records)
    if len(ids) < 2:
        raise CalibrationError("one example cannot be split into calibration and test; evaluate more (--n)")
    perm = np.random.default_rng(seed).permutation(len(ids))
    cal_ids = {ids[i] for i in perm[: len(ids) // 2]}
    why = f"the run holds only the {run.split} split" if run.split != "all" else "one split is empty"
    return (
        [r for r in run.records if r.id in cal_ids],
        [r for r in run.records if r.id not in cal_ids],
        f"seeded 50/50 split of example ids (seed {seed}): {why}",
    )


def _paired_records(
    run: EvalRun, calibration: str | os.PathLike[str] | EvalRun, signal: str
) -> tuple[list[ExampleRecord], list[ExampleRecord], str]:
    """(calibration, held-out): all of ``calibration``'s records, and ``run``'s records it does not hold."""
    cal_run = calibration if isinstance(calibration, EvalRun) else load_run(calibration)
    if cal_run.n_tiers != run.n_tiers:
        raise CalibrationError(
            f"the calibration run {cal_run.path} has {cal_run.n_tiers} tiers, {run.path} has {run.n_tiers}; "
            "pass two runs of the same config"
        )
    if signal not in cal_run.signals:
        raise CalibrationError(
            f"no scores for signal {signal!r} in the calibration run {cal_run.path}; "
            f"choose --signal from {', '.join(sorted(set(cal_run.signals) & set(run.signals))) or '(none)'}"
        )
    ids = {r.id for r in cal_run.records}
    test = [r for r in run.records if r.id not in ids]
    if not test:
        raise CalibrationError(
            f"every example of {run.path} is also in the calibration run {cal_run.path}: nothing is held out; "
            "pass a run of other examples (e.g. `semcascade eval --split test`)"
        )
    overlap = len(run.records) - len(test)
    note = f"calibration run {cal_run.path} ({len(cal_run.records)} examples), held out: {run.path}"
    if overlap:
        note += f" without the {overlap} examples the calibration run also holds"
    return list(cal_run.records), test, note


@dataclass(frozen=True)
class HeldOut:
    quality: float
    cost_ratio: float
    deferral: tuple[float, ...]
    final_quality: float
    n: int


@dataclass
class CalibrationReport:
    run: EvalRun
    choice: ThresholdChoice
    held_out: HeldOut
    target: str
    split_note: str
    tier_names: list[str]
    #: plain-language remarks, e.g. when the final tier alone beats the cascade at this target
    notes: tuple[str, ...] = ()

    def text(self) -> str:
        c, h = self.choice, self.held_out
        ds = self.run.report.get("dataset", self.run.path.name)
        lam = f", shadow price {c.shadow_price:.4g}" if c.shadow_price is not None else ""
        ths = ", ".join(
            f"{self.tier_names[i]} {t:g}" + (" (no score: always escalates)" if i in c.unscored else "")
            for i, t in enumerate(c.thresholds)
        )
        final = self.tier_names[-1]

        def d(x: Sequence[float]) -> str:
            return ", ".join(f"{v:.3f}" for v in x) or "-"

        rows = [
            ("quality", f"{c.quality:.4f}", f"{h.quality:.4f}"),
            (f"cost / {final} alone", f"{c.cost_ratio:.3f}", f"{h.cost_ratio:.3f}"),
            ("deferral", d(c.deferral), d(h.deferral)),
            (f"{final} alone: quality", f"{c.final_quality:.4f}", f"{h.final_quality:.4f}"),
        ]
        w = max(len(r[0]) for r in rows) + 2
        lines = [
            f"{ds}: {self.run.path} ({len(self.tier_names)} tiers), signal {c.signal}, {c.method} search{lam}",
            f"target: {self.target}",
            f"splits: {self.split_note}",
            f"thresholds: {ths}",
            "",
            f"{'':<{w}}{'calibration (n=' + str(c.n) + ')':<24}held-out test (n={h.n})",
            *(f"{a:<{w}}{b:<24}{e}" for a, b, e in rows),
            *(f"note: {x}" for x in self.notes),
        ]
        return "\n".join(lines)


def calibration_split(
    results: str | os.PathLike[str] | EvalRun,
    signal: str | None,
    *,
    seed: int = 0,
    calibration_run: str | os.PathLike[str] | EvalRun | None = None,
) -> tuple[EvalRun, str, list[ExampleRecord], list[ExampleRecord], str]:
    """(run, signal, calibration, held-out, how split): ``signal`` defaults to the run's shipped one."""
    run = results if isinstance(results, EvalRun) else load_run(results)
    sig = signal or run.shipped_signal or (run.signals[0] if run.signals else None)
    if sig is None or sig not in run.signals:
        raise CalibrationError(
            f"no scores for signal {sig!r} in {run.path}; choose --signal from {', '.join(run.signals) or '(none)'}"
        )
    if calibration_run is None:
        cal, test, note = split_records(run, seed=seed)
    else:
        cal, test, note = _paired_records(run, calibration_run, sig)
    return run, sig, cal, test, note


def calibrate_run(
    results: str | os.PathLike[str] | EvalRun,
    *,
    budget: float | None = None,
    quality: float | None = None,
    quality_relative: bool = False,
    signal: str | None = None,
    method: str = "auto",
    seed: int = 0,
    calibration_run: str | os.PathLike[str] | EvalRun | None = None,
) -> CalibrationReport:
    """Choose thresholds on the run's calibration split and measure them on its held-out split.

    With ``calibration_run`` (e.g. ``semcascade eval --split calibration``), choose them on that run and
    measure them on every example of ``results`` it does not hold (e.g. the ``--split test`` run).
    """
    run, sig, cal, test, note = calibration_split(results, signal, seed=seed, calibration_run=calibration_run)
    choice = calibrate_thresholds(
        cal, sig, budget=budget, quality=quality, quality_relative=quality_relative, method=method
    )
    k = run.n_tiers
    sm = summarize(cascade_outcomes(test, sig, list(choice.thresholds)), k)
    fin = summarize(tier_alone(test, k - 1, mode="consensus", signal=sig), k)
    held = HeldOut(sm.quality, sm.cost / fin.cost if fin.cost else float("nan"), tuple(sm.deferral), fin.quality, sm.n)
    final = run.tier_names[-1]
    if budget is not None:
        target = f"highest quality with cost <= {budget:g} x {final} alone (calibration split)"
    elif quality_relative:
        target = f"lowest cost with quality >= {quality:g} x {final} alone (calibration split)"
    else:
        target = f"lowest cost with quality >= {quality:g} (calibration split)"
    return CalibrationReport(run, choice, held, target, note, run.tier_names, _notes(choice, budget, quality, final))


def _notes(c: ThresholdChoice, budget: float | None, quality: float | None, final: str) -> tuple[str, ...]:
    """Say so when deploying the final tier alone would beat the calibrated cascade on the calibration split."""
    within_budget = budget is not None and budget >= 1.0 and c.final_quality > c.quality
    meets_target = quality is not None and c.cost_ratio > 1.0 and c.final_quality >= c.quality
    if within_budget or meets_target:
        return (
            f"{final} alone (cost 1.000 x, quality {c.final_quality:.4f}) beats this cascade on the calibration "
            "split: every cascade pays the first tier before it escalates",
        )
    return ()


def run_config_path(run: EvalRun, override: str | os.PathLike[str] | None = None) -> Path:
    """The config the run used: ``override``, else ``report.json``'s ``config`` found as given, next to the
    results (walking up from the results folder) or, for the embedded default, inside the package."""
    if override is not None:
        p = Path(override)
        if not p.is_file():
            raise CalibrationError(f"{p}: no such config file; pass the YAML the run was evaluated with to --config")
        return p
    label = run.report.get("config")
    if isinstance(label, str) and label:
        p = Path(label)
        tries = [p] if p.is_absolute() else [*(a / p for a in run.path.resolve().parents), p]
        for t in tries:
            if t.is_file():
                return t
        if p.as_posix() == "configs/local.yaml":  # the harness's label for the embedded default
            return DEFAULT_CONFIG_PATH
    raise CalibrationError(
        f"cannot find the config of {run.path} (report.json says {label!r}); pass it with --config PATH"
    )


def _tiers_decide_on(raw: dict[str, Any], signal: str) -> bool:
    """Whether every non-final tier of ``raw`` decides on ``signal`` itself (its ``signal:``, or
    ``confidence`` through its ``confidence_model``), so the calibrated thresholds apply live as replayed."""
    tiers = [t for t in raw.get("tiers") or [] if isinstance(t, dict)][:-1]

    def own(t: dict[str, Any]) -> str | None:
        sig = t.get("signal")
        return str(sig) if sig else ("confidence" if t.get("confidence_model") else None)

    return bool(tiers) and all(own(t) == signal for t in tiers)


def _signal_scorer(raw: dict[str, Any], signal: str, src: Path) -> tuple[dict[str, Any], str | None]:
    """The config's scorer section for ``signal`` and a note when it had to change."""
    scorer = dict(raw.get("scorer") or {"name": "embedding"})
    name = str(scorer.get("name", "embedding"))
    if _tiers_decide_on(raw, signal):  # e.g. a confidence model: the tiers' own signal, whatever the scorer
        return scorer, None
    allowed = SIGNAL_SCORERS.get(signal)
    if allowed is None:
        raise CalibrationError(
            f"signal {signal!r} has no agreement scorer a cascade config can run; "
            f"calibrate one of {', '.join(SIGNAL_SCORERS)} with --signal (or pass --dry-run to see its numbers only)"
        )
    if name in allowed:
        return scorer, None
    if len(allowed) == 1:
        return {"name": allowed[0]}, f"scorer switched from {name} to {allowed[0]} to match the signal"
    raise CalibrationError(
        f"{src} scores agreement with {name}, not {signal}; set scorer.name to one of {', '.join(allowed)} "
        "and pass that config with --config"
    )


def _signal_section(raw: dict[str, Any], signal: str, src: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The scorer section ``signal`` needs (None: the signal needs no agreement scorer) and a note."""
    from semcascade.scoring.signals import get_signal

    if signal in SIGNAL_SCORERS:
        return _signal_scorer(raw, signal, src)
    try:
        kind = get_signal(signal).kind
    except ConfigError:
        kind = "baseline"
    if kind == "baseline":
        raise CalibrationError(
            f"signal {signal!r} is a baseline, not a signal a cascade config can run; calibrate another "
            "--signal (or pass --dry-run to see its numbers only)"
        )
    return None, None


def _task_settings(task: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config-level, per-tier) generation settings of the run's task prompt, as the harness evaluated it."""
    from semcascade.evaluation.prompts import get_template

    if task is None:
        return {}, {}
    try:
        tpl = get_template(task)
    except ValueError:
        return {}, {}
    tier: dict[str, Any] = {"max_tokens": tpl.max_tokens}
    if tpl.stop:
        tier["stop"] = list(tpl.stop)
    return {"system_prompt": tpl.system, "answer_format": tpl.answer_format}, tier


def write_calibrated_config(
    report: CalibrationReport,
    out: str | os.PathLike[str],
    *,
    config: str | os.PathLike[str] | None = None,
    command: str | None = None,
    task: str | None = None,
    certificate: dict[str, Any] | None = None,
) -> Path:
    """Write the run's config with the calibrated thresholds (and a header saying where they came from).

    ``task``: write the calibrated cascade as ``tasks.TASK`` instead (its tiers, decision signal and the
    prompt settings the run was evaluated with) into ``out`` when it already is a config, else into a copy
    of the run's config; the rest of ``out`` is kept. ``certificate``: the risk certificate of the
    thresholds (``semcascade calibrate --risk``), written with them (into the task's block with ``task``).
    """
    src = run_config_path(report.run, config)
    raw = yaml.safe_load(src.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not isinstance(raw.get("tiers"), list):
        raise CalibrationError(f"{src}: not a cascade config with tiers; pass the run's config with --config")
    c = report.choice
    if len(raw["tiers"]) != report.run.n_tiers:
        raise CalibrationError(
            f"{src} has {len(raw['tiers'])} tiers but the results have {report.run.n_tiers}; "
            "pass the config the run used with --config"
        )
    if report.run.names_known:
        names = [t.get("name") for t in raw["tiers"] if isinstance(t, dict)]
        if any(n is not None and n != m for n, m in zip(names, report.tier_names, strict=False)):
            raise CalibrationError(
                f"{src} names its tiers {names}, the results {report.tier_names}; pass the run's config with --config"
            )
    scorer, scorer_note = _signal_section(raw, c.signal, src)
    if scorer is not None:
        raw["scorer"] = scorer
    run_task = report.run.report.get("task")
    for i, t in enumerate(c.thresholds):
        if i not in c.unscored:
            raw["tiers"][i]["threshold"] = t
            raw["tiers"][i]["signal"] = c.signal
    raw.pop("certificate", None)  # a certificate belongs to the thresholds it was computed for
    if certificate is not None:
        raw["certificate"] = certificate
    path = Path(out)
    if task is not None:
        top, per_tier = _task_settings(run_task if isinstance(run_task, str) else None)
        block: dict[str, Any] = {**top, "tiers": [{**t, **per_tier} for t in raw["tiers"]]}
        if scorer is not None:
            block["scorer"] = scorer
        if certificate is not None:
            block["certificate"] = certificate
        base = raw
        if path.is_file():
            try:
                existing = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                raise CalibrationError(f"{path}: not valid YAML ({exc}); fix it or write elsewhere") from None
            if not isinstance(existing, dict) or "tiers" not in existing:
                raise CalibrationError(f"{path}: not a cascade config; write the task into a config file")
            base = existing
        else:
            base = yaml.safe_load(src.read_text(encoding="utf-8"))
        tasks = dict(base.get("tasks") or {})
        tasks[task] = block
        base["tasks"] = tasks
        raw = base
    try:
        load_config(raw)
    except ConfigError as exc:
        raise CalibrationError(f"the calibrated config does not validate ({exc}); fix {src} and re-run") from None
    h = report.held_out
    expected = (
        f"Expected: quality {c.quality:.4f}, cost {c.cost_ratio:.3f} x final tier alone on calibration (n={c.n}); "
        f"held-out test (n={h.n}): quality {h.quality:.4f}, cost {h.cost_ratio:.3f} x."
    )
    if certificate is not None:
        expected = (
            f"Certified: {certificate['loss']} <= {certificate['eps']:g} with probability >= "
            f"{1 - certificate['delta']:g} (see certificate:); cost {c.cost_ratio:.3f} x final tier alone on "
            f"calibration (n={c.n}), {h.cost_ratio:.3f} x on the held-out test (n={h.n})."
        )
    header = [
        f"Thresholds calibrated by semcascade from {report.run.path / 'examples.jsonl'}",
        f"(dataset {report.run.report.get('dataset', '?')}, n={c.n + h.n}; config {src}).",
        *([f"Command: {command}"] if command else []),
        f"Signal {c.signal}; {report.target}; {c.method} search"
        + (f" (shadow price {c.shadow_price:.4g})" if c.shadow_price is not None else "")
        + ".",
        f"Splits: {report.split_note}.",
        expected,
        *([scorer_note + "."] if scorer_note else []),
    ]
    if task is not None:
        header[0] = f"Task {task!r}: " + header[0]
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
