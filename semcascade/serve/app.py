"""The ASGI app: OpenAI's chat-completions API over one or more cascades (Starlette, run by uvicorn).

Routes: ``POST /v1/chat/completions`` (JSON or server-sent events), ``GET /v1/models``,
``GET /health`` (alive), ``GET /ready`` (models and scorers loaded), ``GET /metrics`` (Prometheus),
``GET /openapi.json`` (the documented request schema and status codes), ``GET /dashboard`` (a page of the
per-task escalation figures) and ``GET /dashboard/data.json`` (its data, the per-task series of /metrics).

    app = create_app({"semcascade": Cascade("configs/local.yaml")}, ServeConfig(auth="off"))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from semcascade.cascade import Cascade
from semcascade.config import ServeConfig
from semcascade.errors import DeadlineExceededError, RequestRejectedError, ServeError
from semcascade.result import CascadeResult
from semcascade.serve.auth import KeyCheck
from semcascade.serve.dashboard import CSP, PAGE
from semcascade.serve.errors import error_body, from_exception, provider_error_kind
from semcascade.serve.limits import Admission
from semcascade.serve.metrics import ServeMetrics
from semcascade.serve.observe import ObservedProvider, request_errors
from semcascade.serve.schema import ChatRequest, parse_chat_request, request_schema
from semcascade.serve.streaming import DONE, WhitespaceTrim, chunk, sse
from semcascade.serve.taskstats import TaskCollector, TaskStats

__all__ = ["DEADLINE_HEADER", "ServeState", "ServedModel", "create_app", "observed_cascade"]

log = logging.getLogger("semcascade.serve")

#: request header: this request's deadline in seconds (the whole cascade call)
DEADLINE_HEADER = "x-semcascade-deadline"
_JSON = "application/json"
_UNKNOWN = "_unknown"
_PAGE_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff", "cache-control": "no-store",
                 "referrer-policy": "no-referrer"}  # fmt: skip


@dataclass(frozen=True)
class ServedModel:
    """A model name clients ask for: a cascade, or one task of a cascade's config."""

    name: str
    cascade: Cascade
    task: str | None = None


def observed_cascade(config: Any, **kwargs: Any) -> Cascade:
    """A cascade whose provider calls go through :class:`ObservedProvider` (the serve metrics and status codes
    need each request's provider failures by type)."""
    from semcascade.config import load_config
    from semcascade.providers.stack import TierProviders

    cfg = load_config(config)
    return Cascade(cfg, provider=ObservedProvider(TierProviders(cfg), provider_error_kind), **kwargs)


class ServeState:
    """What the routes share: served models, auth, admission, metrics."""

    def __init__(self, models: Mapping[str, Cascade], serve: ServeConfig, *, host: str | None = None) -> None:
        if not models:
            raise ServeError("nothing to serve: give at least one cascade")
        self.serve = serve
        self.auth = KeyCheck(serve, host or serve.host)
        self.models: dict[str, ServedModel] = {}
        for name, cascade in models.items():
            self._add(ServedModel(name, cascade))
            for task in cascade.config.task_names:
                self._add(ServedModel(f"{name}/{task}", cascade, task))
        self.cascades = list(models.values())
        self.metrics = ServeMetrics()
        #: per-task figures (escalations, drift, cost): /metrics and /dashboard/data.json render them
        self.tasks = TaskStats(models, texts=serve.log_prompts)
        self.metrics.registry.register(TaskCollector(self.tasks))
        self.admission = Admission(serve.max_in_flight, serve.max_queue, serve.retry_after_s)
        self.ready = False
        self.leftover_tasks: list[str] = []
        self.created = int(time.time())
        self.tracer: Any = None
        if serve.otel:
            from semcascade.serve.otel import RequestTracer

            self.tracer = RequestTracer()
        self._models_body = json.dumps(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": self.created, "owned_by": "semcascade"} for m in self.models
                ],
            }
        ).encode()

    def _add(self, model: ServedModel) -> None:
        if model.name in self.models:
            raise ServeError(f"model name {model.name!r} is served twice; give each config its own serve.model_name")
        self.models[model.name] = model

    async def start(self) -> None:
        """Set every cascade up (local server, clients, scorer): /ready answers 200 afterwards."""
        for served in self.models.values():
            cascade = served.cascade.for_task(served.task) if served.task else served.cascade
            await asyncio.to_thread(_set_up, cascade)
        self.ready = True

    async def stop(self) -> None:
        self.admission.draining = True
        self.ready = False
        for cascade in self.cascades:
            await cascade.aclose()
        current = asyncio.current_task()
        #: semcascade tasks still pending at shutdown (none, unless something leaked)
        self.leftover_tasks = [repr(t) for t in asyncio.all_tasks() if t is not current and not t.done() and _ours(t)]


