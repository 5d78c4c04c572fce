"""Ensemble sampling for one tier: k outputs, concurrently, under the tier's limits.

Native ``n`` is used where the backend supports it (the prompt is processed
once); otherwise k single calls run concurrently. Whether an OpenAI-compatible
``api_base`` endpoint implements ``n`` (vLLM and llama-server do, some servers
do not) is probed once per endpoint when the tier leaves ``native_n`` to auto. A heterogeneous tier spreads
its k samples round-robin over its models and calls them all at once.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from semcascade._deadline import request_deadline
from semcascade._limits import TierLimiter
from semcascade.answers import extract_answer
from semcascade.config import TierConfig
from semcascade.costs import tier_cost
from semcascade.endpoints import ResolvedModel
from semcascade.errors import (
    AuthenticationError,
    BadRequestError,
    ContentRefusedError,
    ProviderError,
    QuotaExceededError,
    UnknownModelError,
)
from semcascade.providers import REFUSED_FINISH_REASONS, Completion, CompletionRequest, Provider
from semcascade.providers.base import OPENAI_STYLE_PREFIXES
from semcascade.result import SampleTrace

__all__ = [
    "OnCompletion",
    "ResolvedModel",
    "ResolvedTier",
    "TierSamples",
    "clear_native_n_probes",
    "probe_pending",
    "sample_tier",
    "split_k",
]

#: Provider errors that are configuration (or account) problems: escalating past them would
#: only hide them (and pay the next tier for nothing), so they propagate. Other
#: provider errors (timeouts, rate limits, 5xx, garbage, content refusals) are
#: recorded in the tier's trace and the cascade carries on.
CONFIG_ERRORS: tuple[type[ProviderError], ...] = (
    UnknownModelError,
    AuthenticationError,
    QuotaExceededError,
    BadRequestError,
)

#: told of each of a tier's requests as it comes back, before the others (the early signal of
#: :mod:`semcascade.speculation`); it must not block (schedule any slow work)
OnCompletion = Callable[[ResolvedModel, Completion], None]


@dataclass
class ResolvedTier:
    config: TierConfig
    models: list[ResolvedModel]
    limiter: TierLimiter


@dataclass
class TierSamples:
    samples: list[SampleTrace]
    errors: list[str]
    #: litellm model -> [prompt tokens, completion tokens] actually billed
    usage: dict[str, list[int]] = field(default_factory=dict)

    @property
    def greedy_index(self) -> int | None:
        """Index of the temperature-0 sample, when one was drawn."""
        return next((s.index for s in self.samples if s.greedy), None)

    @property
    def prompt_tokens(self) -> int:
        return sum(u[0] for u in self.usage.values())

    @property
    def completion_tokens(self) -> int:
        return sum(u[1] for u in self.usage.values())

    def cost(self, tier: TierConfig) -> float:
        """What these samples cost at ``tier``'s prices (per model actually called)."""
        return sum(tier_cost(tier, model, p, c) for model, (p, c) in self.usage.items())


def split_k(k: int, n_models: int) -> list[int]:
    """Spread ``k`` samples round-robin over ``n_models`` (earlier models get the remainder)."""
    base, extra = divmod(k, n_models)
    return [base + (1 if i < extra else 0) for i in range(n_models)]


def _logprob_stats(completion_choice: Any) -> dict[str, float | None]:
    """Mean, lowest and first token log-probability of a choice (all None without logprobs)."""
    lps = [t.logprob for t in completion_choice.logprobs or ()]
    if not lps:
        return {"mean_logprob": None, "min_logprob": None, "first_logprob": None}
    return {"mean_logprob": float(sum(lps) / len(lps)), "min_logprob": float(min(lps)), "first_logprob": float(lps[0])}


