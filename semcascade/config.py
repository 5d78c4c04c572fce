"""Cascade configuration: pydantic models and the YAML loader.

A config file looks like::

    tiers:
      - name: cheap
        model: openai/gpt-4o-mini
        k: 5
        threshold: 0.8
      - name: strong
        model: openai/gpt-4o
        k: 1
    scorer: {name: embedding}

Every validation problem becomes a :class:`~semcascade.errors.ConfigError` that
names the file and the field (``configs/x.yaml: tiers[0].k: ...``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from semcascade._named import JsonObject, NamedOptions, json_data
from semcascade.answers import AnswerFormat
from semcascade.certificate import RiskCertificate
from semcascade.costs import unpriced_models
from semcascade.drift import DriftConfig
from semcascade.errors import ConfigError, MissingAPIKeyError
from semcascade.memory.config import MemoryConfig
from semcascade.state.config import StateConfig

__all__ = [
    "RetryConfig",
    "DEFAULT_CONFIG_PATH",
    "LOCAL_PREFIX",
    "BudgetConfig",
    "CascadeConfig",
    "EquivalenceConfig",
    "JsonObject",
    "LocalServerConfig",
    "PolicyConfig",
    "ProviderConfig",
    "RiskCertificate",
    "ScorerConfig",
    "SpeculationConfig",
    "StoppingConfig",
    "ServeConfig",
    "TierConfig",
    "load_config",
]

#: Models written ``local/NAME`` are served by the managed llama-server.
LOCAL_PREFIX = "local/"

#: The embedded default, used when no config is given.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "configs" / "local.yaml"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOOKS_LIKE_KEY = re.compile(r"^(sk-|sk_|xai-|gsk_|AIza|pk-)|[a-z0-9]{32,}", re.IGNORECASE)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: kept under its old name for code that imported it from here
_json_data = json_data


class RetryConfig(BaseModel):
    """How a tier retries transient provider failures (``max_attempts: 1`` = never)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_attempts: int = Field(default=3, ge=1, le=20, description="attempts per request, the first included")
    backoff_base_s: float = Field(default=0.5, ge=0.0, description="cap of the first retry's delay")
    backoff_max_s: float = Field(default=8.0, ge=0.0, description="cap of any retry's delay")
    jitter: bool = Field(default=True, description="full jitter: delay uniform in [0, cap]")
    retry_after_max_s: float = Field(default=30.0, ge=0.0, description="longest Retry-After honoured")

    @model_validator(mode="after")
    def _base_within_max(self) -> RetryConfig:
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError("backoff_base_s must not exceed backoff_max_s")
        return self


class ProviderConfig(NamedOptions):
    """Which provider sends a tier's requests, by registry name, with its constructor options.

    ``auto`` (the default): the native OpenAI-compatible client (``openai``) for
    ``local/`` models, ``openai/...`` models and OpenAI-style models behind an
    ``api_base``; litellm for everything else. Also written ``provider: NAME``.
    """

    name: str = Field(default="auto", min_length=1, description="auto, openai (native), litellm, mock, or registered")


class StoppingConfig(NamedOptions):
    """Adaptive k: which stopping rule a tier draws its samples by, with its options (``semcascade.stopping``)."""

    name: str = Field(default="agree_early", min_length=1, description="registry name of the stopping rule")


class SpeculationConfig(_Strict):
    """Speculative escalation (``semcascade.speculation``): start the next tier before this one has decided.

    ``when: disagree``: as soon as two of this tier's samples that have come back disagree (under the
    config's scorer and equivalence rule); ``after_s``, when also set, starts it then at the latest.
    ``when: after``: ``after_s`` seconds after this tier started, whatever its samples say. The next
    tier is cancelled if this tier accepts; its spend is reserved against the budget like any call.
    """

    when: Literal["disagree", "after"] = Field(
        default="disagree",
        description="what starts the next tier early: 'disagree' (two arrived samples disagree) or 'after' "
        "(after_s seconds into this tier)",
    )
    after_s: float | None = Field(
        default=None,
        gt=0.0,
        description="seconds after this tier started at which the next tier starts (needed by when: after; "
        "with when: disagree, a latest start); None = no timer",
    )

    @model_validator(mode="after")
    def _after_needs_seconds(self) -> SpeculationConfig:
        if self.when == "after" and self.after_s is None:
            raise ValueError("speculate: when 'after' needs after_s (seconds into this tier)")
        return self


