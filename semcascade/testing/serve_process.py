"""A ``semcascade serve`` replica as its own process on loopback (tests and benchmarks of several replicas).

    rep = ServeProcess(["load.yaml"]).wait()   # port 0: the server prints the one it got
    client = openai.AsyncOpenAI(base_url=rep.base_url, api_key="none")
    rep.kill()                                 # SIGKILL, like a crashed machine

Start several before waiting on any: they load in parallel. The server's output is read all along (a
full pipe would block its writes, and so its requests); :attr:`output` keeps it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ServeProcess"]


class ServeProcess:
    """``python -m semcascade.cli serve --config C... --port 0 --no-auth`` (``log_level``: SEMCASCADE_LOG_LEVEL)."""

    def __init__(
        self, configs: Sequence[str | Path], *, log_level: str = "WARNING", pythonpath: str | None = None
    ) -> None:
        env = {**os.environ, "SEMCASCADE_LOG_LEVEL": log_level}
        if pythonpath is not None:
            env["PYTHONPATH"] = pythonpath
        cmd = [sys.executable, "-m", "semcascade.cli", "serve", "--port", "0", "--no-auth"]
        for c in configs:
            cmd += ["--config", str(c)]
        self.configs = [str(c) for c in configs]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.output: list[str] = []
        #: ``http://127.0.0.1:PORT/v1`` once :meth:`wait` returned
        self.base_url = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self) -> ServeProcess:
        """Block until the server printed its banner (its port is open); raise with its output if it exits."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if "semcascade serve: http://" in line:
                self.base_url = line.split()[2]
            if "openai.OpenAI(base_url=" in line:
                break
        if not self.base_url:
            raise RuntimeError("semcascade serve did not start:\n" + "".join(self.output[-40:]))
        threading.Thread(target=lambda: self.output.extend(self.proc.stdout or ()), daemon=True).start()
        return self

    def kill(self) -> None:
        """SIGKILL (no drain, no shutdown hooks) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (drain), SIGKILL if it has not exited within ``timeout_s``."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.wait()
