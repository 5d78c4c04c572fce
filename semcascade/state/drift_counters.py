"""The drift monitor's counters as a state kind: one stream per task, shared when the store is shared.

:class:`~semcascade.drift.DriftMonitor` decides (the CUSUM's alarm, the KS and loss tests); what it
decides on lives here: the request and escalation counts, the CUSUM statistics, the recent
escalations the rate is taken over, the open windows of first-tier scores and labelled losses, and
the alarm counts by kind. :meth:`~semcascade.state.base.StateStore.drift_counters` hands them out;
the ``memory`` and ``sqlite`` backends keep them in this process (:class:`LocalDriftCounters`), the
``redis`` backend in Redis (every replica's requests are one stream, so a shift is found as fast as
on one process and alarms once, not once per replica).

Each :meth:`DriftCounters.step` is atomic: it adds one request, moves the CUSUM by
:func:`cusum_step` and, when a score window fills, hands the full window to exactly one caller (who
runs the test). A backend that fails degrades the monitor, never the request: ``step`` returns
``None`` (the request is not counted; warned and counted in the store's health as ``drift``).
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "ALARM_LOG",
    "CusumParams",
    "DriftCounters",
    "DriftStep",
    "DriftTotals",
    "LocalDriftCounters",
    "cusum_step",
]

#: the last alarms a store keeps (their counts by kind are kept in full)
ALARM_LOG = 100

Moved = Literal["up", "down"]


@dataclass(frozen=True)
class CusumParams:
    """A two-sided Bernoulli CUSUM: the log-likelihood ratios added per request and the alarm thresholds.

    ``up``/``down``: (added when the request escalated, added when it did not) for the rise and the fall
    side; ``h_down`` is ``inf`` when the fall side is off (a baseline rate too close to 0)."""

    up: tuple[float, float]
    down: tuple[float, float]
    h_up: float
    h_down: float


def cusum_step(s_up: float, s_down: float, escalated: bool, p: CusumParams) -> tuple[float, float, Moved | None]:
    """Page's recursion for one request: the new statistics and the side that crossed its threshold
    (both statistics restart after an alarm). The one rule; the Redis backend runs the same in Lua."""
    i = 0 if escalated else 1
    s_up = max(0.0, s_up + p.up[i])
    s_down = max(0.0, s_down + p.down[i])
    if s_up > p.h_up:
        return 0.0, 0.0, "up"
    if s_down > p.h_down:
        return 0.0, 0.0, "down"
    return s_up, s_down, None


@dataclass(frozen=True)
class DriftStep:
    """What one recorded request left behind."""

    #: requests of the stream so far, this one included
    requests: int
    #: the CUSUM side that alarmed on this request
    moved: Moved | None
    #: escalations among the last ``recent_n`` requests (at most the rate window)
    recent_escalations: int
    recent_n: int
    #: a full window of first-tier scores, taken by this call (its caller runs the test), else ``None``
    scores: list[float] | None = None

    @property
    def escalation_rate(self) -> float:
        return self.recent_escalations / self.recent_n if self.recent_n else 0.0


@dataclass(frozen=True)
class DriftTotals:
    """The stream's counts (every process's, on a shared store)."""

    requests: int = 0
    escalations: int = 0
    labelled: int = 0
    recent_escalations: int = 0
    recent_n: int = 0
    alarms: dict[str, int] = field(default_factory=dict)

    @property
    def escalation_rate(self) -> float:
        return self.recent_escalations / self.recent_n if self.recent_n else 0.0


@runtime_checkable
class DriftCounters(Protocol):
    """One task's drift stream (see the module docstring for what each call guarantees)."""

    #: whether other processes feed the same stream
    shared: bool

    def step(self, escalated: bool, score: float | None) -> DriftStep | None:
        """Record one request (``score``: its first-tier score, ``None`` for none); ``None`` if the backend failed."""
        ...

    def add_loss(self, loss: float) -> list[float] | None:
        """Record one labelled loss; a full window of losses taken by this call, else ``None``."""
        ...

    def add_alarm(self, kind: str, message: str) -> None:
        """Count one alarm of ``kind`` and keep its message among the last :data:`ALARM_LOG`."""
        ...

    def totals(self) -> DriftTotals:
        """The stream's counts (a failed backend: the zero totals, warned)."""
        ...

    def recent_alarms(self) -> list[str]:
        """The messages of the last alarms, newest first."""
        ...


class LocalDriftCounters:
    """The counters in this process (the ``memory`` and ``sqlite`` backends)."""

    shared = False

    def __init__(self, cusum: CusumParams, *, rate_window: int, window: int) -> None:
        self.cusum = cusum
        self.window = window
        self._lock = threading.Lock()
        self._s_up = self._s_down = 0.0
        self._requests = self._escalations = self._labelled = 0
        self._recent: deque[bool] = deque(maxlen=rate_window)
        self._scores: list[float] = []
        self._losses: list[float] = []
        self._alarms: Counter[str] = Counter()
        self._log: deque[str] = deque(maxlen=ALARM_LOG)

    def step(self, escalated: bool, score: float | None) -> DriftStep:
        with self._lock:
            self._requests += 1
            self._escalations += escalated
            self._recent.append(escalated)
            self._s_up, self._s_down, moved = cusum_step(self._s_up, self._s_down, escalated, self.cusum)
            full = None
            if score is not None and math.isfinite(score):
                self._scores.append(float(score))
                if len(self._scores) >= self.window:
                    full, self._scores = self._scores, []
            return DriftStep(self._requests, moved, sum(self._recent), len(self._recent), full)

    def add_loss(self, loss: float) -> list[float] | None:
        with self._lock:
            self._labelled += 1
            self._losses.append(float(loss))
            if len(self._losses) < self.window:
                return None
            full, self._losses = self._losses, []
            return full

    def add_alarm(self, kind: str, message: str) -> None:
        with self._lock:
            self._alarms[kind] += 1
            self._log.appendleft(message)

    def totals(self) -> DriftTotals:
        with self._lock:
            return DriftTotals(
                self._requests, self._escalations, self._labelled, sum(self._recent), len(self._recent),
                dict(self._alarms),
            )  # fmt: skip

    def recent_alarms(self) -> list[str]:
        with self._lock:
            return list(self._log)
