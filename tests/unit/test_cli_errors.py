"""Every subcommand rejects a bad argument with one line ``semcascade: error: ...`` and exit 2, never a traceback.

The subcommands are discovered from the argparse parser itself, so a new one is
covered by the generic cases (an unknown option, a missing required argument, a
value that is not a number, a value outside its choices, a missing --config
file) without touching this file; the table below adds each command's
semantic cases (unknown dataset, missing results folder, a number out of range).
Bad arguments must be rejected before anything heavy: the model server, the
llama-server build and model loading are replaced by tripwires.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from semcascade import cli

REPO = Path(__file__).resolve().parents[2]
Leaf = tuple[str, ...]


def leaves(parser: argparse.ArgumentParser, path: Leaf = ()) -> dict[Leaf, argparse.ArgumentParser]:
    """Every runnable subcommand (a parser without further subcommands), by its command path."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {path: parser}
    out: dict[Leaf, argparse.ArgumentParser] = {}
    for action in subs:
        for name, child in action.choices.items():
            out.update(leaves(child, (*path, name)))
    return out


LEAVES = leaves(cli.build_parser())


def _positionals(parser: argparse.ArgumentParser) -> list[str]:
    """Valid values for the required positionals, so that a case fails on the argument it tests.

    ``{results}`` stands for an eval results folder; any other positional gets a word.
    """
    out = []
    for a in parser._actions:
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction) and a.nargs not in ("*", "?"):
            out.append("{results}" if a.type is cli._results else "no-such-thing")
    return out


def _required_options(parser: argparse.ArgumentParser, skip: argparse.Action | None = None) -> list[str]:
    out = []
    for a in parser._actions:
        if a.option_strings and a.required and a is not skip:
            out += [a.option_strings[0], "out.json"]
    return out


#: commands that reject a missing target (calibrate: --budget or --quality) before reading --config
CHECKS_TARGET_BEFORE_CONFIG = {("calibrate",)}


def generic_cases(path: Leaf, parser: argparse.ArgumentParser) -> Iterator[tuple[str, list[str], str]]:
    """(case id, argv, expected text) derived from the subcommand's own argument definitions."""
    base = [*path, *_positionals(parser)]
    yield "unknown-option", [*base, *_required_options(parser), "--no-such-option"], "--no-such-option"
    if _positionals(parser) or _required_options(parser):
        yield "missing-required", list(path), "required"
    for a in parser._actions:
        if not a.option_strings or a.nargs == 0:
            continue
        opt = a.option_strings[-1] if a.option_strings[-1].startswith("--") else a.option_strings[0]
        rest = _required_options(parser, skip=a)
        if a.type in (int, float) or isinstance(a.type, cli.NumberArg):
            yield f"{opt}-not-a-number", [*base, *rest, opt, "many"], opt
        if a.choices is not None:
            yield f"{opt}-bad-choice", [*base, *rest, opt, "no-such-choice"], "no-such-choice"
        if opt == "--config":
            expected = "" if path in CHECKS_TARGET_BEFORE_CONFIG else "no-such-config.yaml"
            yield "--config-missing", [*base, *rest, opt, "no-such-config.yaml"], expected


@pytest.fixture
def tripwires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if a bad argument got as far as building, starting or loading anything."""
    import semcascade.local as local
    import semcascade.local.build as build
    import semcascade.local.models as models
    import semcascade.local.server as server
    from semcascade.cascade import Cascade

    def heavy(*_a: object, **_k: object) -> None:
        raise AssertionError("heavy work started before the bad argument was rejected")

    for mod in (local, build):
        monkeypatch.setattr(mod, "ensure_llama_server", heavy)
    for mod in (local, models):
        monkeypatch.setattr(mod, "ensure_model", heavy)
    monkeypatch.setattr(server.LocalServer, "start", heavy)
    monkeypatch.setattr(Cascade, "prepare", heavy)
    monkeypatch.setattr(Cascade, "generate", heavy)


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse exits itself
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def assert_one_line_error(argv: list[str], code: int, err: str, expected: str) -> None:
    shown = f"semcascade {' '.join(argv)}"
    assert "Traceback" not in err, f"{shown} printed a traceback:\n{err}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"{shown}: expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("semcascade: error: "), f"{shown}: {lines[0]!r}"
    assert expected.lower() in lines[0].lower(), f"{shown}: {expected!r} not in {lines[0]!r}"
    assert code == 2, f"{shown}: exit status {code}, expected 2"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A small eval results folder: the first rows of a committed run, with its report."""
    src = REPO / "eval" / "results" / "nq"
    out = tmp_path / "run"
    out.mkdir()
    with (src / "examples.jsonl").open(encoding="utf-8") as f:
        rows = [next(f) for _ in range(40)]
    (out / "examples.jsonl").write_text("".join(rows), encoding="utf-8")
    (out / "report.json").write_text((src / "report.json").read_text(encoding="utf-8"), encoding="utf-8")
    return out