# --------------------------------------------------------------------------- helpers


def _set_up(cascade: Cascade) -> None:
    cascade.prepare()  # the clients, the scorer, the local server and its models


def _ours(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and "semcascade" in code.co_filename


def _error_response(err: RequestRejectedError, rid: str) -> Response:
    headers = {"x-semcascade-request-id": rid}
    if err.retry_after is not None:
        headers["retry-after"] = str(err.retry_after)
    return Response(error_body(err), status_code=err.status, media_type=_JSON, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    too_big = RequestRejectedError(
        413, f"the request body is larger than {limit} bytes", code="request_too_large", param=None
    )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_big
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise too_big
        parts.append(part)
    return b"".join(parts)


def _deadline(request: Request, default: float | None) -> float | None:
    raw = request.headers.get(DEADLINE_HEADER)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise RequestRejectedError(
            400, f"{DEADLINE_HEADER} must be a positive number of seconds, got {raw!r}", code="invalid_value",
            param=DEADLINE_HEADER,
        )  # fmt: skip
    return value


def _finish_reason(result: CascadeResult) -> str:
    if result.abstained:
        return "content_filter"
    if not result.trace:  # an answer-cache hit: no tier ran
        return "stop"
    t = result.trace[result.tier_index]
    s = t.samples[t.representative] if t.representative is not None else None
    return s.finish_reason if s is not None and s.finish_reason in ("stop", "length") else "stop"


def decision(result: CascadeResult, rid: str, *, trace: bool) -> dict[str, Any]:
    """The ``semcascade`` object of a response: the decision, and with ``trace`` every tier's record."""
    out: dict[str, Any] = {
        "request_id": rid,
        "tier": result.tier,
        "tier_index": result.tier_index,
        "escalated": result.escalated,
        "agreement": result.agreement,
        "cost": result.cost,
        "abstained": result.abstained,
        "tiers_tried": result.tiers_tried,
        "answer_cache_hit": result.answer_cache_hit,
    }
    if result.answer_cache_hit:
        out["cached_cost"] = result.cached_cost
    if result.stop_reason:
        out["stop_reason"] = result.stop_reason
    if trace:
        out["trace"] = [t.model_dump(mode="json") for t in result.trace]
    return out


def decision_headers(result: CascadeResult, rid: str) -> dict[str, str]:
    return {
        "x-semcascade-request-id": rid,
        "x-semcascade-tier": result.tier,
        "x-semcascade-tier-index": str(result.tier_index),
        "x-semcascade-escalated": "true" if result.escalated else "false",
        "x-semcascade-agreement": "none" if result.agreement is None else f"{result.agreement:.4f}",
        "x-semcascade-cost": f"{result.cost:.6g}",
        "x-semcascade-answer-cache": "hit" if result.answer_cache_hit else "miss",
        "x-semcascade-speculated": result.speculated or "none",
    }


def _usage(result: CascadeResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone (the body was read already: the next message is the disconnect)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


# --------------------------------------------------------------------------- one call


class CascadeCall:
    """The ASGI response of one admitted chat request: runs the cascade, answers in JSON or SSE.

    The cascade runs in its own task next to a watcher of the client's connection: a disconnect
    cancels the task, and with it every provider call in flight (none starts afterwards).
    """

    def __init__(self, state: ServeState, served: ServedModel, req: ChatRequest, rid: str, deadline: float | None,
                 started: float) -> None:  # fmt: skip
        self.state = state
        self.served = served
        self.req = req
        self.rid = rid
        self.deadline = deadline
        self.started = started
        self.created = int(time.time())
        self.stream = bool(req.stream)
        self._send: Send | None = None
        self._began = False
        self._trim = WhitespaceTrim()
        self.ttft: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._send = send
        errors = request_errors()
        work = asyncio.ensure_future(self._run())
        watch = asyncio.ensure_future(_disconnected(receive))
        status = "200"
        result: CascadeResult | None = None
        failure: BaseException | None = None
        try:
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():  # the client went away: cancel the cascade (and its provider calls)
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work
                status = "499"
                if work.cancelled() or work.exception() is None:
                    return
            failure = work.exception()
            if failure is None:
                result = work.result()
                await self._answer(result)
            elif status != "499":
                err = from_exception(failure, provider_errors=errors, retry_after=self.state.serve.retry_after_s)
                status = str(err.status) if not self._began else "200"  # the status actually sent
                if self._began:
                    self.state.metrics.stream_errors.labels(self.served.name, err.code).inc()
                if err.status == 500:
                    log.error("request %s failed", self.rid, exc_info=failure)
                await self._fail(err)
        except OSError:  # the client went away while we were sending
            status = "499"
        finally:
            watch.cancel()
            self._account(status, result, failure, errors)

    async def _run(self) -> CascadeResult:
        st = self.state
        async with st.admission.slot():
            gauge = st.metrics.in_flight.labels(self.served.name)
            gauge.inc()
            try:
                cascade = self.served.cascade
                deadline = self.deadline
                if deadline is not None:  # the wait for a slot counts against the request's deadline
                    deadline -= time.perf_counter() - self.started
                    if deadline <= 0:
                        raise DeadlineExceededError("the request's deadline passed while it waited for a slot", [])
                return await cascade.generate(
                    [m.model_dump(exclude_none=True) for m in self.req.messages],
                    deadline_s=deadline,
                    task=self.served.task,
                    overrides=self.req.overrides() or None,
                    on_text=self._on_text if self.stream else None,
                )
            finally:
                gauge.dec()

    # ------------------------------------------------------------------ sending

    async def _start(self, status: int, headers: Mapping[str, str], content_type: str) -> None:
        assert self._send is not None
        raw = [(b"content-type", content_type.encode())] + [(k.encode(), v.encode()) for k, v in headers.items()]
        if content_type == "text/event-stream":
            raw += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        await self._send({"type": "http.response.start", "status": status, "headers": raw})
        self._began = True

    async def _body(self, data: bytes, *, more: bool) -> None:
        assert self._send is not None
        message: Message = {"type": "http.response.body", "body": data, "more_body": more}
        await self._send(message)

    async def _content(self, text: str) -> None:
        """One content chunk of the stream (the first one starts the response)."""
        first = not self._began
        if first:
            await self._start(200, {"x-semcascade-request-id": self.rid}, "text/event-stream")
            self.ttft = time.perf_counter() - self.started
        payload = chunk(self.rid, self.created, self.served.name, content=text, role=first)
        await self._body(sse(payload), more=True)

    async def _on_text(self, delta: str) -> None:
        text = self._trim.feed(delta)
        if text:
            await self._content(text)

    async def _answer(self, result: CascadeResult) -> None:
        meta = decision(result, self.rid, trace=self.req.wants_trace)
        if not self.stream:
            body = {
                "id": self.rid,
                "object": "chat.completion",
                "created": self.created,
                "model": self.served.name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": result.text},
                        "finish_reason": _finish_reason(result),
                    }
                ],
                "usage": _usage(result),
                "semcascade": meta,
            }
            await self._start(200, decision_headers(result, self.rid), _JSON)
            await self._body(json.dumps(body).encode(), more=False)
            return
        sent = self._trim.sent
        if not sent:  # decided, nothing streamed live: the chosen answer at once
            await self._content(result.text)
        elif result.text != sent and result.text.startswith(sent):
            await self._content(result.text[len(sent) :])
        tail = chunk(
            self.rid, self.created, self.served.name, finish=_finish_reason(result), extra={"semcascade": meta}
        )
        out = sse(tail)
        if self.req.include_usage:
            usage = {"id": self.rid, "object": "chat.completion.chunk", "created": self.created,
                     "model": self.served.name, "choices": [], "usage": _usage(result)}  # fmt: skip
            out += sse(usage)
        await self._body(out + DONE, more=False)

    async def _fail(self, err: RequestRejectedError) -> None:
        if not self._began:
            response = _error_response(err, self.rid)
            assert self._send is not None
            await response({"type": "http"}, _noop_receive, self._send)
            return
        event = {"error": {"message": str(err), "type": err.kind, "param": err.param, "code": err.code}}
        await self._body(sse(event) + DONE, more=False)

    # ------------------------------------------------------------------ accounting

    def _account(
        self, status: str, result: CascadeResult | None, failure: BaseException | None, errors: list[str]
    ) -> None:
        st = self.state
        m = st.metrics
        name = self.served.name
        elapsed = time.perf_counter() - self.started
        m.requests.labels(name, status).inc()
        m.latency.labels(name, "true" if self.stream else "false").observe(elapsed)
        for kind in errors:
            m.provider_errors.labels(name, kind).inc()
        if result is not None:
            m.result(name, result)
            st.tasks.record(self.served.cascade, result, request_id=self.rid, served=name)
            if self.ttft is not None:
                m.ttft.labels(name, "true" if result.escalated else "false").observe(self.ttft)
        elif failure is not None and hasattr(failure, "trace"):
            m.tiers(name, failure.trace)
        if st.tracer is not None:
            st.tracer.record(self.rid, name, self.stream, status, self.started, elapsed, result, failure)
        if not log.isEnabledFor(logging.INFO):
            return
        line: dict[str, Any] = {
            "event": "request",
            "request_id": self.rid,
            "model": name,
            "status": int(status),
            "stream": self.stream,
            "latency_ms": round(elapsed * 1000, 3),
        }
        if self.ttft is not None:
            line["ttft_ms"] = round(self.ttft * 1000, 3)
        if result is not None:
            line.update(tier=result.tier, escalated=result.escalated, agreement=result.agreement, cost=result.cost)
        if failure is not None and status not in ("200", "499"):
            line["error"] = type(failure).__name__
        if errors:
            line["provider_errors"] = len(errors)
        if st.serve.log_prompts:
            line["messages"] = [m.model_dump(exclude_none=True) for m in self.req.messages]
        log.info(json.dumps(line, default=str))


async def _noop_receive() -> Message:  # pragma: no cover - a Response never reads
    return {"type": "http.disconnect"}


# --------------------------------------------------------------------------- routes


def create_app(models: Mapping[str, Cascade] | ServeState, serve: ServeConfig | None = None,
               *, host: str | None = None) -> Starlette:  # fmt: skip
    """The Starlette app serving ``models`` (name -> cascade; each config task also as ``NAME/TASK``)."""
    state = models if isinstance(models, ServeState) else ServeState(models, serve or ServeConfig(), host=host)
    limit = state.serve.max_body_bytes
    default_deadline = state.serve.request_timeout_s

    def rejected(err: RequestRejectedError, rid: str) -> Response:
        state.metrics.rejected.labels(err.code).inc()
        return _error_response(err, rid)

    async def chat(request: Request) -> Response | CascadeCall:
        started = time.perf_counter()
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        try:
            state.auth.check(request.headers.get("authorization", "").encode() or None)
            req = parse_chat_request(await _read_body(request, limit))
            served = state.models.get(req.model)
            if served is None:
                raise RequestRejectedError(
                    404,
                    f"The model {req.model!r} does not exist; GET /v1/models lists the served ones: "
                    + ", ".join(state.models),
                    code="model_not_found",
                    param="model",
                )
            deadline = _deadline(request, default_deadline)
        except RequestRejectedError as err:
            state.metrics.requests.labels(_UNKNOWN, str(err.status)).inc()
            return rejected(err, rid)
        return CascadeCall(state, served, req, rid, deadline, started)

    async def list_models(request: Request) -> Response:
        try:
            state.auth.check(request.headers.get("authorization", "").encode() or None)
        except RequestRejectedError as err:
            return rejected(err, "-")
        return Response(state._models_body, media_type=_JSON)

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=_JSON)

    async def ready(request: Request) -> Response:
        if state.ready and not state.admission.draining:
            return Response(b'{"status":"ready"}', media_type=_JSON)
        return Response(b'{"status":"starting"}', status_code=503, media_type=_JSON, headers={"retry-after": "1"})

    async def metrics(request: Request) -> Response:
        try:
            state.auth.check(request.headers.get("authorization", "").encode() or None)
        except RequestRejectedError as err:
            return rejected(err, "-")
        state.metrics.state_health(c.state.health.snapshot() for c in state.cascades)
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def dashboard(request: Request) -> Response:
        return Response(PAGE, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    async def dashboard_data(request: Request) -> Response:
        try:
            state.auth.check(request.headers.get("authorization", "").encode() or None)
        except RequestRejectedError as err:
            return rejected(err, "-")
        body = json.dumps(state.tasks.snapshot()).encode()
        return Response(body, media_type=_JSON, headers={"cache-control": "no-store"})

    async def openapi(request: Request) -> Response:
        return Response(json.dumps(openapi_spec()).encode(), media_type=_JSON)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        detail = exc.detail if isinstance(exc, HTTPException) else "internal server error"
        err = RequestRejectedError(status, f"{request.method} {request.url.path}: {detail}", code=code)
        return _error_response(err, "-")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/dashboard", dashboard, methods=["GET"]),
            Route("/dashboard/data.json", dashboard_data, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.serve = state
    return app


#: the status codes the chat endpoint answers with (the OpenAPI document lists them)
CHAT_STATUSES = {
    "200": "the answer (JSON, or server-sent events with stream: true)",
    "400": "malformed JSON, a wrong schema, an unsupported or unknown field, a prompt too long",
    "401": "no or a wrong API key",
    "404": "unknown model",
    "413": "request body too large",
    "429": "the run budget is spent",
    "502": "every tier failed (provider errors or garbage)",
    "503": "saturated, shutting down, providers or the shared state store unavailable (Retry-After)",
    "504": "the deadline passed, or the providers timed out",
}


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the chat endpoint (request schema, documented status codes)."""
    schema = request_schema()
    defs = schema.pop("$defs", {})
    error = {"$ref": "#/components/schemas/Error"}
    responses: dict[str, Any] = {
        code: {"description": text, "content": {_JSON: {"schema": error if code != "200" else {"type": "object"}}}}
        for code, text in CHAT_STATUSES.items()
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "semcascade serve", "version": "1"},
        "paths": {
            "/v1/chat/completions": {
                "post": {
                    "operationId": "createChatCompletion",
                    "requestBody": {
                        "required": True,
                        "content": {_JSON: {"schema": {"$ref": "#/components/schemas/ChatRequest"}}},
                    },
                    "responses": responses,
                }
            }
        },
        "components": {
            "schemas": {
                **defs,
                "ChatRequest": schema,
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "message": {"type": "string"},
                                "type": {"type": "string"},
                                "param": {},
                                "code": {"type": "string"},
                            },
                            "required": ["message", "type", "code"],
                        }
                    },
                    "required": ["error"],
                },
            }
        },
    }
