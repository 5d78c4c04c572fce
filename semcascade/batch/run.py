"""Run a batch: read requests, skip the ids already done, run the rest on an engine, append results."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from semcascade.batch.requests import done_ids, read_requests
from semcascade.errors import ConfigError

if TYPE_CHECKING:
    from semcascade.config import CascadeConfig

__all__ = ["BatchSummary", "batch_config", "run_batch"]

Engine = Literal["local", "ray"]


@dataclass
class BatchSummary:
    """What a run did: requests in the input, skipped (already in OUT), written now, failed, money spent."""

    total: int = 0
    skipped: int = 0
    written: int = 0
    failed: int = 0
    answer_cache_hits: int = 0
    cost: float = 0.0
    wall_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "throughput_rps": self.written / self.wall_s if self.wall_s else None}


def batch_config(config: str | Path | Mapping[str, Any] | CascadeConfig | None) -> CascadeConfig:
    """The config a batch runs: ``config`` with the response cache on (so reruns pay nothing twice)."""
    from semcascade.config import load_config

    cfg = load_config(config)
    return cfg.model_copy(update={"state": cfg.state.model_copy(update={"response_cache": True})})


class _Writer:
    """Appends output lines (flushed each) and keeps the summary and the progress bar current."""

    def __init__(self, path: Path, summary: BatchSummary, todo: int, progress: bool) -> None:
        from tqdm import tqdm

        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("a", encoding="utf-8")
        self.summary = summary
        self.bar = tqdm(total=todo, disable=not progress, unit="req", dynamic_ncols=True, desc="batch")

    def __call__(self, line: dict[str, Any]) -> None:
        self.file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.file.flush()
        s = self.summary
        s.written += 1
        if "error" in line:
            s.failed += 1
            s.errors[line["error_type"]] = s.errors.get(line["error_type"], 0) + 1
        else:
            s.cost += float(line["cost"])
            s.answer_cache_hits += bool(line["answer_cache_hit"])
        self.bar.update(1)
        self.bar.set_postfix(cost=f"{s.cost:.4g}", failed=s.failed, refresh=False)

    def close(self) -> None:
        self.bar.close()
        self.file.close()


def run_batch(
    inp: str | Path,
    out: str | Path,
    *,
    config: str | Path | Mapping[str, Any] | CascadeConfig | None = None,
    engine: Engine = "local",
    concurrency: int = 16,
    ray_address: str | None = None,
    actors: int | None = None,
    progress: bool = True,
) -> BatchSummary:
    """Run every request of ``inp`` whose id is not yet in ``out`` and append its line to ``out``."""
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    cfg = batch_config(config)  # a bad config first: nothing read, nothing paid
    requests = read_requests(inp)
    out_path = Path(out)
    done = done_ids(out_path)
    todo = [r for r in requests if r.id not in done]
    for r in todo:
        if r.task is not None:
            cfg.task_config(r.task)  # an unknown task: a ConfigError before anything is paid
    summary = BatchSummary(total=len(requests), skipped=len(requests) - len(todo))
    writer = _Writer(out_path, summary, len(todo), progress)
    t0 = time.perf_counter()
    try:
        run: Callable[..., None]
        if engine == "local":
            from semcascade.batch.local import run_local as run
        elif engine == "ray":
            from semcascade.batch.ray_engine import run_ray as run
        else:
            raise ConfigError(f"unknown engine {engine!r}; choose local or ray")
        run(todo, cfg, writer, concurrency=concurrency, address=ray_address, actors=actors)
    finally:
        summary.wall_s = time.perf_counter() - t0
        writer.close()
    return summary
