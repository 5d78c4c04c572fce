"""The Ray engine: actors each holding one Cascade (scorers load once per actor), fed by the driver.

Actors restart on a surviving node when theirs dies (``max_restarts=-1``) and a task lost with its
actor is retried (``max_task_retries=-1``), so a killed worker node loses no request; calls already
paid were written to the response cache (in the shared store), so the retry pays only what was in
flight. The driver writes every line, in this process, as results arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from semcascade.batch.requests import BatchRequest
from semcascade.errors import ConfigError

if TYPE_CHECKING:
    from semcascade.config import CascadeConfig

__all__ = ["CascadeActor", "run_ray"]


class CascadeActor:
    """One Cascade in a Ray actor (async: ``max_concurrency`` requests at a time)."""

    def __init__(self, config: dict[str, Any]) -> None:
        from semcascade.cascade import Cascade

        self.cascade = Cascade(config)
        self.lock = asyncio.Lock()

    async def run(self, req: dict[str, Any]) -> dict[str, Any]:
        from semcascade.batch.lines import FATAL, output_line, process_one

        request = BatchRequest(**req)
        try:
            return await process_one(self.cascade, request)
        except FATAL as exc:  # the driver stops the batch on these
            return {**output_line(request, error=exc), "fatal": True}

    async def close(self) -> None:
        await self.cascade.aclose()


def run_ray(
    todo: Sequence[BatchRequest],
    config: CascadeConfig,
    write: Callable[[dict[str, Any]], None],
    *,
    concurrency: int,
    address: str | None = None,
    actors: int | None = None,
    **_: Any,
) -> None:
    """Run ``todo`` on the Ray cluster at ``address`` (None: ``RAY_ADDRESS`` or a new local one)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'semcascade[ray]'") from None
    from semcascade.errors import StateStoreError

    ray.init(address=address, log_to_driver=False, ignore_reinit_error=True, include_dashboard=False)
    cpus = ray.cluster_resources().get("CPU", 1)  # type: ignore[no-untyped-call]
    n = actors or max(1, int(cpus))
    per_actor = max(1, concurrency // n)
    remote: Any = ray.remote(num_cpus=0.5, max_restarts=-1, max_task_retries=-1)(CascadeActor)
    cfg = config.model_dump(mode="json")
    pool: list[Any] = [
        remote.options(max_concurrency=per_actor, scheduling_strategy="SPREAD").remote(cfg) for _ in range(n)
    ]
    queue = list(reversed(todo))
    pending: dict[Any, tuple[int, BatchRequest]] = {}

    def submit(slot: int) -> None:
        if queue:
            req = queue.pop()
            ref = pool[slot].run.remote({"id": req.id, "prompt": req.prompt, "task": req.task})
            pending[ref] = (slot, req)

    try:
        for first in range(n):
            for _k in range(per_actor):
                submit(first)
        while pending:
            ready, _rest = ray.wait(list(pending), num_returns=1)
            slot, _req = pending.pop(ready[0])
            line: dict[str, Any] = ray.get(ready[0])
            if line.pop("fatal", False):
                raise StateStoreError(f"request {line['id']!r}: {line['error']}")
            write(line)
            submit(slot)
    finally:
        for a in pool:
            ray.kill(a)