GENERIC = [(path, cid, argv, exp) for path, p in LEAVES.items() for cid, argv, exp in generic_cases(path, p)]


@pytest.mark.parametrize(
    ("argv", "expected"), [g[2:] for g in GENERIC], ids=[f"{' '.join(g[0])}:{g[1]}" for g in GENERIC]
)
def test_generic_bad_arguments(
    argv: list[str], expected: str, results: Path, tripwires: None, capsys: pytest.CaptureFixture[str],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    argv = [a.format(results=results) for a in argv]
    code, err = run_main(argv, capsys)
    assert_one_line_error(argv, code, err, expected)


# Each command's semantic cases: argv ({results} = a valid results folder, {tmp} = an empty folder), expected text.
SEMANTIC: dict[Leaf, list[tuple[list[str], str]]] = {
    ("generate",): [
        (["   "], "the prompt is empty"),
        (["--config", "{tmp}", "hi"], "is not a file"),
        (["--config", "{bad_yaml}", "hi"], "tiers[0].k"),
        (["--task", "poetry", "hi"], "unknown task 'poetry'"),
    ],
    ("batch",): [
        (["{tmp}/missing.jsonl", "out.jsonl"], "no such input file"),
        (["{file}", "out.jsonl"], "a-file:1: not a JSON line"),
        (["{tmp}", "out.jsonl"], "cannot read it"),
        (["{file}", "out.jsonl", "--concurrency", "0"], "--concurrency"),
        (["{file}", "out.jsonl", "--engine", "spark"], "--engine"),
    ],
    ("demo",): [
        (["--config", "{bad_yaml}"], "tiers[0].k"),
        (["--question", " "], "--question"),
    ],
    ("eval",): [
        (["--dataset", "typo"], "unknown dataset 'typo'"),
        (["--task", "qa"], "--task"),
        (["--n", "0"], "--n"),
        (["--n", "-3"], "--n"),
        (["--concurrency", "0"], "--concurrency"),
        (["--signals", "vibes"], "vibes"),
        (["--signals", " , "], "--signals"),
        (["--config", "{bad_yaml}"], "tiers[0].k"),
        (["--out", "{file}"], "--out"),
    ],
    ("fit-confidence",): [
        (["{tmp}/missing", "--out", "m.json"], "missing"),
        (["{tmp}", "--out", "m.json"], "semcascade eval --out"),
        (["{results}", "--out", "m.json", "--features", "vibes"], "vibes"),
        (["{results}", "--out", "m.json", "--tier", "7"], "no tier 7"),
        (["{results}", "--out", "m.json", "--tier", "-1"], "--tier"),
        (["{results}", "--out", "m.json", "--l2", "-1"], "--l2"),
    ],
    ("calibrate",): [
        (["{tmp}/missing", "--budget", "0.5"], "missing"),
        (["{results}"], "give exactly one target"),
        (["{results}", "--budget", "-1"], "--budget"),
        (["{results}", "--quality", "lots"], "--quality"),
        (["{results}", "--budget", "0.5", "--signal", "vibes"], "vibes"),
        (["{results}", "--budget", "0.5", "--calibration-run", "{tmp}/missing"], "missing"),
        (["{results}", "--budget", "0.5", "--config", "{tmp}/no.yaml"], "no.yaml"),
        (["{results}", "--budget", "0.5", "--prices", "vibes"], "unknown price table 'vibes'"),
        (["{results}", "--budget", "0.5", "--prices", "{bad_yaml}"], "numeric input_cost_per_token"),
        (["{results}", "--budget", "0.5", "--task", "rc", "--out", "{file}"], "not a cascade config"),
        (["{results}", "--risk", "0"], "--risk"),
        (["{results}", "--risk", "1.5"], "--risk"),
        (["{results}", "--risk", "0.05", "--delta", "0"], "--delta"),
        (["{results}", "--risk", "0.05", "--delta", "1"], "--delta"),
        (["{results}", "--budget", "0.5", "--delta", "0.1"], "--delta applies to a risk target"),
        (["{results}", "--budget", "0.5", "--loss", "error"], "--loss applies to a risk target"),
        (["{results}", "--budget", "0.5", "--fwer", "bonferroni"], "--fwer applies to a risk target"),
        (["{results}", "--risk", "0.05", "--budget", "0.5"], "exactly one target"),
        (["{results}", "--risk", "0.05", "--method", "exact"], "--method"),
        (["{results}", "--risk", "0.05", "--signal", "vibes"], "vibes"),
    ],
    ("envelope",): [
        (["{tmp}/missing"], "missing"),
        (["{results}", "--signal", "vibes"], "vibes"),
    ],
    ("rescore",): [
        (["{tmp}/missing"], "missing"),
        (["{tmp}"], "semcascade eval --out"),
        (["{results}", "--add-signals", "vibes"], "unknown signal 'vibes'"),
        (["{results}", "--add-signals", "nli"], "needs model calls"),
    ],
    ("train-router",): [
        (["{tmp}/missing"], "missing"),
        (["{results}", "--validation-share", "1.5"], "--validation-share"),
        (["{results}", "--validation-share", "0"], "--validation-share"),
        (["{results}", "--signal", "vibes"], "vibes"),
    ],
    ("local", "prepare"): [
        (["gpt-5-nano"], "unknown local model 'gpt-5-nano'"),
    ],
    ("local", "start"): [
        (["--config", "{bad_yaml}"], "tiers[0].k"),
        (["--config", "{remote_yaml}"], "no local"),
    ],
    ("serve",): [
        (["--config", "{bad_yaml}"], "tiers[0].k"),
        (["--config", "{remote_yaml}", "--host", "0.0.0.0", "--no-auth"], "loopback"),
        (["--config", "{remote_yaml}", "--config", "{remote_yaml}"], "same model"),
        (["--port", "70000"], "--port"),
    ],
    # these take no values: the generic cases (unknown option) cover them
    ("local", "status"): [],
    ("local", "stop"): [],
}


def test_every_subcommand_has_semantic_cases() -> None:
    missing = sorted(" ".join(p) for p in LEAVES if p not in SEMANTIC)
    assert not missing, f"add the semantic bad-argument cases of: {', '.join(missing)} to SEMANTIC"
    for path, p in LEAVES.items():
        takes_values = any(a.nargs != 0 and a.dest != "help" for a in p._actions)
        assert SEMANTIC[path] or not takes_values, f"semcascade {' '.join(path)} takes values: add SEMANTIC cases"


SEMANTIC_CASES = [(path, argv, exp) for path, cases in SEMANTIC.items() for argv, exp in cases]


@pytest.mark.parametrize(
    ("path", "argv", "expected"), SEMANTIC_CASES, ids=[f"{' '.join(p)}:{' '.join(a)}" for p, a, _ in SEMANTIC_CASES]
)
def test_semantic_bad_arguments(
    path: Leaf, argv: list[str], expected: str, results: Path, tripwires: None, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("tiers:\n  - {name: a, model: openai/x, k: 0}\n", encoding="utf-8")
    remote_yaml = tmp_path / "remote.yaml"
    remote_yaml.write_text("tiers:\n  - {name: a, model: openai/gpt-4o-mini}\n", encoding="utf-8")
    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    values = {"results": results, "tmp": empty, "bad_yaml": bad_yaml, "remote_yaml": remote_yaml, "file": a_file}
    full = [*path, *(a.format(**values) for a in argv)]
    monkeypatch.chdir(tmp_path)
    code, err = run_main(full, capsys)
    assert_one_line_error(full, code, err, expected.format(**values))


@pytest.mark.parametrize(
    "argv",
    [["eval", "--dataset", "typo"], ["eval", "--task", "qa"], ["local", "prepare", "gpt-5-nano"], ["calibrate"]],
    ids=lambda a: " ".join(a),
)
def test_console_process_prints_one_line(argv: list[str], tmp_path: Path) -> None:
    """The real process (``python -m semcascade.cli``): one line, status 2, no traceback."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(
        [sys.executable, "-m", "semcascade.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert_one_line_error(argv, proc.returncode, proc.stderr, "")
