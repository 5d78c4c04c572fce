"""Escalation-drift monitoring: has the traffic moved away from what the thresholds were chosen on?

A cascade's thresholds are chosen on a calibration split. When the traffic
changes (a new kind of question starts arriving), the escalation rate and the
distribution of the decision score move with it, and the cost and quality
figures measured at calibration no longer hold. :class:`DriftMonitor` watches
both, per task, against the baseline recorded at calibration
(:class:`DriftBaseline`), with two sequential tests whose false-alarm rate is
stated up front (``false_alarms_per_10k``):

* **escalations**: a two-sided Bernoulli CUSUM (Page's test) for a shift of
  the escalation rate from the baseline ``p0`` to ``p0 ± shift``; its alarm
  threshold ``h`` is set by simulation so that a stationary stream raises
  ``false_alarms_per_10k / 2`` alarms per 10,000 requests on average;
* **scores**: a Kolmogorov-Smirnov test of each full window of first-tier
  decision scores against the baseline sample, at the level that spends the
  other half of the budget (``window / 10,000`` tests per 10,000 requests).

With a risk certificate (``certificate:``, written by ``semcascade calibrate
--risk``) and labels supplied through :meth:`DriftMonitor.observe_loss`, a third
test checks each full window of per-request losses against the certified
``eps``: a one-sided binomial (0/1 losses) or Hoeffding test of ``risk <= eps``
at the same per-window level as the score test; a rejection is a
``certified_loss`` alarm.

The counts the tests run on live in the cascade's state store
(:mod:`semcascade.state.drift_counters`): per process by default, one stream for
every replica with ``state: {name: redis}``.

An alarm is a log line (``semcascade.drift`` logger), a count in
:attr:`DriftMonitor.alarm_counts` and the store's counters (exported as a metric
by ``semcascade serve``) and a call of the user's ``on_alarm``. Thresholds never change by themselves: the
:class:`DriftAlarm` says what moved and suggests recalibrating.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import InitVar, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from semcascade.certificate import RiskCertificate, upper_tail_pvalue
from semcascade.state.drift_counters import ALARM_LOG, CusumParams, LocalDriftCounters, cusum_step

if TYPE_CHECKING:
    from semcascade.hooks import FinishContext, HookRequest, HookSession
    from semcascade.result import CascadeResult
    from semcascade.state.base import StateStore
    from semcascade.state.drift_counters import DriftCounters

__all__ = [
    "DriftAlarm",
    "DriftBaseline",
    "DriftConfig",
    "DriftMonitor",
    "EscalationCusum",
    "cusum_threshold",
    "ks_pvalue",
    "rate_window",
]

log = logging.getLogger("semcascade.drift")


class DriftBaseline(BaseModel):
    """What the calibration split looked like: the escalation rate and a sample of first-tier scores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    escalation_rate: float = Field(ge=0.0, le=1.0, description="share of calibration requests the first tier escalated")
    scores: list[float] = Field(default_factory=list, description="first-tier decision scores on the calibration split")
    n: int = Field(ge=1, description="calibration requests the baseline was measured on")
    source: str = Field(default="", description="where the baseline comes from (the calibration run)")

    @classmethod
    def from_outcomes(
        cls, escalated: Sequence[bool], scores: Sequence[float | None], *, source: str = ""
    ) -> DriftBaseline:
        known = [float(s) for s in scores if s is not None]
        return cls(
            escalation_rate=float(np.mean(escalated)) if len(escalated) else 0.0,
            scores=[round(s, 6) for s in known],
            n=max(1, len(escalated)),
            source=source,
        )


