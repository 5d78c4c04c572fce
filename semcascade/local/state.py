"""The state file of the managed server: which process serves where, started how."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from semcascade.local.paths import cache_dir

__all__ = ["ServerState", "read_state", "remove_state", "state_path", "write_state"]


@dataclass(frozen=True)
class ServerState:
    """What a started server leaves in ``cache_dir()/server.json`` for later processes."""

    pid: int
    host: str
    port: int
    fingerprint: str
    binary: str
    log: str
    models: tuple[str, ...] = ()
    detached: bool = False
    owner_pid: int = 0  # the process that stops it at exit (0 = none/unknown)


def state_path() -> Path:
    """``cache_dir()/server.json``."""
    return cache_dir() / "server.json"


def read_state() -> ServerState | None:
    """The recorded server, or None if there is no (readable, well-formed) state file."""
    try:
        raw = json.loads(state_path().read_text(encoding="utf-8"))
        return ServerState(
            pid=int(raw["pid"]),
            host=str(raw["host"]),
            port=int(raw["port"]),
            fingerprint=str(raw["fingerprint"]),
            binary=str(raw["binary"]),
            log=str(raw["log"]),
            models=tuple(str(m) for m in raw.get("models", ())),
            detached=bool(raw.get("detached", False)),
            owner_pid=int(raw.get("owner_pid", 0)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(state: ServerState) -> None:
    """Atomically replace the state file."""
    path = state_path()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = asdict(state)
    data["models"] = list(state.models)
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def remove_state(pid: int | None = None) -> None:
    """Delete the state file (only if it records ``pid``, when given)."""
    if pid is not None:
        current = read_state()
        if current is not None and current.pid != pid:
            return
    with contextlib.suppress(FileNotFoundError):
        state_path().unlink()
