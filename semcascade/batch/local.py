"""The local engine: one Cascade, asyncio, up to ``concurrency`` requests at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from semcascade.batch.lines import process_one
from semcascade.batch.requests import BatchRequest

if TYPE_CHECKING:
    from semcascade.config import CascadeConfig

__all__ = ["run_local"]


def run_local(
    todo: Sequence[BatchRequest],
    config: CascadeConfig,
    write: Callable[[dict[str, Any]], None],
    *,
    concurrency: int,
    **_: Any,
) -> None:
    """Run ``todo`` through one Cascade in this process, writing each line as it finishes."""
    from semcascade.cascade import Cascade

    async def main() -> None:
        queue: asyncio.Queue[BatchRequest] = asyncio.Queue()
        for r in todo:
            queue.put_nowait(r)
        async with Cascade(config) as cascade:

            async def worker() -> None:
                while not queue.empty():
                    req = queue.get_nowait()
                    write(await process_one(cascade, req))

            tasks = [asyncio.create_task(worker()) for _ in range(min(concurrency, max(1, len(todo))))]
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
