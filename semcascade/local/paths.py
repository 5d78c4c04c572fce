"""Where semcascade keeps what it builds and assembles (binary, models, logs)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_dir"]

#: Environment variable that overrides the cache folder.
CACHE_ENV = "SEMCASCADE_CACHE"


def cache_dir() -> Path:
    """The cache folder, created on demand.

    ``$SEMCASCADE_CACHE`` if set, else ``$XDG_CACHE_HOME/semcascade``, else
    ``~/.cache/semcascade``.
    """
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        path = Path(explicit).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        path = base / "semcascade"
    path.mkdir(parents=True, exist_ok=True)
    return path
