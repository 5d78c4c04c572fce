"""SQLite plumbing shared by the on-disk stores (response cache, strategy memory).

:class:`ThreadConnections`: one connection per thread and per process (a
connection inherited across ``fork()`` is never used by the child), opened in
autocommit mode with a busy timeout, and all closable at once from any thread.
:func:`initialise_schema` creates or checks a store's tables in one transaction;
:func:`error_message` says what a :class:`sqlite3.Error` means for the user.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

__all__ = ["ThreadConnections", "error_message", "initialise_schema"]


def error_message(exc: BaseException, doing: str, busy_timeout_s: float, *, when_locked: str, when_foreign: str) -> str:
    """What ``exc`` (raised while ``doing``) means: still locked, no access, or not a usable file of this kind."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return f"{doing}: still locked by another process after {busy_timeout_s:g}s ({text}); {when_locked}"
    if isinstance(exc, sqlite3.OperationalError) and ("unable to open" in text or "readonly" in text):
        return f"{doing}: {text}; check the path and its permissions"
    return f"{doing}: {text}; {when_foreign}"


def initialise_schema(
    conn: sqlite3.Connection,
    schema: str,
    meta: Sequence[tuple[str, str]],
    check: Callable[[sqlite3.Connection, set[str]], str | None],
) -> tuple[str, str | None]:
    """Switch to WAL, then in one transaction create ``schema`` and its ``semcascade_meta`` rows in an empty
    file, or ``check`` an existing one. Returns (journal mode, the problem ``check`` found or None); a
    :class:`sqlite3.Error` propagates after a rollback."""
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # "file is not a database" here
    mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        problem = None
        if not tables:
            for statement in schema.split(";"):  # not executescript: it would COMMIT first
                if statement.strip():
                    conn.execute(statement)
            conn.executemany("INSERT INTO semcascade_meta (key, value) VALUES (?, ?)", list(meta))
        else:
            problem = check(conn, tables)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return mode, problem


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
