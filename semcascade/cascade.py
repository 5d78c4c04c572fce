"""The cascade: cheapest tier first, escalate only when its samples disagree."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from semcascade import adaptive, step
from semcascade._budget import BudgetLedger, CallBudget, Estimate, tier_upper_bound
from semcascade._deadline import DeadlineReached, deadline_guard, deadline_scope, expired
from semcascade._sync import in_running_loop, run_sync
from semcascade.aggregation import Consensus, is_equivalent
from semcascade.confidence import ConfidenceModel, TierEvidence, load_confidence_model
from semcascade.config import LOCAL_PREFIX, CascadeConfig, TierConfig, load_config
from semcascade.costs import tier_flops
from semcascade.drift import DriftMonitor
from semcascade.endpoints import Endpoints, ResolvedModel
from semcascade.errors import (
    BudgetExceededError,
    CascadeFailedError,
    ConfidenceError,
    ConfigError,
    DeadlineExceededError,
    PromptTooLongError,
)
from semcascade.hooks import (
    FinishContext,
    Hook,
    HookRequest,
    HookSession,
    MemoryHook,
    run_augment,
    run_finish,
    start_sessions,
)
from semcascade.live import OnText, live_streamable, stream_tier, with_overrides
from semcascade.memory.hooks import StrategyMemory
from semcascade.messages import Messages, PromptLike, content_text, normalize_messages, prompt_text, question_of
from semcascade.policy import DeferralPolicy, create_policy
from semcascade.providers import LiteLLMProvider, Provider, close_loop_clients
from semcascade.providers.retry import count_retries
from semcascade.providers.stack import ProviderStack, build_provider_stack
from semcascade.result import CascadeResult, TierTrace
from semcascade.sampling import OnCompletion, ResolvedTier, TierSamples, sample_tier
from semcascade.scoring._registry import create_scorer
from semcascade.scoring.base import AgreementScorer
from semcascade.scoring.cache import CachedScorer
from semcascade.scoring.signals import get_signal
from semcascade.speculation import Speculation, SpeculationLog
from semcascade.state.attach import answer_cache_hook, memory_from_state, open_state
from semcascade.stopping import StoppingRule, create_stopping_rule
from semcascade.tokens import PromptTokens

if TYPE_CHECKING:
    from semcascade.local.server import LocalServer
    from semcascade.state.base import StateStore
    from semcascade.task_classifier import TaskClassifier

__all__ = ["Cascade", "Messages", "PromptLike", "normalize_messages"]


def _evidence(drawn: TierSamples, cons: Consensus, question: str, prompt: str, tier: str) -> TierEvidence:
    s = drawn.samples
    return TierEvidence(
        answers=[x.answer for x in s],
        representative=cons.representative,
        agreement=cons.score,
        largest_cluster=len(cons.clusters[0]) if cons.clusters else 0,
        mean_logprobs=[x.mean_logprob for x in s],
        min_logprobs=[x.min_logprob for x in s],
        first_logprobs=[x.first_logprob for x in s],
        tokens=[x.completion_tokens for x in s],
        question=question,
        prompt=prompt,
        tier=tier,
    )


def _check_signal(cfg: CascadeConfig, tier: TierConfig, model: ConfidenceModel | None) -> str:
    """The tier's decision signal, checked: known, and fed with what it needs (a ConfigError otherwise)."""
    name = step.tier_signal(cfg, tier)
    try:
        sig = get_signal(name)
    except ConfigError as exc:
        raise ConfigError(f"tier {tier.name!r}: signal: {exc}") from None
    if name == "confidence" and model is None:
        raise ConfigError(f"tier {tier.name!r}: signal 'confidence' needs a confidence_model on the tier")
    if sig.kind == "white-box" and not tier.logprobs:
        raise ConfigError(f"tier {tier.name!r}: signal {name!r} reads token log-probabilities; set `logprobs: true`")
    if sig.kind == "black-box" and tier.signal is not None and sig.scorers and cfg.scorer.name not in sig.scorers:
        raise ConfigError(
            f"tier {tier.name!r}: signal {name!r} is agreement under the {'/'.join(sig.scorers)} scorer, but the "
            f"config's scorer is {cfg.scorer.name!r}; write `signal: agreement` or change `scorer.name`"
        )
    return name


