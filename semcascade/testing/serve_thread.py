"""A real uvicorn server of a semcascade app on loopback, in a thread (tests and benchmarks).

with ServeThread(create_app({"m": cascade}, ServeConfig(auth="off"))) as srv:
    openai.OpenAI(base_url=srv.base_url, api_key="x").chat.completions.create(...)
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

__all__ = ["ServeThread"]


class ServeThread:
    """uvicorn serving ``app`` on ``127.0.0.1`` (a free port), started by :meth:`start`, stopped by :meth:`stop`."""

    def __init__(self, app: Any, *, grace_s: int = 5, startup_timeout_s: float = 30.0) -> None:
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as `semcascade serve` does
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=grace_s
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="semcascade-serve-test", daemon=True)
        self._startup_timeout_s = startup_timeout_s
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        except BaseException as exc:  # reported by start()/stop()
            self.error = exc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> ServeThread:
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the test server did not start: {self.error!r}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()

    def __enter__(self) -> ServeThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