class TierConfig(_Strict):
    """One tier of the cascade: an ensemble of samples from one or more models."""

    name: str = Field(min_length=1)
    model: str | None = None
    models: list[str] | None = None
    k: int = Field(default=5, ge=1, le=64, description="samples drawn per request")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(default=256, ge=1)
    threshold: float = Field(default=0.7, ge=0.0, le=1.0, description="accept when the decision score >= threshold")
    signal: str | None = Field(
        default=None,
        description="what the tier decides on, by signal name (agreement, embedding, lexical, nli, numeric, p_mean, "
        "p_min, p_first, logprob, confidence); None = confidence with a confidence_model, else agreement",
    )
    api_base: str | None = None
    api_key_env: str | None = Field(default=None, description="NAME of the env var that holds the key")
    input_cost_per_token: float | None = Field(default=None, ge=0.0)
    output_cost_per_token: float | None = Field(default=None, ge=0.0)
    parameters: float | None = Field(default=None, gt=0.0, description="parameter count, for FLOPs")
    max_concurrency: int = Field(default=8, ge=1)
    requests_per_second: float | None = Field(default=None, gt=0.0)
    native_n: bool | None = Field(default=None, description="use the API's n parameter; None = auto")
    context_window: int | None = Field(default=None, ge=16)
    timeout: float = Field(default=120.0, gt=0.0)
    retry: RetryConfig = Field(default_factory=RetryConfig, description="retries of transient provider failures")
    seed: int | None = None
    stop: list[str] | None = None
    logprobs: bool = False
    vote_weight: float = Field(
        default=1.0, ge=0.0, description="weight of each of this tier's samples in the consensus vote"
    )
    adaptive_k: StoppingConfig | None = Field(
        default=None,
        description="draw samples in rounds and stop early by a stopping rule ({name: agree_early, options: "
        "{initial: 2, accept_at: 0.9, escalate_below: 0.5, step: 1}}), at most k; None = always draw k",
    )
    include_greedy: bool = Field(
        default=False, description="draw one of the k samples at temperature 0 (it answers when in the consensus)"
    )
    confidence_model: str | None = Field(
        default=None,
        description="decide on a fitted confidence model (builtin:NAME or an artifact path) instead of agreement",
    )
    speculate: SpeculationConfig | None = Field(
        default=None,
        description="start the next tier before this one has decided, when an early signal predicts escalation "
        "({when: disagree} or {when: after, after_s: 2.0}); cancelled if this tier accepts; None = never",
    )
    system_prompt: str | None = None
    litellm_params: JsonObject = Field(default_factory=dict)
    provider: ProviderConfig = Field(
        default_factory=ProviderConfig, description="which provider sends this tier's requests (default auto)"
    )

    @field_validator("provider", mode="before")
    @classmethod
    def _provider_by_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("adaptive_k", mode="before")
    @classmethod
    def _rule_by_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("speculate", mode="before")
    @classmethod
    def _speculate_by_name(cls, v: Any) -> Any:
        return {"when": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _disagree_needs_samples(self) -> TierConfig:
        if self.speculate is not None and self.speculate.when == "disagree" and self.k < 2:
            raise ValueError("speculate: when 'disagree' needs k >= 2 (it compares the tier's samples)")
        return self

    @model_validator(mode="after")
    def _adaptive_needs_samples(self) -> TierConfig:
        if self.adaptive_k is not None and self.k < 2:
            raise ValueError("adaptive_k needs k >= 2 (it stops between 2 and k samples)")
        return self

    @model_validator(mode="after")
    def _one_model_spelling(self) -> TierConfig:
        if (self.model is None) == (self.models is None):
            raise ValueError("give exactly one of 'model' (a litellm model string) or 'models' (a list)")
        if self.models is not None and not self.models:
            raise ValueError("'models' must list at least one model")
        for m in self.model_list:
            if not m.strip():
                raise ValueError("model names must not be empty")
        return self

    @field_validator("api_key_env")
    @classmethod
    def _env_name_not_key(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not _ENV_NAME.match(v) or (_LOOKS_LIKE_KEY.search(v) and not v.isupper()):
            # Never echo the value: it may be a key pasted by mistake.
            raise ValueError("must be the NAME of an environment variable (e.g. OPENAI_API_KEY), not a key value")
        return v

    @property
    def model_list(self) -> list[str]:
        """The models of this tier, in order (one for a plain tier)."""
        return list(self.models) if self.models is not None else [self.model or ""]

    @property
    def is_local(self) -> bool:
        return all(m.startswith(LOCAL_PREFIX) for m in self.model_list)

    def api_key(self) -> str | None:
        """The API key read from ``api_key_env``; raises if that variable is unset."""
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env)
        if not value:
            raise MissingAPIKeyError(self.api_key_env, self.name)
        return value


class ScorerConfig(NamedOptions):
    """Which agreement scorer to use, by registry name, with its options."""

    name: str = Field(default="embedding", min_length=1)


class PolicyConfig(NamedOptions):
    """Which deferral policy to use, by registry name, with its options (``policy: threshold`` also works)."""

    name: str = Field(default="threshold", min_length=1, description="registry name of the deferral policy")


class EquivalenceConfig(_Strict):
    """When two answers count as having the same meaning.

    ``bidirectional``: each entails the other with probability >= ``threshold``
    (for similarity scorers: similarity >= ``threshold``).
    ``no_contradiction``: neither contradicts the other with probability >= ``threshold``.
    """

    rule: Literal["bidirectional", "no_contradiction"] = "bidirectional"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class LocalServerConfig(_Strict):
    """Settings of the managed llama-server (used by ``local/`` models)."""

    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535, description="None = pick a free port")
    threads: int = Field(default=2, ge=1)
    parallel: int = Field(default=8, ge=1, description="server slots; must be >= the largest k")
    ctx_size: int = Field(default=16384, ge=512, description="total context, shared by the slots")
    models_max: int = Field(default=3, ge=1)
    cache_ram_mib: int = Field(
        default=1024,
        ge=-1,
        description="prompt-cache RAM per loaded model in MiB (llama-server --cache-ram; 0 off, -1 unlimited)",
    )
    startup_timeout: float = Field(default=180.0, gt=0.0)

    @property
    def slot_context(self) -> int:
        return self.ctx_size // self.parallel