class DriftConfig(BaseModel):
    """``drift:`` in a config (or a task): monitor the escalation rate and the score distribution."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="watch escalations and first-tier scores (needs a baseline)")
    baseline: DriftBaseline | None = Field(default=None, description="recorded at calibration; required when enabled")
    false_alarms_per_10k: float = Field(
        default=1.0, gt=0.0, le=1000.0, description="expected false alarms per 10,000 requests on a stationary stream"
    )
    shift: float = Field(
        default=0.1, gt=0.0, lt=1.0, description="escalation-rate shift (absolute) the CUSUM is tuned to detect"
    )
    window: int = Field(default=200, ge=20, description="first-tier scores per two-sample test")


@dataclass(frozen=True)
class DriftAlarm:
    """One alarm: what moved, by how much, and what to do."""

    kind: Literal["escalation_rate", "score_distribution", "certified_loss"]
    task: str | None
    #: requests seen by the monitor when the alarm fired
    at_request: int
    baseline: float
    observed: float
    detail: str

    def message(self) -> str:
        where = f"task {self.task!r}: " if self.task else ""
        return (
            f"{where}{self.detail} after {self.at_request} requests; thresholds were chosen on other traffic: "
            "re-run `semcascade eval` on recent traffic and `semcascade calibrate`"
        )


def rate_window(window: int) -> int:
    """How many recent requests :attr:`DriftMonitor.escalation_rate` is taken over (``window``, at least 50)."""
    return max(window, 50)


def _llr(p0: float, p1: float) -> tuple[float, float]:
    """Log-likelihood ratios (escalated, not escalated) of rate p1 against p0."""
    return math.log(p1 / p0), math.log((1 - p1) / (1 - p0))


def cusum_threshold(arl0: float) -> float:
    """The alarm threshold ``h`` of a CUSUM of log-likelihood ratios whose average run length on a
    stationary stream is at least ``arl0``: ``h = ln(arl0)`` (Lorden's bound ARL0 >= e^h), so the
    false-alarm rate is at most the stated one, whatever the baseline rate."""
    if arl0 <= 1:
        raise ValueError("arl0 must exceed 1 request")
    return math.log(arl0)


class EscalationCusum:
    """Page's CUSUM for a rise (``p0 -> p0 + shift``) and a fall (``p0 -> p0 - shift``) of a Bernoulli rate."""

    def __init__(self, p0: float, shift: float, arl0: float) -> None:
        self.p0 = min(max(p0, 1e-3), 1 - 1e-3)
        self.p_up = min(self.p0 + shift, 1 - 1e-3)
        self.p_down = max(self.p0 - shift, 1e-3)
        falls = self.p_down < self.p0
        # each side spends half of the false-alarm budget
        self.params = CusumParams(
            up=_llr(self.p0, self.p_up),
            down=_llr(self.p0, self.p_down) if falls else (0.0, 0.0),
            h_up=cusum_threshold(2 * arl0),
            h_down=cusum_threshold(2 * arl0) if falls else math.inf,
        )
        self.s_up = self.s_down = 0.0

    def update(self, escalated: bool) -> Literal["up", "down"] | None:
        """Add one request; ``"up"``/``"down"`` when the rate has moved (the statistic restarts)."""
        self.s_up, self.s_down, moved = cusum_step(self.s_up, self.s_down, escalated, self.params)
        return moved


def ks_pvalue(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and asymptotic p-value."""
    x, y = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    if len(x) == 0 or len(y) == 0:
        return 0.0, 1.0
    grid = np.concatenate([x, y])
    d = float(
        np.max(
            np.abs(np.searchsorted(x, grid, side="right") / len(x) - np.searchsorted(y, grid, side="right") / len(y))
        )
    )
    en = math.sqrt(len(x) * len(y) / (len(x) + len(y)))
    lam = (en + 0.12 + 0.11 / en) * d
    p = 2 * sum((-1) ** (j - 1) * math.exp(-2 * (j * lam) ** 2) for j in range(1, 101))
    return d, float(min(max(p, 0.0), 1.0))


@dataclass
class DriftMonitor:
    """Watches a cascade's escalations and first-tier scores against a calibration baseline (a hook).

    The tests run here; the counts they run on are ``counters`` (from the cascade's state store: per
    process, or shared by every replica on Redis, see :mod:`semcascade.state.drift_counters`).
    ``requests``, ``escalations``, ``labelled`` and ``escalation_rate`` are the stream's (all replicas'
    on a shared store); ``alarms`` and ``alarm_counts`` are the alarms this process raised.
    """

    baseline: DriftBaseline
    false_alarms_per_10k: float = 1.0
    shift: float = 0.1
    window: int = 200
    task: str | None = None
    on_alarm: Callable[[DriftAlarm], None] | None = None
    #: the config's risk certificate: labelled losses (:meth:`observe_loss`) are tested against it
    certificate: RiskCertificate | None = None
    #: where the counts live (set from ``state``): this process's, or the state store's for this task
    counters: DriftCounters = field(init=False)
    #: the store to keep the counts in (``None``: in this process)
    state: InitVar[StateStore | None] = None
    #: the last :data:`ALARM_LOG` alarms this process raised
    alarms: deque[DriftAlarm] = field(default_factory=lambda: deque(maxlen=ALARM_LOG))
    #: every alarm this process raised, by kind
    alarm_counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self, state: StateStore | None) -> None:
        arl0 = 10_000 / (self.false_alarms_per_10k / 2)  # half the budget to each test
        self.cusum = EscalationCusum(self.baseline.escalation_rate, self.shift, arl0).params
        tests_per_10k = 10_000 / self.window
        self.alpha = (self.false_alarms_per_10k / 2) / tests_per_10k
        windows = {"rate_window": rate_window(self.window), "window": self.window}
        self.counters = (
            LocalDriftCounters(self.cusum, **windows)
            if state is None
            else state.drift_counters(self.task or "default", self.cusum, **windows)
        )

    @classmethod
    def from_config(
        cls,
        config: DriftConfig,
        *,
        task: str | None = None,
        on_alarm: Callable[[DriftAlarm], None] | None = None,
        certificate: RiskCertificate | None = None,
        state: StateStore | None = None,
    ) -> DriftMonitor | None:
        if not config.enabled:
            return None
        if config.baseline is None:
            from semcascade.errors import ConfigError

            raise ConfigError("drift.enabled needs drift.baseline (written by `semcascade calibrate --drift-baseline`)")
        return cls(
            config.baseline, config.false_alarms_per_10k, config.shift, config.window, task, on_alarm, certificate,
            state,
        )  # fmt: skip

    @property
    def requests(self) -> int:
        """Requests recorded (by every process feeding the counters)."""
        return self.counters.totals().requests

    @property
    def escalations(self) -> int:
        return self.counters.totals().escalations

    @property
    def labelled(self) -> int:
        """Labelled losses recorded (:meth:`observe_loss`)."""
        return self.counters.totals().labelled

    @property
    def escalation_rate(self) -> float:
        """The escalation rate over the last ``rate_window(window)`` requests."""
        return self.counters.totals().escalation_rate

    def observe(self, escalated: bool, score: float | None) -> list[DriftAlarm]:
        """Record one request; the alarms it raised (none when the counters' backend failed)."""
        known = score if score is not None and self.baseline.scores else None
        step = self.counters.step(escalated, known)
        if step is None:
            return []
        raised: list[DriftAlarm] = []
        if step.moved is not None:
            raised.append(
                DriftAlarm(
                    "escalation_rate",
                    self.task,
                    step.requests,
                    self.baseline.escalation_rate,
                    step.escalation_rate,
                    f"escalation rate {'rose' if step.moved == 'up' else 'fell'} from "
                    f"{self.baseline.escalation_rate:.3f} (calibration) to {step.escalation_rate:.3f} "
                    f"(last {step.recent_n} requests)",
                )
            )
        if step.scores is not None:  # a full window, ours to test (non-overlapping: the level is spent once each)
            d, p = ks_pvalue(step.scores, self.baseline.scores)
            if p < self.alpha:
                raised.append(
                    DriftAlarm(
                        "score_distribution",
                        self.task,
                        step.requests,
                        float(np.median(self.baseline.scores)),
                        float(np.median(step.scores)),
                        f"first-tier score distribution moved (KS D={d:.3f}, p={p:.2g} < {self.alpha:.2g}; median "
                        f"{np.median(self.baseline.scores):.3f} -> {np.median(step.scores):.3f})",
                    )
                )
        return self._raise(raised)

    def observe_loss(self, loss: float) -> list[DriftAlarm]:
        """Record one labelled request's loss (in [0, 1], the certificate's ``loss``); the alarms it raised.

        Each full ``window`` of losses is tested against the certified ``eps``; without a certificate
        this records nothing."""
        cert = self.certificate
        if cert is None:
            return []
        if not 0.0 <= loss <= 1.0 or math.isnan(loss):
            raise ValueError(f"a {cert.loss} loss must be in [0, 1], got {loss}")
        losses = self.counters.add_loss(float(loss))
        if losses is None:
            return []
        mean = float(np.mean(losses))
        p = upper_tail_pvalue(mean, len(losses), cert.eps, binary=cert.p_value_method == "binomial")
        if p >= self.alpha:
            return []
        return self._raise(
            [
                DriftAlarm(
                    "certified_loss",
                    self.task,
                    self.requests,
                    cert.eps,
                    mean,
                    f"{cert.loss} {mean:.3f} over the last {len(losses)} labelled requests breaches the certified "
                    f"{cert.eps:g} (p={p:.2g} < {self.alpha:.2g}; certified on n={cert.n}, {cert.date})",
                )
            ]
        )

    def _raise(self, raised: list[DriftAlarm]) -> list[DriftAlarm]:
        for alarm in raised:
            message = alarm.message()
            self.alarms.append(alarm)
            self.alarm_counts[alarm.kind] += 1
            self.counters.add_alarm(alarm.kind, message)
            log.warning("drift alarm: %s", message)
            if self.on_alarm is not None:
                self.on_alarm(alarm)
        return raised

    # the hooks seam ---------------------------------------------------------------------------

    async def start(self, request: HookRequest) -> HookSession | None:
        return self

    def augment(self, tier_index: int, messages: list[dict[str, Any]], tier_name: str) -> list[dict[str, Any]]:
        return messages

    async def finish(self, result: CascadeResult, ctx: FinishContext) -> CascadeResult:
        first = result.trace[0] if result.trace else None
        self.observe(result.escalated, first.score if first is not None else None)
        return result

    async def aclose(self) -> None:
        return None
