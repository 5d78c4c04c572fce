"""Process, port and HTTP helpers for the managed server."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx

__all__ = [
    "free_port",
    "group_alive",
    "healthy",
    "host_for_url",
    "is_llama_server",
    "log_tail",
    "pid_alive",
    "port_in_use",
    "served_models",
    "terminate",
]


def host_for_url(host: str) -> str:
    """``host`` as it goes into a URL (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str) -> int:
    """A port on ``host`` that nothing listens on right now."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(host: str, port: int) -> bool:
    """True if ``port`` on ``host`` cannot be bound (another program holds it)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists and is not a zombie."""
    if pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our exited child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def is_llama_server(pid: int, binary: str | None = None) -> bool:
    """True if ``pid`` runs ``llama-server`` (guards against recycled pids).

    The program is ``argv[0]``, or ``argv[1]`` for a script run by an
    interpreter; it must be named ``llama-server`` or be ``binary``. Where
    ``/proc`` is unavailable the answer is True; callers also check health.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return False
    argv = [a.decode(errors="replace") for a in cmdline.split(b"\0")[:2]]
    return any(Path(a).name == "llama-server" or (binary is not None and a == binary) for a in argv)


def healthy(host: str, port: int, timeout: float = 2.0) -> bool:
    """True if ``GET /health`` answers 200."""
    try:
        response = httpx.get(f"http://{host_for_url(host)}:{port}/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def served_models(host: str, port: int, timeout: float = 5.0, reload: bool = False) -> set[str] | None:
    """The model ids ``GET /v1/models`` lists, or None if the server does not answer.

    ``reload`` asks a router to rescan its models folder first.
    """
    params = {"reload": "1"} if reload else None
    try:
        response = httpx.get(f"http://{host_for_url(host)}:{port}/v1/models", params=params, timeout=timeout)
        response.raise_for_status()
        return {str(m["id"]) for m in response.json().get("data", [])}
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False


def _signal(pid: int, sig: signal.Signals, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def terminate(pid: int, grace: float = 5.0, is_dead: Callable[[], bool] | None = None) -> None:
    """SIGTERM ``pid``, then SIGKILL after ``grace`` seconds.

    If ``pid`` leads a process group (the server is started in its own session)
    the whole group is signalled, so the router's model children go with it.
    """
    dead = is_dead or (lambda: not pid_alive(pid))
    group = _leads_group(pid)
    _signal(pid, signal.SIGTERM, group)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if dead():
            break
        time.sleep(0.05)
    else:
        _signal(pid, signal.SIGKILL, group)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not dead():
            time.sleep(0.05)
    if group:  # wait for the model children, then kill any the router did not get to stop
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and group_alive(pid):
            time.sleep(0.05)
        _signal(pid, signal.SIGKILL, group)
        deadline = time.monotonic() + 2.0  # SIGKILL is asynchronous: wait until they are gone
        while time.monotonic() < deadline and group_alive(pid):
            time.sleep(0.02)


def group_alive(pgid: int) -> bool:
    """True if a live (non-zombie) process is still in group ``pgid``."""
    proc = Path("/proc")
    if not (proc / "self").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        # fields: state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def log_tail(path: Path, lines: int = 5) -> str:
    """The last ``lines`` non-empty lines of a log file ("" if unreadable)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