def _load_confidence(tier: TierConfig) -> ConfidenceModel:
    """The tier's confidence model, checked against the tier's settings (a ConfigError otherwise)."""
    assert tier.confidence_model is not None
    try:
        model = load_confidence_model(tier.confidence_model)
    except ConfidenceError as exc:
        raise ConfigError(f"tier {tier.name!r}: confidence_model: {exc}") from None
    if model.needs_logprobs and not tier.logprobs:
        raise ConfigError(
            f"tier {tier.name!r}: confidence model {model.name!r} uses token log-probabilities "
            f"({', '.join(f for f in model.features if f.startswith('lp_'))}); set `logprobs: true` on the tier"
        )
    if "agreement" in model.features and tier.k < 2:
        raise ConfigError(f"tier {tier.name!r}: confidence model {model.name!r} needs agreement: set k >= 2")
    return model


def _routes_through_litellm(provider: Provider | None) -> bool:
    """Whether tier models are litellm model strings: the default provider, or one wrapping litellm's."""
    for _ in range(8):  # wrappers (retries, response cache, local-server guard) keep the real one in .inner
        if provider is None or isinstance(provider, LiteLLMProvider):
            return True
        provider = getattr(provider, "inner", None)
        if provider is None:
            return False
    return False


def _check_litellm_models(cfg: CascadeConfig) -> None:
    """Raise :class:`UnknownModelError` for a tier model litellm cannot route, before any tier is called.

    ``local/`` models are checked against the local registry elsewhere; a tier with an ``api_base``
    may serve any name (it cannot be checked offline). litellm is imported only when there is
    something to check.
    """
    from semcascade.providers.stack import auto_provider_name

    def via_litellm(t: TierConfig, m: str) -> bool:
        name = t.provider.name if t.provider.name != "auto" else auto_provider_name(m, t.api_base)
        return name == "litellm"

    todo = [
        (t.name, m)
        for t in cfg.tiers
        if t.api_base is None
        for m in t.model_list
        if not m.startswith(LOCAL_PREFIX) and via_litellm(t, m)
    ]
    if not todo:
        return
    from semcascade.errors import UnknownModelError
    from semcascade.providers import _prepare_litellm_env

    _prepare_litellm_env()
    import litellm

    litellm.suppress_debug_info = True  # else get_llm_provider prints a provider list before raising
    for tier, model in todo:
        try:
            litellm.get_llm_provider(model)
        except litellm.exceptions.BadRequestError:
            raise UnknownModelError(
                "litellm cannot tell the provider from this model string; write it as 'provider/model' "
                "(e.g. openai/gpt-4o-mini), 'local/NAME' for the embedded server, or give the tier an api_base",
                model=model,
                tier=tier,
            ) from None


