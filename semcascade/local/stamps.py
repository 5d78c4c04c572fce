"""Stamp files: a verified model file's size, mtime, inode and sha256, so later runs skip re-hashing it.

A stamp matches while the file is the one that was hashed (same size, mtime and
inode) and the expected sha256 (if any) is the one recorded. Written atomically
(a temporary file renamed into place), so a crash never leaves half a stamp.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["stamp_matches", "write_stamp"]


def _stat(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def stamp_matches(stamp: Path, target: Path, *, size: int, sha256: str | None) -> bool:
    """Whether ``stamp`` records ``target`` as it is now, ``size`` bytes with hash ``sha256`` (if given)."""
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
        current = _stat(target)
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict):
        return False
    if sha256 is not None and recorded.get("sha256") != sha256:
        return False
    if current["size"] != size:
        return False
    return all(recorded.get(k) == v for k, v in current.items())


def write_stamp(stamp: Path, target: Path, sha256: str) -> None:
    """Record ``target`` (verified to hash to ``sha256``) in ``stamp``."""
    tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**_stat(target), "sha256": sha256}), encoding="utf-8")
    os.replace(tmp, stamp)
