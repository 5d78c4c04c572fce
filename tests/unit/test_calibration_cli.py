"""`semcascade calibrate` / `envelope` on results written by the real harness (MockProvider), and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from semcascade import MockProvider, load_config
from semcascade.calibration import calibrate_run, split_records
from semcascade.cli import main
from semcascade.evaluation.harness import run_eval
from semcascade.evaluation.records import load_records, load_run
from semcascade.evaluation.replay import cascade_outcomes, summarize
from semcascade.evaluation.splits import split_of
from semcascade.providers import Completion, CompletionRequest

CFG = {
    "tiers": [
        {
            "name": "cheap",
            "model": "openai/cheap",
            "k": 4,
            "threshold": 0.9,
            "input_cost_per_token": 1e-7,
            "output_cost_per_token": 1e-7,
        },
        {
            "name": "strong",
            "model": "openai/strong",
            "k": 1,
            "temperature": 0.0,
            "input_cost_per_token": 1e-6,
            "output_cost_per_token": 1e-6,
        },
    ],
    "scorer": {"name": "lexical"},
}


def handler(req: CompletionRequest) -> Completion:
    question = str(req.messages[-1]["content"])
    if req.model == "openai/cheap":  # agrees on even-length questions, rambles otherwise
        texts = [question] * req.n if len(question) % 2 == 0 else [f"noise {i} {question[:3]}" for i in range(req.n)]
    else:
        texts = [question]
    return MockProvider.texts(req.model, texts, prompt_tokens=len(question.split()))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-tier run of the real harness over 40 NQ questions, written to disk with its config file."""
    import asyncio

    root = tmp_path_factory.mktemp("run")
    cfg = root / "cascade.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    out = root / "results"
    asyncio.run(
        run_eval(cfg, dataset="nq", n=40, seed=2, out_dir=out, signals=("lexical", "logprob", "random"),
                 cache_path=root / "c.sqlite", provider=MockProvider(handler), progress=False)
    )  # fmt: skip
    return out


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    o, e = capsys.readouterr()
    return code, o, e


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("semcascade: error: ") and "Traceback" not in err, err
    return lines[0]


def test_loader_reads_what_the_harness_wrote(results: Path) -> None:
    recs = load_records(results)
    raw = [json.loads(line) for line in (results / "examples.jsonl").read_text().splitlines()]
    assert [r.id for r in recs] == [r["id"] for r in raw]
    assert recs[0].tiers[0].scores["lexical"] == raw[0]["tiers"][0]["scores"]["lexical"]
    assert recs[0].tiers[1].sample_quality == raw[0]["tiers"][1]["sample_quality"]
    run_ = load_run(results)
    assert run_.tier_names == ["cheap", "strong"] and run_.shipped_signal == "lexical"
    # the mock returns no logprobs: that signal scored nothing and is not offered
    assert run_.signals == ["lexical", "random"]
    # what the file does not hold is unknown, not zero
    # the harness writes whole tier records: the greedy answer's own cost comes back as written
    assert recs[0].tiers[0].greedy_cost == raw[0]["tiers"][0]["greedy_cost"] > 0