class Cascade:
    """A reusable cascade: loads the scorer, clients and local server once.

    >>> cascade = Cascade()                     # the embedded local default
    >>> result = cascade.generate_sync("What is the capital of France?")
    >>> result.text, result.tier, result.agreement

    Use it as a (async) context manager, or call :meth:`close` / :meth:`aclose`:
    they wait for background strategy learning, close the HTTP clients and the
    memory store, and stop a local server it started.

    ``provider``: what to send requests to instead of each tier's configured
    provider. A plain provider is wrapped in the per-tier retries (and, for
    local tiers, the local-server guard); one that already retries (a
    :class:`~semcascade.providers.retry.RetryingProvider`, or a wrapper of one)
    is used as it is; so is a whole
    :class:`~semcascade.providers.stack.ProviderStack` (see
    :func:`~semcascade.providers.stack.build_provider_stack`). :attr:`stack`
    shows the layers actually used.
    """

    def __init__(
        self,
        config: CascadeConfig | str | os.PathLike[str] | Mapping[str, Any] | None = None,
        *,
        provider: Provider | None = None,
        scorer: AgreementScorer | None = None,
        policy: DeferralPolicy | None = None,
        local_server: LocalServer | None = None,
        memory: StrategyMemory | None = None,
        local_api_base: str | None = None,
        hooks: Sequence[Hook] = (),
        endpoints: Endpoints | None = None,
        run_budget: BudgetLedger | None = None,
        task: str | None = None,
        state: StateStore | None = None,
    ) -> None:
        self.config: CascadeConfig = load_config(config)
        #: where budgets, limits, caches and strategy memory live (``state:``; see semcascade.state)
        self.state, self._owns_state = open_state(self.config, state)
        #: the config task this cascade serves (a task's own cascade), else ``None``
        self.task = task
        self._provider = provider
        self._scorer = scorer
        self.policy: DeferralPolicy = policy or create_policy(self.config.policy.name, **self.config.policy.options)
        #: model resolution and the managed local server's lifecycle (shared by a config's tasks)
        self.endpoints = endpoints or Endpoints(self.config, local_server=local_server, local_api_base=local_api_base)
        self._owns_endpoints = endpoints is None
        self._task_cascades: dict[str, Cascade] = {}
        self._classifier: TaskClassifier | None = None
        self._tasks_lock = threading.Lock()
        self._tiers: list[ResolvedTier] | None = None
        self._setup_lock = threading.Lock()
        self._confidence: dict[str, ConfidenceModel] = {}
        #: per tier: the signal it decides on (a registry name)
        self._signals: dict[str, str] = {}
        #: per tier with adaptive_k: its stopping rule
        self._stopping: dict[str, StoppingRule] = {}
        self._extra_hooks = [*answer_cache_hook(self.config, self.state), *hooks]
        #: escalation-drift monitoring (``drift:`` in the config), attached as a hook
        self.drift: DriftMonitor | None = DriftMonitor.from_config(
            self.config.drift, task=task, certificate=self.config.certificate, state=self.state
        )
        if self.drift is not None:
            self._extra_hooks.append(self.drift)
        self._memory_hook: MemoryHook | None = None
        self.memory = memory if memory is not None else memory_from_state(self.config, self.state)
        self._owns_memory = memory is None
        #: the layers the provider calls go through (built by _setup), and its outermost layer
        self._stack: ProviderStack | None = None
        self._caller: Provider | None = None
        budget = self.config.budget
        self._run_budget = run_budget or self.state.ledger(
            "run", budget.max_cost_per_run, budget.max_tokens_per_run, scope="run"
        )
        self._check_static()

    # ------------------------------------------------------------------ hooks

    @property
    def memory(self) -> StrategyMemory | None:
        """The strategy memory (attached as a hook), or ``None``."""
        return self._memory_hook.memory if self._memory_hook is not None else None

    @memory.setter
    def memory(self, memory: StrategyMemory | None) -> None:
        self._memory_hook = MemoryHook(memory) if memory is not None else None

    @property
    def hooks(self) -> list[Hook]:
        """Optional features attached through the one hooks seam (:mod:`semcascade.hooks`), in call order."""
        return [*self._extra_hooks, *([self._memory_hook] if self._memory_hook is not None else [])]

    # ------------------------------------------------------------------ set-up

    def _check_static(self) -> None:
        cfg = self.config
        if cfg.uses_local_server:
            from semcascade.local.models import LOCAL_MODELS

            for t in cfg.tiers:
                for m in t.model_list:
                    name = m.removeprefix(LOCAL_PREFIX)
                    if m.startswith(LOCAL_PREFIX) and name not in LOCAL_MODELS:
                        raise ConfigError(
                            f"tier {t.name!r}: unknown local model {name!r}; choose one of: "
                            f"{', '.join(sorted(LOCAL_MODELS))}"
                        )
                if t.is_local and t.k > cfg.local_server.parallel * len(t.model_list):
                    raise ConfigError(
                        f"tier {t.name!r}: k={t.k} exceeds the local server's parallel slots "
                        f"({cfg.local_server.parallel}); raise local_server.parallel or lower k"
                    )
        for t in cfg.tiers:
            t.api_key()  # MissingAPIKeyError now, not after the cheap tier was paid for
        if _routes_through_litellm(self._provider):
            _check_litellm_models(cfg)  # UnknownModelError now, likewise
        for t in cfg.tiers:
            if t.confidence_model is not None:
                self._confidence[t.name] = _load_confidence(t)
            self._signals[t.name] = _check_signal(cfg, t, self._confidence.get(t.name))
            if t.adaptive_k is not None:
                self._stopping[t.name] = create_stopping_rule(t.adaptive_k.name, **t.adaptive_k.options)

    @property
    def local_server(self) -> LocalServer | None:
        """The managed llama-server this cascade uses (``None`` before set-up or without local tiers)."""
        return self.endpoints.server

    @property
    def local_api_base(self) -> str | None:
        """The OpenAI-compatible base URL of the local server, once it is running."""
        return self.endpoints.local_api_base

    def local_models(self) -> list[str]:
        """Names of the local models this config needs (tiers and an LLM-judge scorer)."""
        return self.endpoints.local_models()

    def resolve_model(self, model: str) -> ResolvedModel:
        """How ``model`` is actually called (``local/NAME`` resolved to the running server)."""
        return self.endpoints.resolve(model)

    def signal(self, tier: str) -> str:
        """The signal tier ``tier`` decides on (see :func:`semcascade.step.tier_signal`)."""
        return self._signals[tier]

    def _setup(self) -> list[ResolvedTier]:
        with self._setup_lock:
            if self._tiers is not None:
                return self._tiers
            # The one stack builder (shared with the eval harness): base -> local guard -> retry.
            self._stack = build_provider_stack(
                self.config,
                base=self._provider,
                local_server=lambda: self.endpoints.server,
                cache=self.state.response_cache() if self.config.state.response_cache else None,
            )
            self._caller = self._stack.caller
            tiers = [
                ResolvedTier(
                    config=t,
                    models=[self.endpoints.resolve(m, t) for m in t.model_list],
                    limiter=self.state.limiter(t.name, t.max_concurrency, t.requests_per_second),
                )
                for t in self.config.tiers
            ]
            if self._scorer is None:
                self._scorer = CachedScorer(create_scorer(self.config.scorer.name, **self.endpoints.scorer_options()))
            self._tiers = tiers
            return tiers

    def prepare(self, *, load_models: bool = True) -> None:
        """Start the local server (if any), load the scorer and (by default) the local
        models now, so the first request does not pay for loading them."""
        self._setup()
        if load_models:
            self.endpoints.load_models()

    @property
    def scorer(self) -> AgreementScorer:
        self._setup()
        assert self._scorer is not None
        return self._scorer

    @property
    def provider(self) -> Provider:
        """The provider given to this cascade (for a whole stack: its outermost layer), else the per-tier
        base providers the stack is built on."""
        stack = self.stack
        if self._provider is None:
            return stack.base
        return stack.caller if isinstance(self._provider, ProviderStack) else self._provider

    @property
    def stack(self) -> ProviderStack:
        """The provider stack requests go through (``stack.caller``), layer by layer."""
        self._setup()
        assert self._stack is not None
        return self._stack

    @property
    def tiers(self) -> list[ResolvedTier]:
        return self._setup()

    @property
    def run_budget(self) -> BudgetLedger:
        """Money and tokens this cascade has spent so far (and its per-run caps)."""
        return self._run_budget

    # ------------------------------------------------------------------ calls

    def _check_length(self, messages: Messages) -> None:
        chars = sum(len(content_text(m["content"])) for m in messages)
        if chars > self.config.max_prompt_chars:
            raise PromptTooLongError("(all)", chars // 4, self.config.max_prompt_chars // 4)
        tokens = PromptTokens(messages)  # counted exactly only when a cheap bound does not fit
        for t in self.config.tiers:
            window = t.context_window
            if window is None and t.is_local:
                window = self.config.local_server.slot_context
            if window is None:
                continue
            est = tokens.over(window, t.max_tokens)
            if est is not None:
                raise PromptTooLongError(t.name, est + t.max_tokens, window)

    async def _auto_task(self, prompt: PromptLike) -> str | None:
        """The task ``task='auto'`` runs: the config's classifier's label for the prompt's last user turn."""
        if self.config.task_classifier is None:
            raise ConfigError(
                "task 'auto' needs a task classifier: set task_classifier (e.g. builtin:tasks-v1) in the config "
                "or name the task (one of: " + ", ".join(self.config.task_names) + ")"
            )
        if self._classifier is None:
            from semcascade.task_classifier import TaskClassifier

            self._classifier = TaskClassifier.load(self.config.task_classifier)
        question = question_of(normalize_messages(prompt))
        (label,) = await asyncio.to_thread(self._classifier.classify, [question])
        return label if label in self.config.tasks else None

    def for_task(self, name: str) -> Cascade:
        """The cascade of the config's task ``name`` (built once; it shares this cascade's provider,
        local server and run budget). An unknown name is a :class:`ConfigError` listing the tasks."""
        with self._tasks_lock:
            if name not in self._task_cascades:
                cfg = self.config.task_config(name)
                self._task_cascades[name] = Cascade(
                    cfg,
                    provider=self._base_provider(),
                    scorer=self._scorer if cfg.scorer == self.config.scorer else None,
                    policy=self.policy if cfg.policy == self.config.policy else None,
                    endpoints=self.endpoints,
                    run_budget=self._run_budget,
                    task=name,
                    state=self.state,
                )
            return self._task_cascades[name]

    def _base_provider(self) -> Provider | None:
        """The provider a task's cascade shares (``None``: it builds the default stack itself)."""
        return self._provider

    async def generate(
        self,
        prompt: PromptLike,
        *,
        deadline_s: float | None = None,
        task: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        on_text: OnText | None = None,
    ) -> CascadeResult:
        """Run the cascade on a prompt (string or OpenAI-style messages).

        ``deadline_s`` (default: the config's ``deadline_s``; ``None`` = none)
        bounds the whole call: past it no request is sent and no retry waits;
        the best answer so far is returned with ``deadline_exceeded`` set, or
        :class:`DeadlineExceededError` is raised when there is none. See
        ``docs/failure-semantics.md``. ``task`` (default: the config's
        ``default_task``) runs the cascade of one of the config's ``tasks``.
        ``overrides`` (``temperature``/``max_tokens``/``stop``/``seed``) apply to every tier of this
        call; ``on_text`` receives the answer's text as it is generated when the answering tier can
        be streamed live (:mod:`semcascade.live`; never a tier whose answer awaits a decision).
        """
        task = task if task is not None else self.config.default_task
        if task == "auto":  # None when the classifier's label is none of the config's tasks: the base cascade
            task = await self._auto_task(prompt)
        if task is not None:
            sub = self.for_task(task)
            result = await sub.generate(prompt, deadline_s=deadline_s, overrides=overrides, on_text=on_text)
            return result.model_copy(update={"task": task})
        started = time.perf_counter()
        base_messages = normalize_messages(prompt)
        self._check_length(base_messages)
        limit = self.config.deadline_s if deadline_s is None else deadline_s
        if limit is not None and not limit > 0:
            raise ConfigError(f"deadline_s must be a positive number of seconds, got {limit!r}")
        with deadline_scope(limit), count_retries() as retries:
            return await self._generate(base_messages, started, retries, overrides, on_text)

    async def _generate(
        self,
        base_messages: Messages,
        started: float,
        retries: Mapping[str, int],
        overrides: Mapping[str, Any] | None = None,
        on_text: OnText | None = None,
    ) -> CascadeResult:
        tiers = await asyncio.to_thread(self._setup) if self._tiers is None else self._tiers
        tiers = with_overrides(tiers, overrides)
        assert self._caller is not None and self._scorer is not None
        question = question_of(base_messages)
        request = HookRequest(question=question, messages=base_messages, task=self.task)
        sessions, hit = await start_sessions(self.hooks, request)
        if hit is not None:  # a hook answered (the answer cache): no tier runs
            return hit.model_copy(update={"latency_s": time.perf_counter() - started})
        budget = CallBudget(self.config.budget, self._run_budget)
        log = SpeculationLog()
        try:
            return await self._run_tiers(
                tiers, base_messages, question, sessions, budget, log, started, retries, on_text
            )
        finally:
            log.abort()  # an exception (or cancellation) ends the call: nothing speculative outlives it

    async def _run_tiers(
        self,
        tiers: list[ResolvedTier],
        base_messages: Messages,
        question: str,
        sessions: list[HookSession],
        budget: CallBudget,
        log: SpeculationLog,
        started: float,
        retries: Mapping[str, int],
        on_text: OnText | None,
    ) -> CascadeResult:
        """The loop over the tiers (cheapest first), with any speculative start of the next tier around it."""
        assert self._caller is not None
        trace: list[TierTrace] = []
        prepared: dict[int, Messages] = {}

        def tier_messages(i: int) -> Messages:
            """Tier ``i``'s messages, built once (a speculative start builds them early)."""
            if i not in prepared:
                cfg = tiers[i].config
                messages = normalize_messages(base_messages, cfg.system_prompt or self.config.system_prompt)
                prepared[i] = run_augment(sessions, i, messages, cfg.name)
            return prepared[i]

        async def stop(kind: Literal["budget", "deadline"], reason: str) -> CascadeResult:
            await log.close(f"the call stopped early ({kind})")
            return log.attach(self._stopped(trace, kind, reason, started))

        ahead: Speculation | None = None  # the previous tier's speculative start of this one
        for i, tier in enumerate(tiers):
            is_last = i == len(tiers) - 1
            cfg = tier.config
            messages = tier_messages(i)
            if expired():
                return await stop("deadline", f"the call's deadline passed before tier {cfg.name!r}")
            spec = None if is_last else self._speculation(tiers, i, tier_messages, question, budget, log)
            rule = self._stopping.get(cfg.name)
            t0 = time.perf_counter()
            if ahead is not None and ahead.started:  # started early, reserved and settled by the speculation
                t0 = ahead.started_at
                drawn = await ahead.take()  # drawn before it could be streamed: never passed to on_text
            else:
                bound = tier_upper_bound(tier, messages) if rule is None else adaptive.upper_bound(tier, messages, rule)
                why = budget.reserve(bound)
                if why is not None:
                    return await stop("budget", f"tier {cfg.name!r} was not called: {why}")
                if spec is not None:
                    spec.begin()
                observe = spec.observe if spec is not None else None
                try:
                    if on_text is not None and live_streamable(self.config, cfg, is_last=is_last):
                        assert self._stack is not None
                        drawn = await stream_tier(
                            tier,
                            messages,
                            self._caller,
                            self._stack.base,
                            on_text,
                            answer_format=self.config.answer_format,
                        )
                    elif rule is None:
                        drawn = await sample_tier(
                            tier, messages, self._caller, answer_format=self.config.answer_format, on_completion=observe
                        )
                    else:
                        drawn = await self._draw_adaptively(
                            tier, rule, messages, question, is_last=is_last, on_completion=observe
                        )
                except BaseException:
                    budget.settle(bound, None)  # cancelled or a config error: what was billed is unknown
                    raise
                budget.settle(bound, Estimate(drawn.cost(cfg), drawn.prompt_tokens + drawn.completion_tokens))
            t_sampled = time.perf_counter()
            try:
                async with deadline_guard():
                    tt = await self._score_and_decide(tier, drawn, question, prompt_text(messages), is_last=is_last)
            except DeadlineReached:
                tt = self._unscored(tier, drawn, is_last=is_last)
            trace.append(
                tt.model_copy(
                    update={
                        "latency_s": time.perf_counter() - t0,
                        "scoring_latency_s": time.perf_counter() - t_sampled,
                        "retries": retries.get(cfg.name, 0),
                    }
                )
            )
            if tt.decision in ("accept", "abstain"):
                await log.close(f"tier {cfg.name!r} decided {tt.decision}")
                result = log.attach(self._result(trace, i, started))
                if i > 0 and self.config.final_answer == "consensus":
                    result = await self._vote(result, question)
                return await run_finish(sessions, result, FinishContext(tier, self._caller, is_last, budget))
            ahead = spec
        await log.close("no tier answered")
        if expired():
            return log.attach(self._stopped(trace, "deadline", "the call's deadline passed", started))
        partial = [t.answer for t in trace if t.answer is not None]
        raise CascadeFailedError(
            "no tier produced an answer: "
            + "; ".join(f"{t.tier}: {t.reason}" for t in trace)
            + ". Check the providers (see the trace on this error).",
            trace,
            partial,
        )

    def _speculation(
        self,
        tiers: list[ResolvedTier],
        i: int,
        tier_messages: Callable[[int], Messages],
        question: str,
        budget: CallBudget,
        log: SpeculationLog,
    ) -> Speculation | None:
        """Tier ``i``'s speculative start of tier ``i + 1`` (``speculate:`` on tier ``i``), else ``None``."""
        rule = tiers[i].config.speculate
        if rule is None:
            return None
        target = tiers[i + 1]
        is_last = i + 1 == len(tiers) - 1
        messages = tier_messages(i + 1)
        stopping = self._stopping.get(target.config.name)
        if stopping is None:
            bound = tier_upper_bound(target, messages)
        else:
            bound = adaptive.upper_bound(target, messages, stopping)
        assert self._caller is not None and self._scorer is not None
        caller, scorer, fmt = self._caller, self._scorer, self.config.answer_format

        async def draw(on_completion: OnCompletion) -> TierSamples:
            if stopping is None:
                return await sample_tier(target, messages, caller, answer_format=fmt, on_completion=on_completion)
            return await self._draw_adaptively(
                target, stopping, messages, question, is_last=is_last, on_completion=on_completion
            )

        async def equivalent(a: str, b: str) -> bool:
            (judgement,) = await step.judge_samples(scorer, question, [a, b])
            return is_equivalent(judgement, self.config.equivalence)

        return log.add(
            Speculation(
                rule,
                source=tiers[i].config.name,
                target=target,
                bound=bound,
                draw=draw,
                budget=budget,
                equivalent=equivalent,
                answer_format=fmt,
            )
        )

    async def _draw_adaptively(
        self,
        tier: ResolvedTier,
        rule: StoppingRule,
        messages: Messages,
        question: str,
        *,
        is_last: bool,
        on_completion: OnCompletion | None = None,
    ) -> TierSamples:
        """Adaptive k (:mod:`semcascade.adaptive`): rounds of samples until the tier's stopping rule,
        given the tier step's decision score of the samples so far, says decide."""
        assert self._caller is not None

        async def score(drawn: TierSamples) -> float | None:
            return (await self._score_and_decide(tier, drawn, question, prompt_text(messages), is_last=is_last)).score

        drawn, _ = await adaptive.draw_adaptively(
            tier,
            messages,
            self._caller,
            rule,
            score,
            answer_format=self.config.answer_format,
            on_completion=on_completion,
        )
        return drawn

    async def _vote(self, result: CascadeResult, question: str) -> CascadeResult:
        """``final_answer: consensus``: the answer most supported across every tier that ran
        (:func:`semcascade.step.final_vote`; each sample votes with its tier's ``vote_weight``,
        ties go to the later tier)."""
        assert self._scorer is not None
        pooled = [(t.tier, s.answer) for t in result.trace for s in t.samples if t.decision != "failed"]
        weights = [self.config.tier(tier).vote_weight for tier, _ in pooled]
        voted = await step.final_vote(self._scorer, question, [a for _, a in pooled], weights, self.config.equivalence)
        if voted is None:
            return result
        best, support = voted
        won = {"text": pooled[best][1], "voted_from": pooled[best][0], "vote_support": support}
        return result.model_copy(update=won)

    async def _score_and_decide(
        self, tier: ResolvedTier, drawn: TierSamples, question: str, prompt: str, *, is_last: bool
    ) -> TierTrace:
        """The tier step (:mod:`semcascade.step`): judgement -> consensus -> decision score -> decision."""
        cfg = tier.config
        assert self._scorer is not None
        costs = drawn.cost(cfg)
        base: dict[str, Any] = {
            "tier": cfg.name,
            "models": cfg.model_list,
            "samples": drawn.samples,
            "threshold": cfg.threshold,
            "prompt_tokens": drawn.prompt_tokens,
            "completion_tokens": drawn.completion_tokens,
            "cost": costs,
            "flops": tier_flops(cfg, drawn.prompt_tokens, drawn.completion_tokens),
            "errors": drawn.errors,
        }
        n = len(drawn.samples)
        if n == 0:
            return TierTrace(
                **base,
                decision="failed" if is_last else "escalate",
                reason="no samples arrived: " + "; ".join(drawn.errors[:3]),
            )
        texts = [s.answer for s in drawn.samples]
        judgements = await step.judge_samples(self._scorer, question, texts)
        greedy = drawn.greedy_index if cfg.temperature > 0 else None
        cons = step.tier_consensus(n, judgements, self.config.equivalence, self.config.aggregation, greedy_index=greedy)
        signal = self._signals[cfg.name]
        agreement_signal = step.tier_signal(self.config, cfg.model_copy(update={"signal": "agreement"}))
        value = step.score_tier(
            signal,
            _evidence(drawn, cons, question, prompt, cfg.name),
            {agreement_signal: cons},
            confidence_model=self._confidence.get(cfg.name),
            greedy_index=greedy,
        )
        decision = step.decide(
            self.policy,
            cfg,
            value.score,
            n_samples=n,
            is_last=is_last,
            final_action=self.config.final_action,
            signal=signal,
        )
        short = n < cfg.k
        if cfg.adaptive_k is not None:
            reason = decision.reason + (f" (adaptive k: decided on {n} of at most {cfg.k} samples)" if short else "")
        else:
            reason = decision.reason + (f" (only {n}/{cfg.k} samples arrived)" if short else "")
        return TierTrace(
            **base,
            agreement_matrix=[[round(float(x), 4) for x in row] for row in cons.matrix],
            clusters=cons.clusters,
            agreement=cons.score,
            confidence=value.score if signal == "confidence" else None,
            signal=signal,
            score=value.score,
            representative=value.representative,
            decision=decision.action,
            reason=reason,
        )

    def _unscored(self, tier: ResolvedTier, drawn: TierSamples, *, is_last: bool) -> TierTrace:
        cfg = tier.config
        return TierTrace(
            tier=cfg.name,
            models=cfg.model_list,
            samples=drawn.samples,
            threshold=cfg.threshold,
            decision="failed" if is_last else "escalate",
            reason=f"the call's deadline passed while scoring its {len(drawn.samples)} samples",
            prompt_tokens=drawn.prompt_tokens,
            completion_tokens=drawn.completion_tokens,
            cost=drawn.cost(cfg),
            flops=tier_flops(cfg, drawn.prompt_tokens, drawn.completion_tokens),
            errors=drawn.errors,
        )

    def _stopped(
        self, trace: list[TierTrace], kind: Literal["budget", "deadline"], reason: str, started: float
    ) -> CascadeResult:
        """End a call early (budget or deadline): the best answer so far, flagged, else a typed error."""
        if trace:
            trace[-1] = trace[-1].model_copy(update={"reason": f"{trace[-1].reason}; stopped: {reason}"})
        answered = [i for i, t in enumerate(trace) if t.answer is not None]
        if not answered:
            tried = "; ".join(f"{t.tier}: {t.reason}" for t in trace)
            if kind == "budget":
                raise BudgetExceededError(
                    f"no answer within the budget: {reason}"
                    + (f" (after {tried})" if tried else "")
                    + "; raise the 'budget' caps or lower k/max_tokens",
                    trace,
                    [],
                )
            raise DeadlineExceededError(
                f"no answer before the deadline: {reason}"
                + (f" (after {tried})" if tried else "")
                + "; raise deadline_s or the tiers' speed limits",
                trace,
                [],
            )
        # The latest (strongest) tier that produced an answer.
        result = self._result(trace, answered[-1], started)
        flags = {"budget_exhausted": kind == "budget", "deadline_exceeded": kind == "deadline"}
        return result.model_copy(update={**flags, "stop_reason": reason})

    def _result(self, trace: list[TierTrace], index: int, started: float) -> CascadeResult:
        final = trace[index]
        flops = [t.flops for t in trace]
        return CascadeResult(
            text=final.answer or "",
            tier=final.tier,
            tier_index=index,
            agreement=final.agreement,
            abstained=final.decision == "abstain",
            trace=trace,
            prompt_tokens=sum(t.prompt_tokens for t in trace),
            completion_tokens=sum(t.completion_tokens for t in trace),
            cost=sum(t.cost for t in trace),
            flops=None if any(f is None for f in flops) else sum(f for f in flops if f is not None),
            latency_s=time.perf_counter() - started,
        )

    def generate_sync(
        self, prompt: PromptLike, *, deadline_s: float | None = None, task: str | None = None
    ) -> CascadeResult:
        """Blocking twin of :meth:`generate` (not for use inside a running event loop).

        Each call runs in its own event loop (:func:`semcascade._sync.run_sync`), which ends with
        the call: background strategy learning started in it finishes and its HTTP clients are
        closed first.
        """
        return self._generate_in_own_loop(prompt, deadline_s, task)

    def _generate_in_own_loop(
        self, prompt: PromptLike, deadline_s: float | None, task: str | None = None
    ) -> CascadeResult:
        return run_sync(lambda: self.generate(prompt, deadline_s=deadline_s, task=task), loop_end=self._end_of_loop)

    # ------------------------------------------------------------------ lifecycle

    async def _end_of_loop(self) -> None:
        """What the running event loop owes before it ends: its background learning finished, its clients closed."""
        for sub in self._task_cascades.values():
            await sub._end_of_loop()
        for hook in self.hooks:  # background work (strategy learning) finishes first
            await hook.aclose()
        await self._close_clients()

    async def _close_clients(self) -> None:
        """Close the HTTP clients of the running event loop (the one place that knows how)."""
        await close_loop_clients(self._stack, self._scorer)  # this cascade's clients of this loop

    def _release(self) -> None:
        """The blocking part of closing: the memory store this cascade built, and a local server it started."""
        if self.memory is not None and self._owns_memory:
            self.memory.close()
        for sub in self._task_cascades.values():
            sub._release()
        if self._owns_endpoints:  # a task's cascade shares its parent's local server
            self.endpoints.close()
        if self._owns_state:
            self.state.close()

    async def aclose(self) -> None:
        """Close the cascade: wait for background strategy learning, close the HTTP clients, close the
        memory store (one built from the config; a ``memory=`` passed in is the caller's) and stop a
        local server this cascade started (a reused or given one keeps running). Idempotent."""
        await self._end_of_loop()
        await asyncio.to_thread(self._release)

    def close(self) -> None:
        """Blocking twin of :meth:`aclose`: the same cleanup.

        Inside a running event loop (a notebook cell, ``with`` in async code) this call cannot wait
        on that loop: background strategy learning still pending on it is an error (use ``await
        cascade.aclose()`` or ``async with``), and its HTTP clients are closed by a task scheduled
        on it.
        """
        if not in_running_loop():
            run_sync(self.aclose, name="close()", instead="await aclose()")
            return
        loop = asyncio.get_running_loop()
        pending = self.memory.pending_in(loop) if self.memory is not None else 0
        if pending:
            raise RuntimeError(
                f"close() was called inside a running event loop with {pending} background strategy task(s) "
                "still learning on it; use 'await cascade.aclose()' (or 'async with') to wait for them"
            )
        self._closing = loop.create_task(self._close_clients())  # referenced until it has run
        self._release()

    def __enter__(self) -> Cascade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Cascade:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
