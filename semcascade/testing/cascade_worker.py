"""One process running a :class:`~semcascade.Cascade` over prompts (tests of shared state across processes).

    python -m semcascade.testing.cascade_worker CONFIG.json PROMPTS.json OUT.jsonl [--concurrency N]

writes one JSON line per prompt as it finishes (``prompt``, ``text``, ``cost``, ``answer_cache_hit``,
or ``error`` and its type), flushed at once so a test can read what a killed worker finished.
:func:`start_workers` starts N of them (sharing whatever ``state:`` the config names, e.g. one Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["main", "read_results", "start_workers"]


async def _run(config: dict[str, Any], prompts: list[str], out: IO[str], concurrency: int) -> None:
    from semcascade.cascade import Cascade
    from semcascade.errors import SemcascadeError

    sem = asyncio.Semaphore(concurrency)
    async with Cascade(config) as cascade:

        async def one(prompt: str) -> None:
            async with sem:
                try:
                    r = await cascade.generate(prompt)
                    line: dict[str, Any] = {
                        "prompt": prompt, "text": r.text, "cost": r.cost, "answer_cache_hit": r.answer_cache_hit,
                        "tier": r.tier, "budget_exhausted": r.budget_exhausted,
                    }  # fmt: skip
                except SemcascadeError as exc:
                    line = {"prompt": prompt, "error": str(exc), "error_type": type(exc).__name__}
                out.write(json.dumps(line) + "\n")
                out.flush()

        await asyncio.gather(*(one(p) for p in prompts))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("config")
    ap.add_argument("prompts")
    ap.add_argument("out")
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    prompts = json.loads(Path(args.prompts).read_text())
    with open(args.out, "a", encoding="utf-8") as out:
        asyncio.run(_run(config, prompts, out, args.concurrency))
    return 0


def start_workers(
    n: int, config: dict[str, Any], prompts: Sequence[Sequence[str]], workdir: Path, *, concurrency: int = 8
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """Start ``n`` worker processes on ``config``, worker i on ``prompts[i]``: (process, its output file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "config.json"
    cfg.write_text(json.dumps(config))
    procs = []
    for i in range(n):
        p = workdir / f"prompts-{i}.json"
        p.write_text(json.dumps(list(prompts[i])))
        out = workdir / f"out-{i}.jsonl"
        cmd = [sys.executable, "-m", "semcascade.testing.cascade_worker", str(cfg), str(p), str(out)]
        cmd += ["--concurrency", str(concurrency)]
        with open(workdir / f"err-{i}.txt", "wb") as err:  # the child keeps its own copy of the descriptor
            procs.append((subprocess.Popen(cmd, env=dict(os.environ), stderr=err), out))
    return procs


def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    raise SystemExit(main())
