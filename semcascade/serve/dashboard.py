"""``GET /dashboard``: one self-contained HTML page (inline CSS, JS and SVG; no build step, nothing fetched from
elsewhere) that polls ``GET /dashboard/data.json``, the :class:`~semcascade.serve.taskstats.TaskStats` snapshot
the per-task series of ``/metrics`` are read from.

Auth: the page itself holds no data and is served without a key (like ``/health``); ``data.json`` follows
the rule of ``/metrics`` (a bearer key when auth is on). With auth on, the page asks for the key once and
keeps it in the tab's ``sessionStorage``, sending it as ``Authorization: Bearer``; a key never goes into a
URL (it would land in history, logs and ``Referer``). The page's Content-Security-Policy allows its own
inline script and style (by hash) and requests to this server only; model output is set as text, never
parsed as HTML.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["CSP", "PAGE"]

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 18px;display:flex;gap:18px;align-items:baseline}
header h1{font-size:17px;margin:0}#status{opacity:.8;font-size:12px}
main{padding:14px 18px;display:grid;gap:14px;grid-template-columns:repeat(auto-fill,minmax(610px,1fr))}
section{background:#fff;border:1px solid #d8dce3;border-radius:6px;padding:10px 14px}
h2{font-size:15px;margin:0 0 6px}h2 small{font-weight:normal;color:#667}
dl{display:grid;grid-template-columns:repeat(4,auto);gap:2px 12px;margin:4px 0 8px;font-size:13px}
dt{color:#667}dd{margin:0;font-variant-numeric:tabular-nums}
.alarm{color:#b3261e;font-weight:600}.charts{display:flex;gap:10px;flex-wrap:wrap}
figure{margin:0}figcaption{font-size:12px;color:#667;width:0;min-width:100%}svg text{font-size:10px;fill:#556}
table{border-collapse:collapse;width:100%;font-size:12px}td,th{text-align:left;padding:2px 6px;
border-bottom:1px solid #eee;vertical-align:top;white-space:nowrap}
td:last-child{white-space:normal}details summary{cursor:pointer}
#key{display:none;padding:18px}#key.show{display:block}
"""