def _plan(tier: ResolvedTier, k: int, temperature: float) -> list[tuple[ResolvedModel, int, float]]:
    """(model, samples, temperature) per model: k spread round-robin; with ``include_greedy`` the
    first model's first sample is drawn at temperature 0 (when the tier samples at all)."""
    plan = [(m, c, temperature) for m, c in zip(tier.models, split_k(k, len(tier.models)), strict=True) if c]
    if tier.config.include_greedy and temperature > 0 and k > 1 and plan:
        first, count, _ = plan[0]
        plan[0:1] = [(first, 1, 0.0)] + ([(first, count - 1, temperature)] if count > 1 else [])
    return plan


async def _call(provider: Provider, limiter: TierLimiter, request: CompletionRequest) -> Completion:
    async with request_deadline(request.model, request.tier), limiter.slot():  # the wait for a slot counts too
        return await provider.complete(request)


# --------------------------------------------------------------------------- native n, probed per endpoint

#: base URL -> whether the endpoint implements ``n`` (a process-wide memo of the probes)
_NATIVE_N: dict[str, bool] = {}
_NATIVE_N_LOCK = threading.Lock()
#: per event loop and base URL: one probe at a time, the others wait for its answer
_PROBE_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
PROBE_MESSAGES: tuple[Mapping[str, str], ...] = ({"role": "user", "content": "Say OK."},)


def clear_native_n_probes() -> None:
    """Forget what the ``n`` probes found (the next request to each endpoint probes again)."""
    with _NATIVE_N_LOCK:
        _NATIVE_N.clear()


def _chunks(count: int, max_n: int) -> list[int]:
    """``count`` samples as native-``n`` requests of at most ``max_n`` each."""
    return [min(max_n, count - start) for start in range(0, count, max_n)]


def _probed(tier: ResolvedTier, model: ResolvedModel, count: int) -> bool:
    """Whether ``model``'s use of ``n`` is left to a probe: an OpenAI-compatible ``api_base`` endpoint, ``native_n``
    left to auto on the tier, and more than one sample to draw from it."""
    return (
        tier.config.native_n is None
        and not model.native_n
        and model.api_base is not None
        and count > 1
        and model.litellm_model.startswith(OPENAI_STYLE_PREFIXES)
    )


def probe_pending(tier: ResolvedTier, model: ResolvedModel, count: int) -> bool:
    """Whether drawing ``count`` samples from ``model`` may send the ``n`` probe first (not yet probed)."""
    if not _probed(tier, model, count):
        return False
    with _NATIVE_N_LOCK:
        return str(model.api_base) not in _NATIVE_N


async def _probe_native_n(
    provider: Provider, tier: ResolvedTier, model: ResolvedModel, temperature: float
) -> tuple[bool, Completion | None]:
    """Whether ``model``'s endpoint implements ``n``: a tiny ``n=2, max_tokens=1`` request, once per base URL.

    Two choices back: yes. A 400 (the server rejects ``n``) or one choice: no.
    A transient failure: no for this call, asked again next time. Returns the
    probe's completion too, so its (billed) tokens are counted.
    """
    base = str(model.api_base)
    with _NATIVE_N_LOCK:
        if base in _NATIVE_N:
            return _NATIVE_N[base], None
        locks = _PROBE_LOCKS.setdefault(asyncio.get_running_loop(), {})
        lock = locks.setdefault(base, asyncio.Lock())
    async with lock:
        with _NATIVE_N_LOCK:
            if base in _NATIVE_N:
                return _NATIVE_N[base], None
        cfg = tier.config
        probe = CompletionRequest(
            model=model.litellm_model,
            messages=PROBE_MESSAGES,
            n=2,
            temperature=temperature if temperature > 0 else 0.7,
            max_tokens=1,
            api_base=model.api_base,
            api_key=model.api_key,
            timeout=cfg.timeout,
            tier=cfg.name,
        )
        completion: Completion | None = None
        try:
            completion = await _call(provider, tier.limiter, probe)
        except BadRequestError:
            supported = False  # the server rejects n>1
        except CONFIG_ERRORS:
            raise
        except ProviderError:
            return False, None  # could not tell: single calls now, probe again next time
        else:
            supported = len(completion.choices) >= 2
        with _NATIVE_N_LOCK:
            _NATIVE_N[base] = supported
        return supported, completion


