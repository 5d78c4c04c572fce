"""Batch runs: ``semcascade batch IN.jsonl OUT.jsonl [--engine local|ray]``.

Each input line is a request (``messages`` or ``prompt``, optional ``task`` and ``id``); each output
line is its result with a trace summary, or its error. Reruns skip ids already in OUT (resumable),
and every paid model call goes through the response cache, so a rerun pays nothing twice.
``local`` runs asyncio in this process; ``ray`` runs the same per-request code in Ray actors, each
holding one Cascade (the ``ray`` extra). The run budget is the config's ``state:`` ledger: with
``state: redis`` it holds across every actor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from semcascade._lazy import lazy_exports

if TYPE_CHECKING:
    from semcascade.batch.requests import BatchRequest, done_ids, read_requests
    from semcascade.batch.run import BatchSummary, batch_config, run_batch

_EXPORTS = {
    **dict.fromkeys(("BatchRequest", "done_ids", "read_requests"), "semcascade.batch.requests"),
    **dict.fromkeys(("BatchSummary", "batch_config", "run_batch"), "semcascade.batch.run"),
}

__all__ = ["BatchRequest", "BatchSummary", "batch_config", "done_ids", "read_requests", "run_batch"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
