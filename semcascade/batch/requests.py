"""Batch input lines -> requests, and the ids an output file already holds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semcascade.errors import BatchInputError

__all__ = ["BatchRequest", "done_ids", "read_requests", "repair_tail"]


@dataclass(frozen=True)
class BatchRequest:
    """One input line: ``id`` (default: its line number), the prompt or messages, an optional task."""

    id: str
    prompt: Any
    task: str | None = None


def _request(obj: Any, where: str, lineno: int) -> BatchRequest:
    if not isinstance(obj, dict):
        raise BatchInputError(f"{where}: a request must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - {"id", "prompt", "messages", "task"})
    if unknown:
        raise BatchInputError(f"{where}: unknown field(s) {', '.join(unknown)}; use id, prompt or messages, task")
    has_p, has_m = "prompt" in obj, "messages" in obj
    if has_p == has_m:
        raise BatchInputError(f"{where}: give exactly one of 'prompt' (text) or 'messages' (OpenAI-style list)")
    prompt = obj["prompt"] if has_p else obj["messages"]
    if has_p and (not isinstance(prompt, str) or not prompt.strip()):
        raise BatchInputError(f"{where}: 'prompt' must be non-empty text")
    if has_m and (not isinstance(prompt, list) or not prompt or not all(isinstance(m, dict) for m in prompt)):
        raise BatchInputError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    rid = obj.get("id", lineno)
    if not isinstance(rid, str | int) or isinstance(rid, bool) or str(rid) == "":
        raise BatchInputError(f"{where}: 'id' must be a non-empty string or an integer")
    task = obj.get("task")
    if task is not None and (not isinstance(task, str) or not task):
        raise BatchInputError(f"{where}: 'task' must be a task name")
    return BatchRequest(id=str(rid), prompt=prompt, task=task)


def read_requests(path: str | Path) -> list[BatchRequest]:
    """Every request of the JSONL file ``path`` (blank lines skipped); :class:`BatchInputError` names the line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BatchInputError(f"{p}: no such input file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchInputError(f"{p}: cannot read it ({exc})") from None
    out: list[BatchRequest] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{p}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BatchInputError(f"{where}: not a JSON line ({exc.msg} at column {exc.colno})") from None
        req = _request(obj, where, lineno)
        if req.id in seen:
            raise BatchInputError(f"{where}: id {req.id!r} repeats line {seen[req.id]}; ids must be unique")
        seen[req.id] = lineno
        out.append(req)
    if not out:
        raise BatchInputError(f"{p}: no requests in it (one JSON object a line)")
    return out


def repair_tail(path: Path) -> None:
    """Drop a last line cut short (a writer killed mid-line), so appending goes on cleanly."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    with path.open("r+b") as f:
        f.truncate(cut)


def done_ids(path: str | Path) -> set[str]:
    """The ids an output file already holds (a missing file holds none)."""
    p = Path(path)
    if not p.exists():
        return set()
    repair_tail(p)
    ids = set()
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            ids.add(str(json.loads(line)["id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise BatchInputError(
                f"{p}:{lineno}: not a semcascade batch output line; pass another OUT file or delete it"
            ) from None
    return ids
