"""Load run against the loopback fault server; writes benchmarks/results/load_test.{json,md}.

    python benchmarks/load_test.py [--calls 2000] [--concurrency 200] [--fault-rate 0.2]

2,000 ``generate()`` calls, 200 at a time, through the real LiteLLMProvider
over HTTP to :class:`semcascade.testing.FaultServer`, with 20% of provider
calls faulty (429 with Retry-After, 500, 503, dropped connections, malformed
JSON, empty choices, wrong n, latency, hangs past the tier timeout). Records
throughput, latency percentiles, outcomes by type, retries, peak in-flight
requests per tier against the configured limit, leaked tasks and sockets.
The invariants are asserted by tests/unit/test_load.py; this script only measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from semcascade.testing import FaultServer
from semcascade.testing.load import load_answer, run_load

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--deadline", type=float, default=20.0, help="per-call deadline_s")
    parser.add_argument("--timeout", type=float, default=2.0, help="per-request tier timeout")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    with FaultServer(seed=args.seed, answer=load_answer, retry_after="1") as server:
        report = asyncio.run(
            run_load(
                server,
                calls=args.calls,
                concurrency=args.concurrency,
                fault_rate=args.fault_rate,
                deadline_s=args.deadline,
                timeout_s=args.timeout,
            )
        )
    data = report.to_json()
    data["environment"] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "command": " ".join(["python", "benchmarks/load_test.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load_test.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    md = (
        "# Load test against the fault-injection server\n\n"
        f"`{data['environment']['command']}` on {data['environment']['platform']} "
        f"({data['environment']['cpus']} CPUs, Python {data['environment']['python']}); "
        "client and server share the process and the CPUs. Retries: 3 attempts, backoff 0.05-0.4 s with "
        "full jitter, Retry-After (1 s) capped at 0.2 s. Tiers: cheap k=3 (native n), strong k=1; lexical scorer.\n\n"
        + report.to_markdown()
    )
    (args.out / "load_test.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
