"""Where each model is called: ``local/NAME`` resolved to the managed llama-server, others as written.

:class:`Endpoints` owns the managed local server's start (on first need) and
stop, and says per model whether the backend's native ``n`` is used.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from semcascade.config import LOCAL_PREFIX, CascadeConfig, TierConfig
from semcascade.errors import MissingAPIKeyError

if TYPE_CHECKING:
    from semcascade.local.server import LocalServer

__all__ = ["LOCAL_API_BASE_ENV", "Endpoints", "ResolvedModel", "auto_native_n"]

#: Environment variable: use an already-running OpenAI-compatible server for
#: ``local/`` models instead of starting the managed one.
LOCAL_API_BASE_ENV = "SEMCASCADE_LOCAL_API_BASE"


@dataclass(frozen=True)
class ResolvedModel:
    """A tier model as it is actually called (``local/x`` resolved to the server)."""

    name: str
    litellm_model: str
    api_base: str | None
    api_key: str | None = field(repr=False)
    native_n: bool
    max_n: int = 128


def auto_native_n(model: str, api_base: str | None) -> bool:
    """Whether to use the API's ``n`` by default: OpenAI's API and llama-server implement it;
    most other providers ignore or reject it."""
    return (
        model.startswith(LOCAL_PREFIX)
        or (model.startswith("openai/") and api_base is None)
        or model.startswith(("gpt-", "o1", "o3", "o4"))
    )


class Endpoints:
    """Model resolution for one config, and the lifecycle of the local server it may need."""

    def __init__(
        self, config: CascadeConfig, *, local_server: LocalServer | None = None, local_api_base: str | None = None
    ) -> None:
        self.config = config
        self._server = local_server
        self._base: str | None = local_api_base or os.environ.get(LOCAL_API_BASE_ENV) or None
        self._owns_server = local_server is None
        self._lock = threading.Lock()

    @property
    def server(self) -> LocalServer | None:
        return self._server

    @property
    def local_api_base(self) -> str | None:
        return self._base

    def local_models(self) -> list[str]:
        """Names of the local models this config needs (tiers and an LLM-judge scorer)."""
        names: list[str] = []
        for cfg in [self.config, *(self.config.task_config(n) for n in self.config.task_names)]:
            for t in cfg.tiers:
                names += [m.removeprefix(LOCAL_PREFIX) for m in t.model_list if m.startswith(LOCAL_PREFIX)]
            opts = cfg.scorer.options
            if isinstance(opts.get("model"), str) and opts["model"].startswith(LOCAL_PREFIX):
                names.append(opts["model"].removeprefix(LOCAL_PREFIX))
        return list(dict.fromkeys(names))

    def ensure_local_server(self) -> str:
        """The local server's base URL, starting the managed server on first need."""
        with self._lock:
            if self._base is not None:
                return self._base
            if self._server is None:
                from semcascade.local.server import LocalServer

                self._server = LocalServer(self.config.local_server, self.local_models())
            self._server.start()  # returns at once for a shared server that is already running
            self._base = self._server.base_url
            return self._base

    def resolve(self, model: str, tier: TierConfig | None = None) -> ResolvedModel:
        """How ``model`` is called (``local/NAME`` resolved to the running server)."""
        native = tier.native_n if tier is not None else None
        if model.startswith(LOCAL_PREFIX):
            return ResolvedModel(
                name=model,
                litellm_model="openai/" + model.removeprefix(LOCAL_PREFIX),
                api_base=self.ensure_local_server(),
                api_key="local",
                native_n=True if native is None else native,
                max_n=self.config.local_server.parallel,
            )
        api_base = tier.api_base if tier is not None else None
        return ResolvedModel(
            name=model,
            litellm_model=model,
            api_base=api_base,
            api_key=tier.api_key() if tier is not None else None,
            native_n=auto_native_n(model, api_base) if native is None else native,
        )

    def scorer_options(self) -> dict[str, Any]:
        """The scorer's options with a ``local/`` judge model resolved and ``api_key_env`` read."""
        opts = dict(self.config.scorer.options)
        model = opts.get("model")
        if isinstance(model, str) and model.startswith(LOCAL_PREFIX):
            resolved = self.resolve(model)
            opts.update(model=resolved.litellm_model, api_base=resolved.api_base, api_key=resolved.api_key)
        elif "api_key_env" in opts:
            env = str(opts.pop("api_key_env"))
            value = os.environ.get(env)
            if not value:
                raise MissingAPIKeyError(env, "scorer")
            opts["api_key"] = value
        return opts

    def load_models(self) -> None:
        if self._server is not None:
            self._server.load_models()

    def close(self) -> None:
        """Stop a local server these endpoints started (a shared or given one keeps running)."""
        if self._server is not None and self._owns_server:
            self._server.stop()