class BudgetConfig(_Strict):
    """Caps per call (one ``generate``) and per run (one ``Cascade``); ``None`` = no cap.

    Money is in the same unit as the tiers' prices (USD for litellm's cost
    map); tokens are prompt + completion tokens as the providers report them.
    """

    max_cost_per_call: float | None = Field(default=None, ge=0.0)
    max_tokens_per_call: int | None = Field(default=None, ge=0)
    max_cost_per_run: float | None = Field(default=None, ge=0.0)
    max_tokens_per_run: int | None = Field(default=None, ge=0)

    @property
    def limits_calls(self) -> bool:
        return self.max_cost_per_call is not None or self.max_tokens_per_call is not None


class ServeConfig(_Strict):
    """``semcascade serve``: the OpenAI-compatible server over this cascade (see README "Serve").

    API keys are never written here: name the env var or the file that holds them.
    """

    model_name: str | None = Field(
        default=None,
        min_length=1,
        description="the model name clients ask for (default: the config file's stem; 'semcascade' for the "
        "embedded default); each task is served as NAME/TASK too",
    )
    host: str = Field(default="127.0.0.1", min_length=1, description="interface to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0 = pick a free one)")
    auth: Literal["required", "off"] = Field(
        default="required",
        description="'required': a bearer key from api_keys_env/api_keys_file on every /v1 and /metrics "
        "request; 'off' is allowed only on a loopback host",
    )
    api_keys_env: str = Field(
        default="SEMCASCADE_API_KEYS", min_length=1, description="NAME of the env var holding comma-separated keys"
    )
    api_keys_file: str | None = Field(default=None, description="path of a file with one API key a line")
    max_in_flight: int = Field(default=64, ge=1, description="cascade calls run at once")
    max_queue: int = Field(default=256, ge=0, description="requests waiting for a slot; past it a 503 with Retry-After")
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After (seconds) sent with a 503")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="largest request body (else 413)")
    request_timeout_s: float | None = Field(
        default=None, gt=0.0, description="deadline of a request without an x-semcascade-deadline header"
    )
    shutdown_grace_s: float = Field(
        default=10.0, ge=0.0, description="on SIGTERM: how long in-flight requests may take to finish"
    )
    log_prompts: bool = Field(default=False, description="put the prompt text in the per-request log line")
    otel: bool = Field(default=False, description="OpenTelemetry spans per request and tier (the 'otel' extra)")


