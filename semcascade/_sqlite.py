"""Per-thread SQLite connections shared by the on-disk stores (response cache, strategy memory).

One connection per thread and per process (a connection inherited across
``fork()`` is never used by the child), opened in autocommit mode with a busy
timeout, and all closable at once from any thread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

__all__ = ["ThreadConnections"]


class ThreadConnections:
    """Lazily opened per-thread connections to one SQLite file.

    ``on_error(exc, doing)`` turns a :class:`sqlite3.Error` while opening into
    the owner's typed error; ``on_closed()`` is the error raised after
    :meth:`close`.
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_s: float,
        synchronous: str,
        on_error: Callable[[BaseException, str], Exception],
        on_closed: Callable[[], Exception],
    ) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self.synchronous = synchronous
        self._on_error = on_error
        self._on_closed = on_closed
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self.closed = False

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._on_error(exc, "cannot open") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.Error as exc:
            conn.close()
            raise self._on_error(exc, "cannot open") from None
        with self._all_lock:
            self._all.append(conn)
        return conn

    def get(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use, and again after a fork)."""
        if self.closed:
            raise self._on_closed()
        pid = os.getpid()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != pid:
            conn = self._connect()
            self._local.conn = conn
            self._local.pid = pid
        return conn

    def close(self) -> None:
        """Close every connection (from any thread). Idempotent."""
        self.closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with suppress(sqlite3.Error):
                conn.close()