_SCRIPT = r"""
"use strict";
const DATA = location.pathname.replace(/\/+$/, "") + "/data.json";
const SVG = "http://www.w3.org/2000/svg";
const root = document.getElementById("tasks"), status = document.getElementById("status");
let polls = 0;
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of kids) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
function sv(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
const num = (v, d) => v === null || v === undefined ? "n/a" : Number(v).toFixed(d);
const money = v => v === null || v === undefined ? "n/a" : (v === 0 ? "0" : Number(v).toExponential(2));
function fig(metric, value, shown, extra) {
  const a = Object.assign({"data-metric": metric, "data-value": value === null ? "" : String(value)}, extra || {});
  return el("dd", a, shown);
}
function rateChart(t) {
  const W = 230, H = 120, L = 28, B = 16, n = t.series.length;
  const s = sv("svg", {width: W, height: H, "data-chart": "rate"});
  const x0 = n ? t.series[0][0] : 0, x1 = n ? Math.max(t.series[n - 1][0], x0 + 1) : 1;
  const X = v => L + (W - L - 6) * (v - x0) / (x1 - x0), Y = r => (H - B) - (H - B - 6) * r;
  if (t.band) {
    s.append(sv("rect", {x: L, width: W - L - 6, y: Y(t.band[1]), height: Y(t.band[0]) - Y(t.band[1]),
                         fill: "#cfe3ff", "data-band": t.band.join(" ")}));
    s.append(sv("line", {x1: L, x2: W - 6, y1: Y(t.baseline_rate), y2: Y(t.baseline_rate),
                         stroke: "#3a6fc4", "stroke-dasharray": "4 3"}));
  }
  for (const r of [0, 0.5, 1]) {
    s.append(sv("line", {x1: L, x2: W - 6, y1: Y(r), y2: Y(r), stroke: "#e3e6eb"}));
    s.append(sv("text", {x: 2, y: Y(r) + 3}, r.toFixed(1)));
  }
  s.append(sv("text", {x: L, y: H - 3}, n ? "request " + x0 : "no requests yet"));
  if (n) s.append(sv("text", {x: W - 62, y: H - 3}, "request " + t.series[n - 1][0]));
  const pts = t.series.map(p => X(p[0]).toFixed(1) + "," + Y(p[2]).toFixed(1)).join(" ");
  if (n) s.append(sv("polyline", {points: pts, fill: "none", stroke: "#c2410c", "stroke-width": 2,
                                  "data-points": n}));
  return el("figure", {}, s, el("figcaption", {}, "escalation rate, last " + t.window + " requests" +
    (t.band ? " (band: baseline ± drift shift)" : "")));
}
function costChart(t) {
  const W = 130, H = 120, top = Math.max(t.cost, t.strong_only_cost_estimate || 0) || 1;
  const s = sv("svg", {width: W, height: H, "data-chart": "cost"});
  const bar = (i, v, color, label) => {
    const h = v === null ? 0 : (H - 30) * v / top;
    s.append(sv("rect", {x: 10 + i * 60, y: H - 16 - h, width: 40, height: h, fill: color}));
    s.append(sv("text", {x: 10 + i * 60, y: H - 4}, label));
    s.append(sv("text", {x: 10 + i * 60, y: H - 20 - h}, money(v)));
  };
  bar(0, t.cost, "#0f766e", "cascade");
  bar(1, t.strong_only_cost_estimate, "#9ca3af", "strong");
  return el("figure", {}, s, el("figcaption", {}, "cost vs strong tier alone (est.)"));
}
function scoreChart(t) {
  const W = 190, H = 120, c = t.scores.counts, base = t.scores.baseline_counts, k = c.length;
  const total = c.reduce((a, b) => a + b, 0), btotal = base.reduce((a, b) => a + b, 0);
  const top = Math.max(1, ...c, ...(btotal ? base.map(b => b * total / btotal) : [0]));
  const s = sv("svg", {width: W, height: H, "data-chart": "scores"}), bw = (W - 10) / k;
  c.forEach((v, i) => {
    const h = (H - 30) * v / top, le = t.scores.buckets[i];
    s.append(sv("rect", {x: 5 + i * bw, y: H - 16 - h, width: bw - 2, height: h, fill: "#6d28d9",
                         "data-bucket": le === null ? "+Inf" : String(le), "data-count": v}));
    if (btotal) {
      const bh = (H - 30) * base[i] * total / btotal / top;
      s.append(sv("rect", {x: 5 + i * bw, y: H - 16 - bh, width: bw - 2, height: bh, fill: "none",
                           stroke: "#f59e0b", "stroke-width": 1.5}));
    }
    if (i % 2 === 0) s.append(sv("text", {x: 5 + i * bw, y: H - 4}, le === null ? "inf" : "≤" + le));
  });
  return el("figure", {}, s, el("figcaption", {}, "first-tier scores" + (btotal ? " (outline: calibration)" : "")));
}
function recentTable(t) {
  const rows = t.recent.map(d => {
    const trace = el("details", {}, el("summary", {}, d.trace.map(x => x.tier + ":" + x.decision).join(" → ")));
    for (const x of d.trace) {
      trace.append(el("div", {}, x.tier + " " + x.decision + " (" + x.reason + "); score " + num(x.score, 3) +
        " / threshold " + x.threshold + "; k=" + x.k + "; cost " + money(x.cost) +
        (x.answers ? "; answers " + JSON.stringify(x.answers) : "")));
    }
    return el("tr", {"data-decision": d.request_id},
      el("td", {}, new Date(d.time * 1000).toISOString().slice(11, 19)), el("td", {}, d.served),
      el("td", {}, d.tier + (d.escalated ? " ↑" : "")), el("td", {}, money(d.cost)),
      el("td", {class: d.alarms.length ? "alarm" : ""}, d.alarms.join(", ")), el("td", {}, trace));
  });
  return el("table", {"data-recent": t.recent.length},
    el("tr", {}, ...["time", "model", "tier", "cost", "alarm", "trace"].map(h => el("th", {}, h))), ...rows);
}
function task(t) {
  const alarms = Object.values(t.alarms).reduce((a, b) => a + b, 0);
  const dl = el("dl", {},
    el("dt", {}, "requests"), fig("requests", t.requests, t.requests),
    el("dt", {}, "escalation rate"), fig("escalation_rate", t.escalation_rate, num(t.escalation_rate, 3)),
    el("dt", {}, "baseline"), fig("baseline_rate", t.baseline_rate, num(t.baseline_rate, 3) +
      (t.band ? " [" + num(t.band[0], 2) + ", " + num(t.band[1], 2) + "]" : "")),
    el("dt", {}, "cost"), fig("cost", t.cost, money(t.cost)),
    el("dt", {}, "strong-only (est.)"), fig("strong_only_cost_estimate", t.strong_only_cost_estimate,
      money(t.strong_only_cost_estimate)),
    el("dt", {}, "saving"), fig("saving", t.strong_only_cost_estimate ? 1 - t.cost / t.strong_only_cost_estimate : null,
      t.strong_only_cost_estimate ? num(100 * (1 - t.cost / t.strong_only_cost_estimate), 1) + "%" : "n/a"));
  for (const [tier, n] of Object.entries(t.escalations)) {
    dl.append(el("dt", {}, "reached " + tier), fig("escalations", n, n, {"data-tier": tier}));
  }
  for (const [kind, n] of Object.entries(t.alarms)) {
    dl.append(el("dt", {}, "alarms " + kind.replace("_", " ")),
      fig("alarms", n, n, {"data-kind": kind, class: n ? "alarm" : ""}));
  }
  if (t.stream && t.stream.shared) {
    dl.append(el("dt", {}, "drift stream (all replicas)"), fig("stream-requests", t.stream.requests,
      t.stream.requests + " requests, " + num(100 * t.stream.escalation_rate, 1) + "% escalated"));
  }
  return el("section", {"data-model": t.model, "data-task": t.task},
    el("h2", {}, t.model + " / " + t.task + " ", el("small", {}, t.tiers.join(" → ") +
      (t.band ? "" : " · no drift baseline") + (alarms ? " · " + alarms + " drift alarm(s)" : ""))),
    dl, el("div", {class: "charts"}, rateChart(t), costChart(t), scoreChart(t)), recentTable(t));
}
async function poll() {
  const key = sessionStorage.getItem("semcascade-key");
  try {
    const r = await fetch(DATA, {cache: "no-store", headers: key ? {Authorization: "Bearer " + key} : {}});
    if (r.status === 401) {
      document.getElementById("key").className = "show";
      document.body.dataset.state = "needs-key";
      status.textContent = key ? "the key was refused" : "this server needs an API key";
      return;
    }
    const data = await r.json();
    root.replaceChildren(...data.tasks.map(task));
    polls += 1;
    document.body.dataset.state = "loaded";
    document.body.dataset.polls = polls;
    status.textContent = "updated " + new Date(data.time * 1000).toISOString().slice(11, 19) + " UTC";
  } catch (e) {
    status.textContent = "cannot reach the server: " + e;
  }
  setTimeout(poll, 2000);
}
document.getElementById("key-form").addEventListener("submit", ev => {
  ev.preventDefault();
  sessionStorage.setItem("semcascade-key", document.getElementById("key-input").value);
  document.getElementById("key").className = "";
  poll();
});
poll();
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


#: the page's Content-Security-Policy: its own inline style and script, requests to this server only
CSP = (
    f"default-src 'none'; script-src {_sha256(_SCRIPT)}; style-src {_sha256(_STYLE)}; connect-src 'self'; "
    "img-src 'none'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>semcascade serve: escalation drift</title><style>{_STYLE}</style></head>
<body data-state="loading"><header><h1>semcascade · escalation drift per task</h1><span id="status">loading</span>
</header><div id="key"><form id="key-form">API key (kept in this tab only, sent as a bearer header):
<input id="key-input" type="password" autocomplete="off"> <button>Use</button></form></div>
<main id="tasks"></main><script>{_SCRIPT}</script></body></html>
""".encode()
