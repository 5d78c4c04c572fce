"""A real local Ray cluster on loopback for tests and benchmarks: a head node plus worker nodes.

Each node is ``ray start --block`` in its own process group, so :meth:`kill_node` ends exactly that
node (SIGKILL to its group) and :meth:`stop` ends every node this object started - never other Ray
processes on the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from semcascade.testing.redis_server import free_port

__all__ = ["RayCluster"]


def _node_ip() -> str:
    """The IP Ray would give a node here (its own choice, so drivers and nodes agree)."""
    try:
        from ray._private.services import get_node_ip_address

        return str(get_node_ip_address())  # type: ignore[no-untyped-call]
    except Exception:
        return "127.0.0.1"


class RayCluster:
    """``nodes`` Ray nodes (the first is the head), ``cpus`` CPUs and ``object_store_mb`` each."""

    def __init__(self, nodes: int = 2, *, cpus: int = 1, object_store_mb: int = 80) -> None:
        self.nodes = nodes
        self.cpus = cpus
        self.object_store = object_store_mb * 1024 * 1024
        self.port = free_port()
        #: the address Ray registers the nodes under (it may refuse 127.0.0.1 and take this host's own IP)
        self.ip = _node_ip()
        self.address = f"{self.ip}:{self.port}"
        # short: Ray's socket paths live under it and must stay below the 107-byte AF_UNIX limit
        self.temp_dir = Path(tempfile.mkdtemp(prefix="scray", dir="/tmp"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": os.pathsep.join(sys.path),
            # a loaded machine starts the node agents slowly; the default wait (15 s) kills the raylet
            "RAY_agent_register_timeout_ms": "180000",
            # a killed node is declared dead after ~5 missed 1 s health checks (default ~30 s and more)
            "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "3000",
            "RAY_health_check_failure_threshold": "5",
            # Ray renices its workers by +15 by default: actors would run behind the driver (and, at the
            # nice 10 of a benchmark, at 19: starved by everything else); keep the niceness of `ray start`
            "RAY_worker_niceness": "0",
        }  # fmt: skip

    def _ray(self) -> str:
        exe = Path(sys.executable).with_name("ray")
        return str(exe) if exe.exists() else "ray"

    def _node(self, head: bool) -> subprocess.Popen[bytes]:
        common = [
            "--block", f"--node-ip-address={self.ip}", f"--num-cpus={self.cpus}",
            f"--object-store-memory={self.object_store}", "--disable-usage-stats",
        ]  # fmt: skip
        if head:
            args = ["--head", f"--port={self.port}", "--include-dashboard=false", f"--temp-dir={self.temp_dir}"]
        else:
            args = [f"--address={self.address}"]
        with open(self.temp_dir / f"node-{len(self.procs)}.log", "wb") as log:
            return subprocess.Popen(
                [self._ray(), "start", *args, *common], env=self.env, stdout=log, stderr=log, start_new_session=True
            )

    def start(self, timeout_s: float = 300.0) -> RayCluster:
        try:
            self.procs.append(self._node(head=True))
            deadline = time.monotonic() + timeout_s
            self._wait_nodes(1, deadline)
            for _ in range(self.nodes - 1):
                self.procs.append(self._node(head=False))
            self._wait_nodes(self.nodes, deadline)
        except Exception as exc:
            logs = "".join(
                f"\n--- {f.name}\n" + f.read_text(errors="replace")[-2000:] for f in self.temp_dir.glob("*.log")
            )
            self.stop()  # no node of a failed start outlives it (its logs go with the temp dir: quoted here)
            raise RuntimeError(f"{exc}{logs}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def add_node(self, timeout_s: float = 300.0) -> None:
        """Start one more worker node joining the running cluster; return once it is alive."""
        self.procs.append(self._node(head=False))
        self.nodes = len(self.procs)
        self._wait_nodes(self.nodes, time.monotonic() + timeout_s)

    def _wait_nodes(self, n: int, deadline: float) -> None:
        probe = (
            "import ray,sys; ray.init(address=sys.argv[1], log_to_driver=False); "
            "print(sum(1 for x in ray.nodes() if x['Alive']))"
        )
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a ray node exited ({p.returncode}); see {self.temp_dir}/node-*.log")
            try:
                out = subprocess.run(
                    [sys.executable, "-c", probe, self.address], capture_output=True, text=True, env=self.env,
                    timeout=max(1.0, min(60.0, deadline - time.monotonic())),
                )  # fmt: skip
            except subprocess.TimeoutExpired:  # a loaded machine: the probe itself is slow; try again
                continue
            if out.returncode == 0 and out.stdout.strip().isdigit() and int(out.stdout.strip()) >= n:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the ray cluster did not reach {n} nodes in time; see {self.temp_dir}/node-*.log")

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index`` (its whole process group: raylet, workers, actors)."""
        p = self.procs[index]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()

    def stop(self) -> None:
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs = []
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> RayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
