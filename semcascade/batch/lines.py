"""One request's output line, and running one request through a Cascade (shared by every engine)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from semcascade.batch.requests import BatchRequest
from semcascade.errors import ConfigError, SemcascadeError, StateStoreError

if TYPE_CHECKING:
    from semcascade.cascade import Cascade

__all__ = ["FATAL", "output_line", "process_one"]

#: errors that stop the whole batch (nothing is written for the request: a rerun does it again)
FATAL: tuple[type[BaseException], ...] = (ConfigError, StateStoreError)


def output_line(req: BatchRequest, result: Any = None, error: BaseException | None = None) -> dict[str, Any]:
    """The output line of ``req``: its result with a trace summary, or its error."""
    if error is not None:
        return {"id": req.id, "error": str(error), "error_type": type(error).__name__}
    r = result
    return {
        "id": req.id,
        "text": r.text,
        "tier": r.tier,
        "agreement": r.agreement,
        "abstained": r.abstained,
        "cost": r.cost,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "latency_s": round(r.latency_s, 4),
        "answer_cache_hit": r.answer_cache_hit,
        "budget_exhausted": r.budget_exhausted,
        "task": r.task,
        "trace": [
            {
                "tier": t.tier,
                "decision": t.decision,
                "agreement": t.agreement,
                "samples": len(t.samples),
                "cost": t.cost,
            }
            for t in r.trace
        ],
    }


async def process_one(cascade: Cascade, req: BatchRequest) -> dict[str, Any]:
    """One request through ``cascade`` -> its output line (a fatal error propagates)."""
    try:
        result = await cascade.generate(req.prompt, task=req.task)
    except FATAL:
        raise
    except SemcascadeError as exc:
        return output_line(req, error=exc)
    return output_line(req, result)
