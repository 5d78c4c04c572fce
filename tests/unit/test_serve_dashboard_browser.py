"""The dashboard in a real headless browser (Debian ``chromium``): a real ``semcascade serve`` app with tasks and
drift baselines, requests through the ``openai`` client, then the rendered page's figures equal ``/metrics``.

``SEMCASCADE_DASHBOARD_SCREENSHOT=docs/dashboard.png`` also copies the screenshot there (the README's picture).
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from serve_fixtures import DRAFTS, KEY_ENV, metric, tier

from semcascade.config import ServeConfig
from semcascade.serve.app import create_app, observed_cascade
from semcascade.serve.taskstats import SCORE_BUCKETS
from semcascade.testing import FaultServer
from semcascade.testing.serve_thread import ServeThread

pytestmark = pytest.mark.browser

#: no network, no background services, no profile outside the test's directory
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]  # fmt: skip
SIZE = (1280, 1180)


def answer(model: str, prompt: str, index: int, rng: random.Random) -> str:
    """The cheap tier's samples disagree on a ``hard`` question (it escalates); every other answer is Paris."""
    return DRAFTS[index % len(DRAFTS)] if "cheap" in model and "hard" in prompt else "Paris"


def drift(rate: float) -> dict[str, Any]:
    baseline = {"escalation_rate": rate, "n": 400, "scores": [1.0] * round(20 * (1 - rate)) + [0.0] * round(20 * rate)}
    return {"enabled": True, "baseline": baseline, "shift": 0.2, "window": 20, "false_alarms_per_10k": 1000}


#: task -> questions (1 = hard): support escalates at its baseline rate, billing well above it
TRAFFIC = {"support": [0, 0, 0, 1] * 3, "billing": [1, 1, 1, 0] * 3}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ServeThread, Any]]:
    os.environ.setdefault(KEY_ENV, "fault-dummy-key")
    upstream = FaultServer(seed=11, answer=answer, latency_s=0.0).start()
    strong = tier(upstream, "strong", "strong-model", k=1, input_cost_per_token=1e-5, output_cost_per_token=3e-5)
    cfg = {"tiers": [tier(upstream, "cheap", "cheap-model"), strong], "scorer": {"name": "lexical"},
           "tasks": {"support": {"drift": drift(0.25)}, "billing": {"drift": drift(0.1)}}}  # fmt: skip
    cascade = observed_cascade(cfg)
    srv = ServeThread(create_app({"svc": cascade}, ServeConfig(auth="off"))).start()
    try:
        client = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0)
        for task, hard in TRAFFIC.items():
            for i, h in enumerate(hard):
                q = f"{'hard' if h else 'easy'} question {i}"
                client.chat.completions.create(model=f"svc/{task}", messages=[{"role": "user", "content": q}])
        client.chat.completions.create(model="svc", messages=[{"role": "user", "content": "easy one"}])
        yield srv, cascade
    finally:
        srv.stop()
        upstream.stop()


def chromium(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    cmd = [exe, *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=3000", *args, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


class Figures(HTMLParser):
    """The figures of each task section (``data-*`` attributes) of the rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self._task: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "section" and "data-task" in a:
            self._task = self.tasks[str(a["data-task"])] = {"model": a["data-model"], "buckets": [], "rows": 0}
        t = self._task
        if t is None:
            return
        if "data-metric" in a:
            key = "/".join(str(x) for x in (a["data-metric"], a.get("data-tier"), a.get("data-kind")) if x)
            t[key] = float(a["data-value"]) if a["data-value"] else None
        if "data-bucket" in a:
            t["buckets"].append((a["data-bucket"], int(str(a["data-count"]))))
        if "data-decision" in a:
            t["rows"] += 1
        if "data-points" in a:
            t["points"] = int(str(a["data-points"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._task = None


def test_dashboard_figures_equal_the_metrics(served: tuple[ServeThread, Any], tmp_path: Path) -> None:
    srv, cascade = served
    text = httpx.get(srv.url + "/metrics").text
    dom = Figures()
    dom.feed(chromium(srv.url + "/dashboard", tmp_path, "--dump-dom").stdout)
    assert dom.body.get("data-state") == "loaded" and int(str(dom.body["data-polls"])) >= 1
    assert set(dom.tasks) == {"default", "support", "billing"}
    for task, fig in dom.tasks.items():
        lv = {"model": "svc", "task": task}
        n = metric(text, "semcascade_task_requests_total", **lv)
        assert fig["model"] == "svc" and fig["requests"] == n == len(TRAFFIC.get(task, [0]))
        assert fig["escalations/strong"] == metric(text, "semcascade_task_escalations_total", **lv, tier="strong")
        assert fig["escalations/strong"] == sum(TRAFFIC.get(task, [0]))
        assert fig["escalation_rate"] == pytest.approx(metric(text, "semcascade_task_escalation_rate", **lv))
        assert fig["cost"] == pytest.approx(metric(text, "semcascade_task_cost_total", **lv), rel=1e-9)
        est = metric(text, "semcascade_task_strong_only_cost_estimate", **lv)
        assert fig["strong_only_cost_estimate"] == (pytest.approx(est, rel=1e-9) if est else None)
        assert fig["rows"] == n and fig["points"] == n  # one decision row and one rate point per request
        cum = [metric(text, "semcascade_task_first_tier_score_bucket", **lv, le=repr(le)) for le in SCORE_BUCKETS]
        counts = [int(b - a) for a, b in zip([0.0, *cum], cum, strict=False)]
        assert [c for _, c in fig["buckets"]][: len(counts)] == counts and sum(counts) == n
        if task == "default":
            assert fig["baseline_rate"] is None and not any(k.startswith("alarms") for k in fig)
            continue
        assert fig["baseline_rate"] == metric(text, "semcascade_task_escalation_rate_baseline", **lv)
        monitor = cascade.for_task(task).drift
        for kind in ("escalation_rate", "score_distribution", "certified_loss"):
            shown = fig[f"alarms/{kind}"]
            assert shown == metric(text, "semcascade_task_drift_alarms_total", **lv, kind=kind)
            assert shown == sum(a.kind == kind for a in monitor.alarms)
    assert dom.tasks["billing"]["alarms/escalation_rate"] >= 1  # 75% escalations against a 10% baseline
    assert dom.tasks["support"]["alarms/escalation_rate"] == 0

    shot = tmp_path / "dashboard.png"
    chromium(srv.url + "/dashboard", tmp_path, f"--window-size={SIZE[0]},{SIZE[1]}", f"--screenshot={shot}")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == SIZE
    assert len(png) > 60_000  # a page with one heading at this size is ~8 KB: charts and tables were drawn
    target = os.environ.get("SEMCASCADE_DASHBOARD_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)
