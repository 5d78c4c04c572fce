"""Bearer API keys: read from an env var or a key file (never the config itself), compared in constant time."""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from semcascade.config import ServeConfig
from semcascade.errors import RequestRejectedError, ServeError

__all__ = ["KeyCheck", "is_loopback", "load_keys"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_keys(cfg: ServeConfig) -> list[bytes]:
    """The accepted keys: ``$<api_keys_env>`` (comma-separated) and ``api_keys_file`` (one a line)."""
    keys = [k.strip() for k in os.environ.get(cfg.api_keys_env, "").split(",")]
    if cfg.api_keys_file is not None:
        path = Path(cfg.api_keys_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ServeError(f"serve.api_keys_file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
        keys += [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [k.encode() for k in keys if k]


class KeyCheck:
    """Checks the ``Authorization: Bearer KEY`` header; ``None`` keys = auth off (loopback only)."""

    def __init__(self, cfg: ServeConfig, host: str) -> None:
        if cfg.auth == "off":
            if not is_loopback(host):
                raise ServeError(
                    f"serve.auth is 'off' but the server would listen on {host!r}: auth can be switched off "
                    "only on a loopback host (127.0.0.1, ::1, localhost); set API keys instead"
                )
            self.keys: list[bytes] | None = None
            return
        self.keys = load_keys(cfg)
        if not self.keys:
            where = f"${cfg.api_keys_env}" + (f" or {cfg.api_keys_file}" if cfg.api_keys_file else "")
            raise ServeError(
                f"no API keys: set {where} (comma-separated keys), or name a key file in serve.api_keys_file; "
                "on a loopback host auth can be switched off explicitly (--no-auth or serve.auth: off)"
            )

    @property
    def enabled(self) -> bool:
        return self.keys is not None

    def check(self, header: bytes | None) -> None:
        """Raise a 401 unless ``header`` is ``Bearer <an accepted key>`` (every key compared, in constant time)."""
        if self.keys is None:
            return
        token = b""
        if header is not None and header[:7].lower() == b"bearer ":
            token = header[7:].strip()
        ok = False
        for key in self.keys:
            ok |= hmac.compare_digest(token, key)
        if not ok:
            raise RequestRejectedError(
                401,
                "missing or invalid API key: send 'Authorization: Bearer <key>'",
                code="invalid_api_key",
                kind="authentication_error",
            )
