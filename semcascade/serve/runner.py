"""``semcascade serve``: build the served cascades, bind, print how to call it, run uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from semcascade.cascade import Cascade
from semcascade.config import ServeConfig, load_config
from semcascade.errors import ServeError

__all__ = ["banner", "model_name", "serve"]


def model_name(path: str | None, serve: ServeConfig) -> str:
    """The name a config is served under: ``serve.model_name``, else the file's stem ('semcascade' by default)."""
    if serve.model_name:
        return serve.model_name
    return "semcascade" if path is None else Path(path).stem


def banner(base: str, model: str, *, auth: bool, env: str) -> str:
    header = f' -H "Authorization: Bearer ${{{env}%%,*}}"' if auth else ""
    api_key = f"os.environ[{env!r}].split(',')[0]" if auth else '"none"'
    return "\n".join(
        [
            f"semcascade serve: {base}/v1  (model {model!r}; GET {base}/v1/models lists all)",
            "",
            "  curl:",
            f"    curl -s {base}/v1/chat/completions -H 'Content-Type: application/json'{header} \\",
            f'      -d \'{{"model": "{model}", "messages": [{{"role": "user", "content": "Capital of France?"}}]}}\'',
            "",
            "  openai (Python):",
            "    import os, openai",
            f'    client = openai.OpenAI(base_url="{base}/v1", api_key={api_key})',
            f'    r = client.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "Hi"}}])',
            "",
            f"  metrics: {base}/metrics   health: {base}/health   ready: {base}/ready",
            f"  dashboard: {base}/dashboard   (escalations, drift and cost per task)",
            "  Ctrl-C / SIGTERM drains in-flight requests and stops (the local server too)",
        ]
    )


def serve(
    configs: Sequence[str | None],
    *,
    host: str | None = None,
    port: int | None = None,
    no_auth: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Serve ``configs`` (``None`` = the embedded default) until stopped; returns the exit status."""
    import uvicorn

    from semcascade.serve.app import ServeState, create_app, observed_cascade

    paths = list(configs) or [None]
    loaded = [load_config(p) for p in paths]
    settings = loaded[0].serve
    if no_auth:
        settings = settings.model_copy(update={"auth": "off"})
    bind_host = host or settings.host
    bind_port = settings.port if port is None else port
    names = [model_name(p, c.serve) for p, c in zip(paths, loaded, strict=True)]
    if len(set(names)) != len(names):
        raise ServeError(f"two configs are served as the same model ({', '.join(names)}); set serve.model_name")
    cascades: dict[str, Cascade] = {}
    try:
        state = ServeState({n: observed_cascade(c) for n, c in zip(names, loaded, strict=True)}, settings,
                           host=bind_host)  # fmt: skip
        cascades = {m.name: m.cascade for m in state.models.values()}
        print(f"semcascade serve: loading {', '.join(names)} (local models start here when the config has them) ...",
              file=out, flush=True)  # fmt: skip
        for served in state.models.values():  # the local server, clients and scorers, before the port opens
            (served.cascade.for_task(served.task) if served.task else served.cascade).prepare()
        sock = socket.socket(socket.AF_INET6 if ":" in bind_host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted connections inherit it: without it a response's header and body writes wait out the
        # client's delayed ACK (~40 ms a request at concurrency 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((bind_host, bind_port))
        except OSError as exc:
            raise ServeError(f"cannot listen on {bind_host}:{bind_port}: {exc.strerror or exc}") from None
        actual = sock.getsockname()[1]
        shown = f"[{bind_host}]" if ":" in bind_host else bind_host
        print(banner(f"http://{shown}:{actual}", names[0], auth=state.auth.enabled, env=settings.api_keys_env),
              file=out, flush=True)  # fmt: skip
        logging.basicConfig(level=os.environ.get("SEMCASCADE_LOG_LEVEL", "INFO"), format="%(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is ours, not one per call
        config = uvicorn.Config(
            create_app(state),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
            lifespan="on",
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for cascade in {id(c): c for c in cascades.values()}.values():
            cascade.close()  # idempotent: the lifespan's shutdown closed them already
    return 0
