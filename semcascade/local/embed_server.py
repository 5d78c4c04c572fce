"""A managed ``llama-server --embedding`` for one local embedding model.

It is a process of its own, not an entry of the chat router: the router's
children are started without ``--embedding`` and it evicts models beyond
``models_max``, so an embedding model there would take a chat model's place.
The process is owned by the object that starts it (stopped at :meth:`stop`
or at exit) and is never shared with other processes, so it cannot disturb
the chat server others use. One slot per parallel request; each slot holds a
whole model context (a text embeds in one batch: ``-b``/``-ub`` = context).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from semcascade.errors import LocalServerError
from semcascade.local.build import ensure_llama_server
from semcascade.local.embedders import embedding_model_spec, ensure_embedding_model
from semcascade.local.paths import cache_dir
from semcascade.local.process import free_port, healthy, host_for_url, log_tail, terminate

__all__ = ["EmbeddingServer", "embedding_server_args"]

_DROPPED_ENV_PREFIXES: tuple[str, ...] = ("LLAMA_ARG_", "LLAMA_API_KEY")


def embedding_server_args(
    binary: Path, model_path: Path, alias: str, *, context: int, parallel: int, threads: int, host: str, port: int
) -> list[str]:
    """The command line of an embedding server (mean pooling, L2-normalised output)."""
    return [
        str(binary),
        "--model", str(model_path),
        "--alias", alias,
        "--embedding",
        "--pooling", "mean",
        "--embd-normalize", "2",
        "-c", str(context * parallel),
        "-np", str(parallel),
        "-b", str(context),
        "-ub", str(context),
        "-t", str(threads),
        "--host", host,
        "--port", str(port),
        "--no-webui",
    ]  # fmt: skip


class EmbeddingServer:
    """``with EmbeddingServer("nomic-embed-text-v1.5") as server:`` then ``POST server.url + "/v1/embeddings"``."""

    def __init__(
        self,
        model: str = "nomic-embed-text-v1.5",
        *,
        threads: int = 2,
        parallel: int = 2,
        host: str = "127.0.0.1",
        startup_timeout: float = 180.0,
        progress: bool = False,
    ) -> None:
        self.spec = embedding_model_spec(model)
        for option, value in (("threads", threads), ("parallel", parallel)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LocalServerError(f"embedding server: {option} must be a positive integer, got {value!r}")
        self.threads, self.parallel, self.host = threads, parallel, host
        self.startup_timeout = startup_timeout
        self.progress = progress
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._port: int | None = None
        self.log_path: Path | None = None

    @property
    def model(self) -> str:
        return self.spec.name

    @property
    def started(self) -> bool:
        return self._port is not None

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:8081``."""
        if self._port is None:
            raise LocalServerError("the embedding server is not started; call start() (or use it in a `with` block)")
        return f"http://{host_for_url(self.host)}:{self._port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> EmbeddingServer:
        """Build/extract what is missing and start the server; returns once it answers ``/health``."""
        if self.started:
            return self
        binary = ensure_llama_server(progress=self.progress)
        model_path = ensure_embedding_model(self.spec.name, progress=self.progress)
        port = free_port(self.host)
        args = embedding_server_args(
            binary,
            model_path,
            self.spec.name,
            context=self.spec.context,
            parallel=self.parallel,
            threads=self.threads,
            host=self.host,
            port=port,
        )
        log_dir = cache_dir() / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"llama-embed-{port}.log"
        log = log_path.open("wb")
        log.write(f"$ {' '.join(args)}\n".encode())
        log.flush()
        env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
        try:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        except OSError as exc:
            log.close()
            raise LocalServerError(f"could not run {binary} for the embedding server ({exc})") from None
        self._proc, self._log, self.log_path, self._port = proc, log, log_path, port
        atexit.register(self.stop)
        try:
            self._wait_healthy(proc, port, log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = proc.poll()
            if code is not None:
                raise LocalServerError(
                    f"the embedding llama-server exited with code {code} while starting; see {log_path}. "
                    f"Last log lines:\n{log_tail(log_path)}"
                )
            if healthy(self.host, port, timeout=1.0):
                return
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"the embedding llama-server did not become healthy within {self.startup_timeout:.0f}s; "
                    f"check the log {log_path}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc.pid, grace=5.0, is_dead=lambda: proc.poll() is not None)
            proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._port = None

    def __enter__(self) -> EmbeddingServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.started else "not started"
        return f"EmbeddingServer({self.spec.name!r}, {where})"
