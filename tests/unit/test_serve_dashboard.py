"""Per-task serve figures (semcascade.serve.taskstats): counts, escalation rate vs the drift band, alarms,
cost vs the strong tier alone, the score histogram, the decision ring buffer, their /metrics series, and the
dashboard's auth (the page is static, its data follows /metrics' key rule)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from serve_fixtures import KEY_ENV, metric, tier

from semcascade import Cascade, MockProvider
from semcascade.config import ServeConfig
from semcascade.providers import Completion, CompletionRequest
from semcascade.result import CascadeResult
from semcascade.serve.app import create_app, observed_cascade
from semcascade.serve.dashboard import PAGE
from semcascade.serve.taskstats import SCORE_BUCKETS, TaskCollector, TaskStats
from semcascade.testing import FaultServer
from semcascade.testing.serve_thread import ServeThread


def _tier(name: str, k: int, price: float) -> dict[str, Any]:
    return {"name": name, "model": f"openai/{name}", "k": k, "threshold": 0.9, "temperature": 0.0 if k == 1 else 0.7,
            "input_cost_per_token": price, "output_cost_per_token": 2 * price}  # fmt: skip


DRIFT = {"enabled": True, "shift": 0.2, "window": 20, "false_alarms_per_10k": 1000,
         "baseline": {"escalation_rate": 0.2, "n": 100, "scores": [1.0] * 16 + [0.0] * 4}}  # fmt: skip
CFG: dict[str, Any] = {
    "tiers": [_tier("cheap", 3, 1e-6), _tier("mid", 3, 2e-6), _tier("strong", 1, 1e-5)],
    "scorer": {"name": "lexical"},
    "tasks": {"rc": {"drift": DRIFT}, "qa": {"tiers": [_tier("strong", 1, 1e-5)]}},
}


def handler(req: CompletionRequest) -> Completion:
    """``easy``: the cheap tier agrees; ``mid``: the mid tier agrees; ``hard``: only the strong tier answers."""
    q = str(req.messages[-1]["content"])
    agrees = (req.model == "openai/cheap" and q.startswith("easy")) or (
        req.model == "openai/mid" and q.startswith(("easy", "mid"))
    )
    texts = ["same"] * req.n if agrees or req.n == 1 else [f"{q} {i}" for i in range(req.n)]
    return MockProvider.texts(req.model, texts, prompt_tokens=len(q))


STREAM = ["easy a", "easy b", "easy c", "easy d", "mid a", "mid b", "mid c", "mid d", "hard a", "hard b", "hard c",
          "hard d"]  # fmt: skip


async def _run(stats: TaskStats, cascade: Cascade, qs: list[str], task: str | None) -> list[CascadeResult]:
    out = []
    for i, q in enumerate(qs):
        r = await cascade.generate(q, task=task)
        stats.record(cascade, r, request_id=f"r{task}{i}", served="svc" if task is None else f"svc/{task}")
        out.append(r)
    return out


def _entry(snap: dict[str, Any], task: str) -> dict[str, Any]:
    return next(e for e in snap["tasks"] if e["task"] == task)


async def test_per_task_counts_rate_band_alarms_and_strong_only_cost() -> None:
    async with Cascade(CFG, provider=MockProvider(handler)) as cascade:
        stats = TaskStats({"svc": cascade})
        rc = await _run(stats, cascade, STREAM, "rc")
        qa = await _run(stats, cascade, ["hard q1", "easy q2"], "qa")
        base = await _run(stats, cascade, ["hard z"], None)
        monitor = cascade.for_task("rc").drift
        assert monitor is not None
        snap = stats.snapshot()
    e = _entry(snap, "rc")
    assert e["requests"] == 12
    assert e["escalations"] == {"mid": 8, "strong": 4}  # each tier a request reached counts once
    assert e["cost"] == pytest.approx(sum(r.cost for r in rc))
    # the rate over the monitor's window is the monitor's own figure; the band is baseline -/+ its shift
    assert e["escalation_rate"] == pytest.approx(8 / 12) == pytest.approx(monitor.escalation_rate)
    assert e["window"] == 50 and e["baseline_rate"] == 0.2 and e["band"] == pytest.approx([0.0, 0.4])
    assert [p[0] for p in e["series"]] == list(range(1, 13))
    assert e["series"][3][2] == 0.0 and e["series"][-1][2] == pytest.approx(8 / 12)
    # alarms by kind are the monitor's (8 escalations in a row from a 0.2 baseline raise the CUSUM)
    assert monitor.alarms and e["alarms"] == {
        **dict.fromkeys(e["alarms"], 0),
        **Counter(a.kind for a in monitor.alarms),
    }
    # the monitor's stream (per process here: the memory store) is what the entry counted
    assert e["stream"] == {"shared": False, "requests": 12, "escalations": 8, "escalation_rate": pytest.approx(8 / 12),
                           "alarms": e["alarms"]}  # fmt: skip
    # strong-only: the strong tier's mean measured cost (on the 4 hard requests) x all 12 requests
    strong = [t.cost for r in rc for t in r.trace if t.tier == "strong"]
    assert len(strong) == 4 == e["strong_tier_runs"] and e["strong_tier_cost"] == pytest.approx(sum(strong))
    assert e["strong_only_cost_estimate"] == pytest.approx(sum(strong) / 4 * 12)
    # first-tier score histogram: the cheap tier's scores, bucketed
    scores = [r.trace[0].score if r.trace[0].score is not None else r.trace[0].agreement for r in rc]
    assert e["scores"]["counts"][0] == sum(s <= 0.1 for s in scores if s is not None) == 8
    assert e["scores"]["counts"][SCORE_BUCKETS.index(1.0)] == 4 and sum(e["scores"]["counts"]) == 12
    assert e["scores"]["baseline_counts"][0] == 4 and e["scores"]["baseline_counts"][SCORE_BUCKETS.index(1.0)] == 16
    # a one-tier task: the strong tier is the whole cascade, so strong-only is exactly the cost
    q = _entry(snap, "qa")
    assert q["escalations"] == {} and q["band"] is None and q["alarms"] == {}
    assert q["strong_only_cost_estimate"] == pytest.approx(q["cost"]) == pytest.approx(sum(r.cost for r in qa))
    d = _entry(snap, "default")
    assert d["requests"] == 1 and d["escalations"] == {"mid": 1, "strong": 1}
    assert d["cost"] == pytest.approx(base[0].cost)


async def test_unknown_task_counts_as_default_and_labels_stay_bounded() -> None:
    async with Cascade(CFG, provider=MockProvider(handler)) as cascade:
        stats = TaskStats({"svc": cascade})
        (r,) = await _run(stats, cascade, ["easy x"], "rc")
        stats.record(cascade, r.model_copy(update={"task": "not-a-task"}), request_id="x", served="svc")
        other = Cascade(CFG, provider=MockProvider(handler))  # not served: ignored
        stats.record(other, r, request_id="y", served="svc")
        registry = CollectorRegistry()
        registry.register(TaskCollector(stats))
        text = generate_latest(registry).decode()
    assert metric(text, "semcascade_task_requests_total", model="svc", task="default") == 1
    assert metric(text, "semcascade_task_requests_total", model="svc", task="rc") == 1
    tasks = {line.split('task="')[1].split('"')[0] for line in text.splitlines() if 'task="' in line}
    models = {line.split('model="')[1].split('"')[0] for line in text.splitlines() if 'model="' in line}
    assert tasks == {"default", "rc", "qa"} and models == {"svc"}


async def test_metrics_series_equal_the_snapshot() -> None:
    async with Cascade(CFG, provider=MockProvider(handler)) as cascade:
        stats = TaskStats({"svc": cascade})
        await _run(stats, cascade, STREAM, "rc")
        registry = CollectorRegistry()
        registry.register(TaskCollector(stats))
        text = generate_latest(registry).decode()
        e = _entry(stats.snapshot(), "rc")
    lv = {"model": "svc", "task": "rc"}
    assert metric(text, "semcascade_task_requests_total", **lv) == e["requests"] == 12
    for t, n in e["escalations"].items():
        assert metric(text, "semcascade_task_escalations_total", **lv, tier=t) == n
    for kind, n in e["alarms"].items():
        assert metric(text, "semcascade_task_drift_alarms_total", **lv, kind=kind) == n
    assert metric(text, "semcascade_task_escalation_rate", **lv) == pytest.approx(e["escalation_rate"])
    assert metric(text, "semcascade_task_escalation_rate_baseline", **lv) == 0.2
    assert metric(text, "semcascade_task_escalation_band", **lv, bound="high") == pytest.approx(0.4)
    assert metric(text, "semcascade_task_cost_total", **lv) == pytest.approx(e["cost"])
    assert metric(text, "semcascade_task_strong_only_cost_estimate", **lv) == pytest.approx(
        e["strong_only_cost_estimate"]
    )
    cum = 0
    for le, n in zip(SCORE_BUCKETS, e["scores"]["counts"], strict=False):
        cum += n
        assert metric(text, "semcascade_task_first_tier_score_bucket", **lv, le=repr(le)) == cum
    assert metric(text, "semcascade_task_first_tier_score_count", **lv) == 12


async def test_recent_decisions_are_a_bounded_ring_with_texts_only_when_asked() -> None:
    async with Cascade(CFG, provider=MockProvider(handler)) as cascade:
        quiet, loud = TaskStats({"svc": cascade}, recent=3), TaskStats({"svc": cascade}, recent=3, texts=True)
        for q in ["easy 1", "hard 2", "mid 3", "hard 4", "easy 5"]:
            r = await cascade.generate(q, task="rc")
            for s in (quiet, loud):
                s.record(cascade, r, request_id=q, served="svc/rc")
        recent = _entry(quiet.snapshot(), "rc")["recent"]
        assert [d["request_id"] for d in recent] == ["easy 5", "hard 4", "mid 3"]  # newest first, 3 kept
        hard = recent[1]
        assert hard["escalated"] and [t["tier"] for t in hard["trace"]] == ["cheap", "mid", "strong"]
        assert [t["decision"] for t in hard["trace"]] == ["escalate", "escalate", "accept"]
        assert all("answers" not in t for d in recent for t in d["trace"])  # model output only with log_prompts
        assert "hard 4 0" not in json.dumps(recent)
        assert _entry(loud.snapshot(), "rc")["recent"][1]["trace"][0]["answers"] == ["hard 4 0", "hard 4 1", "hard 4 2"]


# --------------------------------------------------------------------------- served: auth of the page and its data


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultServer]:
    os.environ.setdefault(KEY_ENV, "fault-dummy-key")
    server = FaultServer(seed=5, latency_s=0.0).start()
    yield server
    server.stop()


def test_dashboard_page_is_static_and_its_data_needs_the_metrics_key(
    upstream: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEMCASCADE_TEST_DASH_KEYS", "sk-dash-1")
    cfg = {"tiers": [tier(upstream, "cheap", "cheap-model"), tier(upstream, "strong", "strong-model", k=1)],
           "scorer": {"name": "lexical"}, "tasks": {"rc": {"drift": DRIFT}}}  # fmt: skip
    app = create_app({"svc": observed_cascade(cfg)}, ServeConfig(api_keys_env="SEMCASCADE_TEST_DASH_KEYS"))
    with ServeThread(app) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="sk-dash-1", max_retries=0)
        client.chat.completions.create(model="svc/rc", messages=[{"role": "user", "content": "Capital?"}])
        page = httpx.get(srv.url + "/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "unsafe-inline" not in csp
        assert page.content == PAGE  # the same static bytes for everyone: no figure without the key
        assert httpx.get(srv.url + "/dashboard/data.json").status_code == 401
        bad = httpx.get(srv.url + "/dashboard/data.json", headers={"authorization": "Bearer sk-wrong"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
        auth = {"authorization": "Bearer sk-dash-1"}
        data = httpx.get(srv.url + "/dashboard/data.json", headers=auth).json()
        text = httpx.get(srv.url + "/metrics", headers=auth).text
    e = _entry(data, "rc")
    assert e["requests"] == 1 == metric(text, "semcascade_task_requests_total", model="svc", task="rc")
    assert e["cost"] > 0 and e["cost"] == pytest.approx(
        metric(text, "semcascade_task_cost_total", model="svc", task="rc")
    )
