"""semcascade batch on a real local Ray cluster (head + a worker node, 1 CPU each) with state on Redis.

Against the fault server with latency and transient faults: every input id lands in OUT exactly once,
killing the worker node mid-run loses nothing, the run budget is one ledger across actors, and a
second run over the same input pays nothing (every paid call is in the shared response cache).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_fixtures import cascade_config, fault_server_fixture, fault_server_session, tier  # noqa: F401
from redis_fixtures import redis_server_fixture  # noqa: F401

from semcascade.batch.run import BatchSummary, batch_config, run_batch
from semcascade.state.base import create_state_store
from semcascade.state.redis_store import RedisLedger
from semcascade.testing import FaultServer
from semcascade.testing.ray_cluster import RayCluster
from semcascade.testing.redis_server import RedisServer

pytestmark = pytest.mark.ray


@pytest.fixture(name="ray_cluster", scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    with RayCluster(nodes=2, cpus=1, object_store_mb=80) as cluster:
        yield cluster


def test_ray_batch_survives_a_killed_node_and_pays_nothing_twice(
    ray_cluster: RayCluster, fault_server: FaultServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    import ray

    fault_server.base_latency_s = 0.05
    fault_server.script("500", "429", "503")
    n = 20
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"question {i}?"}) + "\n" for i in range(n)))
    out = tmp_path / "out.jsonl"
    state = {"name": "redis", "namespace": "ray", "options": {"url": redis_server.url}}
    cfg = cascade_config(tier(fault_server, "cheap", k=2), state=state, budget={"max_cost_per_run": 1.0})
    done: list[BatchSummary] = []
    worker = threading.Thread(
        target=lambda: done.append(
            run_batch(
                inp, out, config=cfg, engine="ray", concurrency=4, ray_address=ray_cluster.address, progress=False
            )
        )
    )
    worker.start()
    deadline = time.monotonic() + 120
    while (not out.exists() or len(out.read_text().splitlines()) < n // 4) and time.monotonic() < deadline:
        time.sleep(0.05)
    ray_cluster.kill_node(1)  # the worker node, mid-run
    worker.join(timeout=180)
    assert not worker.is_alive() and done
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert sorted(ids) == sorted(f"r{i}" for i in range(n))  # every id exactly once: nothing lost, no duplicate
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert all("error" not in r for r in rows)
    # one run budget across the actors: the shared ledger holds what every line cost
    store = create_state_store(batch_config(cfg))
    ledger = store.ledger("run", 1.0, None, scope="run")
    assert isinstance(ledger, RedisLedger)
    assert ledger.totals()["spent_cost"] >= sum(r["cost"] for r in rows) - 1e-9
    paid = fault_server.stats.by_fault["ok"]
    # the same input again, into a new OUT: every call is in the shared response cache
    out2 = tmp_path / "out2.jsonl"
    run_batch(inp, out2, config=cfg, engine="ray", concurrency=4, ray_address=ray_cluster.address, progress=False)
    assert fault_server.stats.by_fault["ok"] == paid
    assert sorted(json.loads(x)["id"] for x in out2.read_text().splitlines()) == sorted(ids)
    ray.shutdown()