async def sample_tier(
    tier: ResolvedTier,
    messages: Sequence[Mapping[str, Any]],
    provider: Provider,
    *,
    k: int | None = None,
    temperature: float | None = None,
    answer_format: str = "raw",
    on_completion: OnCompletion | None = None,
) -> TierSamples:
    """Draw ``k`` (default: the tier's k) samples from the tier's models concurrently.

    ``on_completion`` is told of each request that comes back, as it does (the others still in flight).

    Each sample's ``answer`` is its span under ``answer_format`` (see
    :func:`semcascade.answers.extract_answer`). Transient provider failures
    are recorded in ``errors`` and the samples that did arrive are returned;
    configuration errors propagate.
    """
    cfg = tier.config
    k = cfg.k if k is None else k
    temp = cfg.temperature if temperature is None else temperature
    requests: list[tuple[ResolvedModel, CompletionRequest]] = []
    probes: list[tuple[ResolvedModel, Completion]] = []
    for model, count, t in _plan(tier, k, temp):
        native = model.native_n
        if _probed(tier, model, count):
            native, paid = await _probe_native_n(provider, tier, model, temp)
            if paid is not None:
                probes.append((model, paid))
        chunks = _chunks(count, model.max_n) if native else [1] * count
        for j, n in enumerate(chunks):
            requests.append(
                (
                    model,
                    CompletionRequest(
                        model=model.litellm_model,
                        messages=messages,
                        n=n,
                        temperature=t,
                        max_tokens=cfg.max_tokens,
                        api_base=model.api_base,
                        api_key=model.api_key,
                        timeout=cfg.timeout,
                        seed=None if cfg.seed is None else cfg.seed + j,
                        stop=cfg.stop,
                        logprobs=cfg.logprobs,
                        extra=cfg.litellm_params,
                        tier=cfg.name,
                        sample_offset=0 if native else j,
                    ),
                )
            )

    async def call(model: ResolvedModel, req: CompletionRequest) -> Completion:
        res = await _call(provider, tier.limiter, req)
        if on_completion is not None:
            on_completion(model, res)
        return res

    results = await asyncio.gather(*(call(m, req) for m, req in requests), return_exceptions=True)
    out = TierSamples(samples=[], errors=[])
    for model, paid in probes:  # the n probe was billed: count it with the tier's usage
        used = out.usage.setdefault(model.litellm_model, [0, 0])
        used[0] += paid.prompt_tokens
        used[1] += paid.completion_tokens
    for (model, req), res in zip(requests, results, strict=True):
        if isinstance(res, BaseException):
            if isinstance(res, ProviderError) and not isinstance(res, CONFIG_ERRORS):
                out.errors.append(str(res))
                continue
            raise res
        used = out.usage.setdefault(model.litellm_model, [0, 0])
        used[0] += res.prompt_tokens
        used[1] += res.completion_tokens
        refused = [ch for ch in res.choices if ch.finish_reason in REFUSED_FINISH_REASONS]
        if refused:  # withheld by the provider's filter: a refusal, not an answer (billed all the same)
            why = f"content refused: {len(refused)} of {len(res.choices)} choices withheld by the provider's filter"
            out.errors.append(str(ContentRefusedError(why, model=req.model, tier=req.tier)))
        for ch in res.choices:
            if ch.finish_reason in REFUSED_FINISH_REASONS:
                continue
            text = ch.text.strip()
            out.samples.append(
                SampleTrace(
                    index=len(out.samples),
                    model=model.name,
                    text=text,
                    answer=extract_answer(text, answer_format),
                    completion_tokens=ch.completion_tokens,
                    finish_reason=ch.finish_reason,
                    tokens_estimated=ch.tokens_estimated,
                    greedy=req.temperature == 0.0,
                    **_logprob_stats(ch),
                )
            )
    return out