def test_calibrate_writes_config_with_held_out_figures(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cal.yaml"
    code, stdout, err = run(["calibrate", str(results), "--budget", "0.8", "--out", str(out)], capsys)
    assert code == 0, err
    assert "calibration (n=" in stdout and "held-out test (n=" in stdout and f"wrote {out}" in stdout
    text = out.read_text()
    assert text.startswith("# Thresholds calibrated by semcascade from ")
    cfg = load_config(out)
    th = cfg.tiers[0].threshold
    assert cfg.scorer.name == "lexical" and cfg.tiers[0].k == 4
    # the printed held-out figures are the replay of those thresholds on the test-split ids
    recs = load_records(results)
    cal = [r for r in recs if split_of(r.id) == "calibration"]
    test = [r for r in recs if split_of(r.id) == "test"]
    c, t = summarize(cascade_outcomes(cal, "lexical", [th]), 2), summarize(cascade_outcomes(test, "lexical", [th]), 2)
    strong = sum(r.tiers[1].cost for r in cal)
    assert c.cost / strong <= 0.8 + 1e-9
    assert f"{c.quality:.4f}" in stdout and f"{t.quality:.4f}" in stdout
    assert f"(n={len(cal)})" in stdout and f"(n={len(test)})" in stdout
    # the thresholds the report chose are what the config carries
    rep = calibrate_run(results, budget=0.8)
    assert rep.choice.thresholds == (th,) and rep.held_out.n == len(test)


def test_quality_target_absolute_and_relative(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(["calibrate", str(results), "--quality", "100%", "--dry-run"], capsys)
    assert code == 0 and "lowest cost with quality >= 1 x strong alone" in stdout
    rep = calibrate_run(results, quality=1.0, quality_relative=True)
    assert rep.choice.quality >= rep.choice.final_quality - 1e-12
    absolute = calibrate_run(results, quality=rep.choice.final_quality)
    assert absolute.choice.thresholds == rep.choice.thresholds


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["{missing}", "--budget", "0.5"],
            "no such results file; pass a folder written by `semcascade eval --out DIR`",
        ),
        (["{results}"], "give exactly one target"),
        (["{results}", "--budget", "0.5", "--quality", "0.3"], "give exactly one target"),
        (["{results}", "--quality", "lots"], "is not a number; give e.g. 0.11"),
        (["{results}", "--budget", "0.5", "--signal", "vibes"], "choose --signal from lexical, random"),
        (["{results}", "--budget", "0.01"], "raise the budget to at least"),
        (["{results}", "--quality", "1.5"], "lower the quality target"),
        (["{results}", "--budget", "0.8", "--signal", "logprob"], "choose --signal from lexical, random"),
        (
            ["{results}", "--budget", "0.8", "--signal", "random"],
            "is a baseline, not a signal a cascade config can run",
        ),
        (["{results}", "--budget", "0.8", "--config", "{missing}"], "no such config file; pass the YAML the run"),
    ],
)
def test_errors_are_one_line(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    argv = ["calibrate"] + [a.format(results=results, missing=tmp_path / "nope") for a in args]
    argv += ["--out", str(tmp_path / "cal.yaml")]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert needle in one_line_error(err)
    assert not (tmp_path / "cal.yaml").exists()


def test_unfindable_config_asks_for_it(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    moved = tmp_path / "r"
    moved.mkdir()
    (moved / "examples.jsonl").write_text((results / "examples.jsonl").read_text())
    report = json.loads((results / "report.json").read_text())
    report["config"] = "gone/cascade.yaml"
    (moved / "report.json").write_text(json.dumps(report))
    code, _, err = run(["calibrate", str(moved), "--budget", "0.8", "--out", str(tmp_path / "c.yaml")], capsys)
    assert code == 2 and "pass it with --config PATH" in one_line_error(err)


def test_single_split_run_falls_back_to_seeded_halves(results: Path, tmp_path: Path) -> None:
    only = tmp_path / "only"
    only.mkdir()
    (only / "examples.jsonl").write_text((results / "examples.jsonl").read_text())
    (only / "report.json").write_text(json.dumps({"split": "test", "shipped_signal": "lexical"}))
    run_ = load_run(only)
    cal, test, how = split_records(run_, seed=3)
    assert "seeded 50/50" in how and "only the test split" in how
    assert len(cal) == len(test) == 20 and not {r.id for r in cal} & {r.id for r in test}
    assert [r.id for r in split_records(run_, seed=3)[0]] == [r.id for r in cal]  # reproducible
    assert [r.id for r in split_records(run_, seed=4)[0]] != [r.id for r in cal]


def test_malformed_results_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "examples.jsonl").write_text('{"id": "a", "tiers": [{"samples": ["x"]}]}\n')
    code, _, err = run(["calibrate", str(bad), "--budget", "1"], capsys)
    assert code == 2 and "re-run `semcascade eval`" in one_line_error(err)
    (bad / "examples.jsonl").write_text("not json\n")
    code, _, err = run(["envelope", str(bad)], capsys)
    assert code == 2 and "not an example record" in one_line_error(err)


def test_envelope_command_writes_plot(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "env.png"
    code, stdout, err = run(["envelope", str(results), "--out", str(png)], capsys)
    assert code == 0, err
    assert "pairwise envelope: 2 models, 1 pairs, signal lexical" in stdout and "switching points" in stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_says_when_the_final_tier_alone_is_better(tmp_path: Path) -> None:
    from semcascade.evaluation.records import EvalRun
    from semcascade.evaluation.replay import ExampleRecord, TierRecord

    def t(score: float | None, q: float, cost: float) -> TierRecord:
        k = 1 if score is None else 2
        r = TierRecord(
            samples=["x"] * k, mean_logprobs=[None] * k, cost=cost, latency_s=1.0, prompt_tokens=1, completion_tokens=1
        )
        r.scores["s"], r.consensus["s"], r.sample_quality = score, 0, [q] * k
        return r

    # the cheap tier is always wrong, however much its samples agree: matching the strong tier means escalating all
    recs = [ExampleRecord(f"e{i}", [t(0.1 * (i % 10), 0.0, 1.0), t(None, 1.0, 5.0)]) for i in range(30)]
    rep = calibrate_run(EvalRun(tmp_path, recs, {"shipped_signal": "s"}), quality=1.0, quality_relative=True)
    assert rep.choice.cost_ratio == pytest.approx(1.2) and rep.choice.quality == 1.0
    assert "tier1 alone (cost 1.000 x, quality 1.0000) beats this cascade" in rep.text()
    cheap_enough = calibrate_run(EvalRun(tmp_path, recs, {"shipped_signal": "s"}), budget=0.5)
    assert cheap_enough.notes == () and 0.0 < cheap_enough.choice.quality < 1.0  # under 1x: no advice


def test_calibration_run_chooses_on_one_run_and_holds_out_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from semcascade.calibration import calibrate_thresholds

    runs = {}
    for split in ("calibration", "test"):
        runs[split] = tmp_path / split
        asyncio.run(
            run_eval(CFG, dataset="nq", n=30, seed=2, split=split, out_dir=runs[split], signals=("lexical",),
                     cache_path=tmp_path / "c.sqlite", provider=MockProvider(handler), progress=False)
        )  # fmt: skip
    rep = calibrate_run(runs["test"], budget=0.8, calibration_run=runs["calibration"])
    cal, test = load_records(runs["calibration"]), load_records(runs["test"])
    assert rep.choice.n == len(cal) == 30 and rep.held_out.n == len(test) == 30
    assert rep.choice.thresholds == calibrate_thresholds(cal, "lexical", budget=0.8).thresholds
    held = summarize(cascade_outcomes(test, "lexical", list(rep.choice.thresholds)), 2)
    assert rep.held_out.quality == held.quality and "calibration run" in rep.split_note
    code, stdout, err = run(
        ["calibrate", str(runs["test"]), "--calibration-run", str(runs["calibration"]), "--budget", "0.8",
         "--dry-run"], capsys,
    )  # fmt: skip
    assert code == 0, err
    assert f"calibration run {runs['calibration']}" in stdout and "held-out test (n=30)" in stdout
    # the same run on both sides holds nothing out: a one-line error, not a flattering figure
    code, _, err = run(
        ["calibrate", str(runs["test"]), "--calibration-run", str(runs["test"]), "--budget", "0.8", "--dry-run"],
        capsys,
    )
    assert code == 2 and "nothing is held out" in one_line_error(err)


REPO = Path(__file__).resolve().parents[2]


def _committed(name: str, tmp_path: Path) -> Path:
    """A copy of a committed run (first 120 examples) whose report points at the embedded default config."""
    src = REPO / "eval" / "results" / name
    out = tmp_path / name
    out.mkdir()
    with (src / "examples.jsonl").open(encoding="utf-8") as f:
        rows = [next(f) for _ in range(120)]
    (out / "examples.jsonl").write_text("".join(rows), encoding="utf-8")
    (out / "report.json").write_text((src / "report.json").read_text(encoding="utf-8"), encoding="utf-8")
    return out


def test_task_blocks_accumulate_with_the_runs_prompt_and_signal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tasks.yaml"
    rc, qa = _committed("halueval_qa", tmp_path), _committed("nq", tmp_path)
    for run, task in ((rc, "rc"), (qa, "qa")):
        argv = ["calibrate", str(run), "--budget", "0.8", "--signal", "p_mean", "--task", task, "--out", str(out)]
        assert main(argv) == 0
    capsys.readouterr()
    cfg = load_config(out)
    assert {"rc", "qa"} <= set(cfg.tasks)  # beside the run config's own tasks
    for task, run in (("rc", rc), ("qa", qa)):
        t = cfg.task_config(task)
        rep = calibrate_run(run, budget=0.8, signal="p_mean")
        assert t.tiers[0].signal == "p_mean" and t.tiers[0].threshold == rep.choice.thresholds[0]
        assert t.tiers[0].max_tokens == 32 and t.answer_format == "short"
    assert "context" in (cfg.task_config("rc").system_prompt or "")
    assert "context" not in (cfg.task_config("qa").system_prompt or "")
    assert cfg.tiers[0].signal is None  # the base cascade is left as it was


def test_prices_change_what_a_budget_buys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _committed("halueval_qa", tmp_path)
    base = ["calibrate", str(run), "--budget", "0.6", "--signal", "p_mean", "--dry-run"]
    assert main(base) == 0
    recorded = capsys.readouterr().out
    assert main([*base, "--prices", "gpt-4o-mini/gpt-4o"]) == 0
    cheap = capsys.readouterr().out
    assert "prices: gpt-4o-mini/gpt-4o (litellm cost map" in cheap and "prices:" not in recorded

    def threshold(text: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith("thresholds:"))
        return float(line.split()[2])

    # a strong call costs ~17x a cheap one instead of ~3x: the same budget escalates more
    assert threshold(cheap) > threshold(recorded)
