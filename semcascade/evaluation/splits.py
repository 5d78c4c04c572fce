"""Deterministic calibration/test splits, so thresholds and fitted weights are never tuned on the
examples they are reported on.

An example's split is a pure function of its id (a hash), so it does not depend on how many examples
are drawn, on their order, or on the dataset loader: any fitted artifact records the split it was fitted
on, and a held-out report can prove its examples were never seen.

>>> split_of("halueval_qa-0"), split_of("halueval_qa-0") == split_of("halueval_qa-0")
('test', True)
"""

from __future__ import annotations

import hashlib
from typing import Literal

__all__ = ["CALIBRATION_SHARE", "SPLITS", "Split", "in_split", "split_of"]

Split = Literal["all", "calibration", "test"]
SPLITS: tuple[str, ...] = ("all", "calibration", "test")
#: share of every dataset's examples in the calibration split (the rest is test)
CALIBRATION_SHARE = 0.3


def split_of(example_id: str) -> Literal["calibration", "test"]:
    """``"calibration"`` for about 30% of ids, ``"test"`` for the rest (stable across runs and machines)."""
    digest = hashlib.sha256(f"semcascade-split:{example_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2**64
    return "calibration" if bucket < CALIBRATION_SHARE else "test"


def in_split(example_id: str, split: str) -> bool:
    """Whether ``example_id`` belongs to ``split`` (``"all"`` holds every id)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    return split == "all" or split_of(example_id) == split
