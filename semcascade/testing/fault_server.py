"""A fault-injecting OpenAI-compatible chat-completions server on loopback.

Real HTTP, so litellm talks to it exactly as to a provider: use the model
string ``openai/<anything>`` with ``api_base=server.base_url``. Each request
gets one *fault* (``"ok"`` = a well-formed answer):

``latency``    answer after ``latency_s`` extra seconds
``429``        HTTP 429 with a ``Retry-After`` header (``retry_after``, seconds or an HTTP date)
``500``        HTTP 500 with an OpenAI-style error body
``503``        HTTP 503 with ``Retry-After``
``hang``       sleep ``hang_s`` (past any sane client timeout), then answer
``malformed``  HTTP 200 whose body is not JSON
``empty``      HTTP 200 with ``"choices": []``
``wrong_n``    HTTP 200 with one choice fewer than ``n`` asked for (at least one fewer, never negative)
``drop``       close the connection without answering
``401``        HTTP 401 (a bad key: a configuration error, never retried)
``quota``      HTTP 429 ``insufficient_quota`` (the account is out of credit: never retried)
``404``        HTTP 404 "model not found" (a configuration error, never retried)
``400``        HTTP 400 "invalid value" for the request's ``temperature`` (``"param": "temperature"``)
``refusal``    HTTP 400 ``content_policy_violation`` (the provider's safety system refused the prompt)
``content_filter``  HTTP 200 whose every choice is empty with ``finish_reason: "content_filter"``
``echo_key``   HTTP 500 whose message quotes the request's ``Authorization`` header (for redaction tests)

Answers carry token logprobs when asked (``logprobs``/``top_logprobs``: one
token a word), and stream as server-sent events with ``stream: true`` (a delta
a word, then the usage chunk with ``stream_options.include_usage``, then
``[DONE]``; ``drop`` then breaks off after the first delta, ``malformed`` sends a
broken event). ``usage="first_choice"`` reports, like llama-server with
``n>1``, one choice's completion tokens only. ``n_support`` is ``"yes"``,
``"ignore"`` (always one choice, like servers without ``n``) or ``"reject"``
(HTTP 400 naming ``n`` when ``n>1``).

Independently of the fault, a request carrying a body parameter that the
OpenAI chat-completions API does not know is answered like OpenAI does: HTTP
400 ``Unrecognized request argument supplied: NAME`` with ``"param": NAME``
(a misspelt ``litellm_params`` entry, say).

The fault of a request is chosen, first match wins, by: an ``X-Fault``
request header (per request; pass it through litellm's ``extra_headers``),
a fault named in the model (``openai/fault-500``), the :meth:`FaultServer.script`
queue, then at random with probability ``fault_rate`` from ``fault_mix``.

The server runs its own event loop in a daemon thread, so it serves sync and
async clients alike and is unaffected by the client's loop being cancelled::

    with FaultServer(fault_rate=0.2, seed=1) as server:
        server.script("429", "ok")
        ...  # litellm.acompletion(model="openai/fault-model", api_base=server.base_url, ...)
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import json
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FAULT_KINDS", "TRANSIENT_FAULTS", "FaultServer", "FaultStats", "LatencyFn", "ProviderLatency", "http_date"]

FAULT_KINDS: tuple[str, ...] = (
    "ok",
    "latency",
    "429",
    "500",
    "503",
    "hang",
    "malformed",
    "empty",
    "wrong_n",
    "drop",
    "401",
    "quota",
    "404",
    "400",
    "refusal",
    "content_filter",
    "echo_key",
)
#: faults a transient-failure mix draws from by default (no hangs, no config-type errors)
TRANSIENT_FAULTS: tuple[str, ...] = ("latency", "429", "500", "503", "malformed", "empty", "wrong_n", "drop")

#: (model, prompt text, choice index, rng) -> the answer text of one choice
AnswerFn = Callable[[str, str, int, random.Random], str]

#: (request body, model, completion tokens of the answer) -> seconds the answer takes (``latency=``)
LatencyFn = Callable[[Mapping[str, Any], str, int], float]


@dataclass(frozen=True)
class ProviderLatency:
    """A provider-like latency: time to first token (lognormal: a heavy tail) plus a time per token.

    The draw is a function of ``seed``, the model and the request (messages, ``seed``, ``temperature``,
    ``n``), not of arrival order, so the same request takes the same time in two runs compared
    (give a tier a ``seed`` for its k samples to be different requests).
    ``per_token_s``/``ttft_median_s`` may differ by model: ``by_model`` maps a model-name suffix to
    ``(ttft_median_s, ttft_sigma, per_token_s)``.
    """

    ttft_median_s: float = 0.4
    ttft_sigma: float = 0.6
    per_token_s: float = 0.02
    by_model: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    seed: int = 0

    def __call__(self, body: Mapping[str, Any], model: str, completion_tokens: int) -> float:
        median, sigma, per_token = self.ttft_median_s, self.ttft_sigma, self.per_token_s
        for suffix, params in self.by_model.items():
            if model.endswith(suffix):
                median, sigma, per_token = params
        fields = [self.seed, model, body.get("messages"), body.get("seed"), body.get("temperature"), body.get("n")]
        rng = random.Random(json.dumps(fields, sort_keys=True, default=str))
        return median * math.exp(sigma * rng.gauss(0.0, 1.0)) + per_token * completion_tokens


#: top-level request parameters of OpenAI's chat-completions API; anything else is a 400
KNOWN_PARAMS = frozenset(
    {
        "model", "messages", "n", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed",
        "logprobs", "top_logprobs", "stream", "stream_options", "presence_penalty", "frequency_penalty",
        "logit_bias", "user", "response_format", "tools", "tool_choice", "parallel_tool_calls", "functions",
        "function_call", "metadata", "store", "reasoning_effort", "modalities", "audio", "prediction",
        "service_tier", "web_search_options",
    }
)  # fmt: skip


def default_answer(model: str, prompt: str, index: int, rng: random.Random) -> str:
    return "Paris"


@dataclass
class FaultStats:
    """What the server saw (read it after the calls finished)."""

    requests: int = 0
    by_fault: collections.Counter[str] = field(default_factory=collections.Counter)
    in_flight: int = 0
    peak_in_flight: int = 0
    choices_served: int = 0
    #: requests in flight and their peak per requested model (a tier's model: its upstream concurrency)
    in_flight_by_model: collections.Counter[str] = field(default_factory=collections.Counter)
    peak_by_model: collections.Counter[str] = field(default_factory=collections.Counter)
    #: requests whose client went away (cancelled) before the answer was sent
    cancelled: int = 0


class FaultServer:
    """An OpenAI-compatible ``/v1/chat/completions`` that misbehaves on purpose.

    ``fault_rate``: probability that a request (without a header/model/script
    fault) gets a fault, drawn from ``fault_mix`` (kind -> weight; default all
    of :data:`TRANSIENT_FAULTS` equally). ``latency_s``: delay of the ``latency`` fault
    and ``base_latency_s`` of every request, give or take up to ``jitter_s`` (uniform, never below 0).
    ``latency``: a :data:`LatencyFn` (e.g. :class:`ProviderLatency`) giving each well-formed,
    non-streamed answer its time from its completion tokens (on top of ``base_latency_s``).
    ``retry_after``: the
    ``Retry-After`` value sent with 429/503 (``None`` = no header).

    A request whose client disconnects before its answer is counted in ``stats.cancelled``; its
    entry in :attr:`requests_seen` gets ``_cancelled_after_s`` (and, under ``latency``,
    ``_planned_s``/``_planned_tokens``: what the answer would have taken and had).
    """

    def __init__(
        self,
        *,
        fault_rate: float = 0.0,
        fault_mix: Mapping[str, float] | None = None,
        latency_s: float = 0.5,
        base_latency_s: float = 0.0,
        jitter_s: float = 0.0,
        latency: LatencyFn | None = None,
        retry_after: str | None = "0",
        hang_s: float = 3600.0,
        answer: AnswerFn = default_answer,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        usage: str = "sum",
        n_support: str = "yes",
    ) -> None:
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within [0, 1], got {fault_rate}")
        mix = dict(fault_mix) if fault_mix is not None else dict.fromkeys(TRANSIENT_FAULTS, 1.0)
        unknown = sorted(set(mix) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; choose from {', '.join(FAULT_KINDS)}")
        if usage not in ("sum", "first_choice") or n_support not in ("yes", "ignore", "reject"):
            raise ValueError("usage is 'sum' or 'first_choice'; n_support is 'yes', 'ignore' or 'reject'")
        self.usage = usage
        self.n_support = n_support
        self.fault_rate = fault_rate
        self.fault_mix = mix
        self.latency_s = latency_s
        self.base_latency_s = base_latency_s
        self.jitter_s = jitter_s
        self._jitter_rng = random.Random(seed + 1)
        self.latency = latency
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.answer = answer
        self.host = host
        self._port = port
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._script: collections.deque[str] = collections.deque()
        self.stats = FaultStats()
        #: the bodies of the requests served (with their fault), newest last; cleared by reset_stats()
        self.requests_seen: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ control

    @property
    def port(self) -> int:
        if self._runner is None:
            raise RuntimeError("the fault server is not running; call start() first")
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``http://127.0.0.1:PORT/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    def script(self, *faults: str) -> None:
        """Queue faults for the next requests (FIFO; ahead of the random ones)."""
        bad = [f for f in faults if f not in FAULT_KINDS]
        if bad:
            raise ValueError(f"unknown fault kinds {bad}; choose from {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._script.extend(faults)

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = FaultStats()
            self._script.clear()
            self.requests_seen.clear()

    def start(self) -> FaultServer:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="semcascade-fault-server", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout=30)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ serving

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/chat/completions", self._handle)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port)
        await site.start()
        self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _pick(self, header: str | None, model: str) -> str:
        if header:
            return header
        tail = model.rsplit("/", 1)[-1]
        if tail.startswith("fault-") and tail.removeprefix("fault-") in FAULT_KINDS:
            return tail.removeprefix("fault-")
        with self._lock:
            if self._script:
                return self._script.popleft()
            if self.fault_rate and self._rng.random() < self.fault_rate:
                kinds, weights = zip(*self.fault_mix.items(), strict=True)
                return str(self._rng.choices(kinds, weights=weights)[0])
        return "ok"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "request body is not a JSON object")
        unknown = sorted(set(body) - KNOWN_PARAMS)
        if unknown:
            with self._lock:
                self.stats.requests += 1
                self.stats.by_fault["unknown_param"] += 1
            return _error(400, f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0])
        model = str(body.get("model", ""))
        if self.n_support == "reject" and int(body.get("n") or 1) > 1:
            with self._lock:
                self.stats.requests += 1
                self.stats.by_fault["n_rejected"] += 1
                self.requests_seen.append({**body, "_fault": "n_rejected"})
            return _error(400, "n > 1 is not supported by this server", param="n")
        fault = self._pick(request.headers.get("X-Fault"), model)
        if fault not in FAULT_KINDS:
            return _error(400, f"unknown X-Fault {fault!r}")
        with self._lock:
            self.stats.requests += 1
            self.stats.by_fault[fault] += 1
            self.stats.in_flight += 1
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)
            self.stats.in_flight_by_model[model] += 1
            self.stats.peak_by_model[model] = max(self.stats.peak_by_model[model], self.stats.in_flight_by_model[model])
            seen: dict[str, Any] = {**body, "_fault": fault}
            self.requests_seen.append(seen)
        t0 = time.perf_counter()
        try:
            return await self._respond(request, body, model, fault, seen)
        except asyncio.CancelledError:
            if fault != "drop":  # the client went away (a dropped connection is the server's own doing)
                with self._lock:
                    self.stats.cancelled += 1
                    seen["_cancelled_after_s"] = time.perf_counter() - t0
            raise
        finally:
            with self._lock:
                self.stats.in_flight -= 1
                self.stats.in_flight_by_model[model] -= 1

    async def _respond(
        self, request: web.Request, body: dict[str, Any], model: str, fault: str, seen: dict[str, Any]
    ) -> web.StreamResponse:
        if self.base_latency_s or self.jitter_s:
            with self._lock:
                jitter = self._jitter_rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0.0
            await asyncio.sleep(max(0.0, self.base_latency_s + jitter))
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
        if fault == "latency":
            await asyncio.sleep(self.latency_s)
        elif fault == "hang":
            await asyncio.sleep(self.hang_s)
        elif fault == "429":
            return _error(429, "Rate limit reached for requests", headers=headers, kind="rate_limit_exceeded")
        elif fault == "500":
            return _error(500, "The server had an error while processing your request", kind="server_error")
        elif fault == "503":
            return _error(503, "The engine is currently overloaded", headers=headers, kind="server_error")
        elif fault == "quota":
            return _error(
                429, "You exceeded your current quota, please check your plan and billing details.",
                kind="insufficient_quota",
            )  # fmt: skip
        elif fault == "401":
            return _error(401, "Incorrect API key provided", kind="invalid_api_key")
        elif fault == "404":
            return _error(404, f"The model `{model}` does not exist", kind="model_not_found")
        elif fault == "400":
            t = body.get("temperature")
            return _error(400, f"Invalid value for 'temperature': {t!r} is not supported here.", param="temperature")
        elif fault == "refusal":
            return _error(
                400,
                "Your request was rejected as a result of our safety system.",
                code="content_policy_violation",
            )
        elif fault == "echo_key":
            auth = request.headers.get("Authorization", "")
            key = auth.removeprefix("Bearer ")
            message = f"upstream failure for key {key} (the request was sent with Authorization: {auth})"
            return _error(500, message, kind="server_error")
        elif fault == "malformed" and not body.get("stream"):
            return web.Response(
                status=200, text='{"id": "x", "choices": [ {"message": ', content_type="application/json"
            )
        elif fault == "drop" and not body.get("stream"):
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing can be sent on an aborted connection
        n = int(body.get("n") or 1) if self.n_support == "yes" else 1
        if body.get("stream"):
            return await self._stream(request, body, model, n, fault)
        if fault == "content_filter":
            return web.json_response(self._completion(body, model, n, filtered=True))
        if fault == "empty":
            count = 0
        elif fault == "wrong_n":
            count = max(0, n - 1) if n > 1 else 0
        else:
            count = n
        completion = self._completion(body, model, count)
        if self.latency is not None and completion["choices"]:
            tokens = max(max(1, len(ch["message"]["content"].split())) for ch in completion["choices"])
            planned = self.latency(body, model, tokens)
            with self._lock:
                seen.update(_planned_s=planned, _planned_tokens=completion["usage"]["completion_tokens"])
            await asyncio.sleep(planned)
        return web.json_response(completion)

    def _texts(self, body: dict[str, Any], model: str, count: int) -> list[str]:
        messages: Sequence[Mapping[str, Any]] = body.get("messages") or []
        prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, Mapping))
        max_tokens = int(body.get("max_tokens") or 16)
        with self._lock:
            texts = [self.answer(model, prompt, i, self._rng) for i in range(count)]
            self.stats.choices_served += count
        return [" ".join(t.split()[:max_tokens]) for t in texts]

    def _usage(self, body: dict[str, Any], texts: Sequence[str]) -> dict[str, int]:
        messages: Sequence[Mapping[str, Any]] = body.get("messages") or []
        prompt = max(1, sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, Mapping)))
        per_choice = [max(1, len(t.split())) for t in texts]
        completion = per_choice[0] if self.usage == "first_choice" and per_choice else sum(per_choice)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _completion(self, body: dict[str, Any], model: str, count: int, *, filtered: bool = False) -> dict[str, Any]:
        texts = self._texts(body, model, count)
        if filtered:
            texts = [""] * len(texts)
        return {
            "id": f"chatcmpl-fault-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": t},
                    "finish_reason": "content_filter" if filtered else "stop",
                    "logprobs": _logprobs(t, body),
                }
                for i, t in enumerate(texts)
            ],
            "usage": self._usage(body, texts),
        }

    async def _stream(
        self, request: web.Request, body: dict[str, Any], model: str, n: int, fault: str
    ) -> web.StreamResponse:
        texts = self._texts(body, model, 0 if fault == "empty" else n)
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": f"chatcmpl-fault-{time.monotonic_ns()}", "object": "chat.completion.chunk", "model": model}

        async def send(event: Mapping[str, Any] | str) -> None:
            data = event if isinstance(event, str) else json.dumps({**base, **event})
            await response.write(f"data: {data}\n\n".encode())

        if fault == "malformed":
            await send('{"choices": [ {"delta": ')
        for i, t in enumerate(texts):
            words = t.split()
            for j, w in enumerate(words):
                await send(
                    {"choices": [{"index": i, "delta": {"content": w if j == 0 else " " + w}, "finish_reason": None}]}
                )
                if fault == "drop":
                    if request.transport is not None:
                        request.transport.abort()
                    raise asyncio.CancelledError
            await send({"choices": [{"index": i, "delta": {}, "finish_reason": "stop"}]})
        options = body.get("stream_options") or {}
        if isinstance(options, Mapping) and options.get("include_usage"):
            await send({"choices": [], "usage": self._usage(body, texts)})
        await send("[DONE]")
        await response.write_eof()
        return response


def _logprobs(text: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
    """Token logprobs of ``text`` (one token a word), when the request asked for them."""
    if not body.get("logprobs"):
        return None
    top = int(body.get("top_logprobs") or 0)
    content = []
    for j, w in enumerate(text.split()):
        lp = -0.1 * (j + 1)
        alts = [{"token": w, "logprob": lp}] + [{"token": f"alt{a}", "logprob": lp - 2.0 - a} for a in range(top)]
        content.append({"token": w, "logprob": lp, "top_logprobs": alts[:top]})
    return {"content": content}


def _error(
    status: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> web.Response:
    error = {"message": message, "type": kind, "param": param, "code": code or kind}
    return web.json_response({"error": error}, status=status, headers=headers)


def http_date(seconds_from_now: float) -> str:
    """A ``Retry-After`` HTTP-date ``seconds_from_now`` in the future."""
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)