class CascadeConfig(_Strict):
    """A whole cascade: ordered tiers (cheapest first), scorer and policy."""

    tiers: list[TierConfig] = Field(min_length=1)
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    equivalence: EquivalenceConfig = Field(default_factory=EquivalenceConfig)
    aggregation: Literal["mean_pairwise", "largest_cluster"] = "mean_pairwise"
    policy: PolicyConfig = Field(
        default_factory=PolicyConfig, description="deferral policy: {name, options} (a bare name also works)"
    )
    final_action: Literal["answer", "abstain"] = Field(
        default="answer", description="what the last tier does when its samples disagree"
    )
    system_prompt: str | None = None
    answer_format: AnswerFormat = Field(
        default="raw", description="which span of each sample is compared and returned (semcascade.answers)"
    )
    final_answer: Literal["last_tier", "consensus"] = Field(
        default="last_tier",
        description="'consensus': after an escalation, vote over the samples of every tier that ran",
    )
    max_prompt_chars: int = Field(default=200_000, ge=1)
    deadline_s: float | None = Field(default=None, gt=0.0, description="per-call deadline of the whole cascade")
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="money/token caps per call and run")
    local_server: LocalServerConfig = Field(default_factory=LocalServerConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    state: StateConfig = Field(
        default_factory=StateConfig,
        description="where budgets, limits, caches and strategy memory live: {name, options} (sqlite, memory, "
        "redis); redis shares them across processes",
    )
    drift: DriftConfig = Field(
        default_factory=DriftConfig, description="escalation-drift monitoring against the calibration baseline"
    )
    certificate: RiskCertificate | None = Field(
        default=None,
        description="the risk certificate of this cascade's thresholds, written by `semcascade calibrate --risk` "
        "(a task may carry its own); the drift monitor alarms when labelled traffic breaches it",
    )
    tasks: dict[str, JsonObject] = Field(
        default_factory=dict,
        description="named tasks, each a cascade of its own: the fields it sets replace this config's "
        "(a task with 'tiers' brings its own tiers); chosen per request with generate(..., task=NAME)",
    )
    default_task: str | None = Field(default=None, description="the task of a request that names none")
    task_classifier: str | None = Field(
        default=None,
        description="task: auto picks the task from the prompt with this classifier (builtin:NAME or an "
        "artifact path, see semcascade.task_classifier); None: task auto is refused",
    )
    serve: ServeConfig = Field(
        default_factory=ServeConfig, description="`semcascade serve`: model name, auth, limits, shutdown"
    )

    @model_validator(mode="after")
    def _unique_tier_names(self) -> CascadeConfig:
        names = [t.name for t in self.tiers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tier names must be unique; repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _speculation_has_a_next_tier(self) -> CascadeConfig:
        last = self.tiers[-1]
        if last.speculate is not None:
            raise ValueError(f"tier {last.name!r} is the last tier: there is no next tier to speculate on")
        return self

    @model_validator(mode="after")
    def _valid_tasks(self) -> CascadeConfig:
        for name, overrides in self.tasks.items():
            if not name.strip() or name == "auto":
                raise ValueError(f"task name {name!r} is reserved or empty; name tasks e.g. 'math', 'rc'")
            for key in ("tasks", "default_task", "task_classifier", "local_server", "state"):
                if key in overrides:
                    raise ValueError(f"tasks.{name}.{key}: set it at the top level (tasks share one {key})")
            try:
                self.task_config(name)
            except ValidationError as exc:
                raise ValueError(f"tasks.{name}: {_validation_message(exc)}") from None
        auto = self.default_task == "auto" and self.task_classifier is not None
        if self.default_task is not None and self.default_task not in self.tasks and not auto:
            raise ValueError(
                f"default_task {self.default_task!r} is not one of the tasks: {', '.join(self.tasks) or '(none)'}"
            )
        return self

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    def task_config(self, name: str) -> CascadeConfig:
        """The cascade of task ``name``: this config with the task's fields in place of its own."""
        if name not in self.tasks:
            known = ", ".join(self.tasks) or "none (the config has no 'tasks:')"
            raise ConfigError(f"unknown task {name!r}; the config defines: {known}")
        base = self.model_dump(exclude={"tasks", "default_task"})
        return CascadeConfig.model_validate({**base, **self.tasks[name]})

    @model_validator(mode="after")
    def _money_caps_can_bind(self) -> CascadeConfig:
        """A money cap over a tier that costs nothing per call would never stop it: refuse the config."""
        caps = [c for c in ("max_cost_per_call", "max_cost_per_run") if getattr(self.budget, c) is not None]
        if not caps:
            return self
        for t in self.tiers:
            unpriced = unpriced_models(t)
            if unpriced:
                raise ValueError(
                    f"budget.{caps[0]} is set, but tier {t.name!r} has no price for {', '.join(unpriced)} "
                    "(no input_cost_per_token/output_cost_per_token, and litellm's cost map does not price it; "
                    "local/ models are never in it), so its calls would count as free and the cap would never "
                    "bind. Set the tier's input_cost_per_token and output_cost_per_token (0 if it really is "
                    "free; for local models e.g. parameters x 1e-15 per token, as configs/local.yaml does), or "
                    "cap tokens instead with budget.max_tokens_per_call / max_tokens_per_run"
                )
        return self

    @property
    def uses_local_server(self) -> bool:
        own = any(m.startswith(LOCAL_PREFIX) for t in self.tiers for m in t.model_list)
        return own or any(self.task_config(n).uses_local_server for n in self.tasks)

    def tier(self, name: str) -> TierConfig:
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = _format_loc(tuple(p for p in e["loc"] if not str(p).startswith("function-")))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the config reference in README.md)"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def load_config(source: str | os.PathLike[str] | Mapping[str, Any] | CascadeConfig | None = None) -> CascadeConfig:
    """Load and validate a cascade config.

    ``source`` may be a path to a YAML file, an already-parsed mapping, a
    :class:`CascadeConfig` (returned as is) or ``None`` for the embedded
    local default.
    """
    if isinstance(source, CascadeConfig):
        return source
    if source is None:
        source = DEFAULT_CONFIG_PATH
    if isinstance(source, Mapping):
        return _validate(dict(source), origin="<config>")
    path = Path(source)
    origin = str(path)
    if not path.exists():
        raise ConfigError(
            "config file not found; pass an existing YAML file (see configs/ for examples)", source=origin
        )
    if not path.is_file():
        raise ConfigError("is not a file; pass a YAML config file", source=origin)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text; a config must be a YAML file", source=origin) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"malformed YAML{where}: {problem}; fix the syntax", source=origin) from None
    except RecursionError:
        raise ConfigError("YAML is nested too deeply to read; flatten the document", source=origin) from None
    # a tagged or implicit scalar PyYAML's constructors cannot build (2001-02-30, '!!float' with no value)
    except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError) as exc:
        raise ConfigError(f"invalid YAML value: {exc}; fix or quote the value", source=origin) from None
    return _validate(raw, origin=origin)


def _validate(raw: Any, *, origin: str) -> CascadeConfig:
    if raw is None:
        raise ConfigError("config is empty; it needs at least a 'tiers' list", source=origin)
    if not isinstance(raw, dict):
        raise ConfigError(f"top level must be a mapping with a 'tiers' list, got {type(raw).__name__}", source=origin)
    try:
        return CascadeConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc), source=origin) from None
    except (TypeError, ValueError) as exc:  # e.g. unhashable YAML keys
        raise ConfigError(f"invalid config: {exc}", source=origin) from None
