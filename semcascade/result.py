"""Typed results of a cascade call: per-sample, per-tier and whole-request."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CascadeResult", "MemoryTrace", "RetrievedStrategy", "SampleTrace", "SpeculationTrace", "TierTrace"]

TierDecision = Literal["accept", "escalate", "abstain", "failed"]
#: what became of a speculative start of the next tier (see :class:`SpeculationTrace`)
SpeculationOutcome = Literal["used", "wasted", "cancelled", "refused"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class SampleTrace(_Frozen):
    """One sampled output of a tier.

    ``text`` is the model's output; ``answer`` the span that is compared and
    returned (see :mod:`semcascade.answers`; the whole text by default).
    """

    index: int
    model: str
    text: str
    completion_tokens: int
    finish_reason: str | None = None
    mean_logprob: float | None = None
    #: lowest and first token log-probability of the output (token-probability confidence)
    min_logprob: float | None = None
    first_logprob: float | None = None
    tokens_estimated: bool = False
    #: drawn at temperature 0 (``include_greedy``)
    greedy: bool = False
    answer: str = ""

    @model_validator(mode="after")
    def _default_answer(self) -> SampleTrace:
        if not self.answer and self.text:
            object.__setattr__(self, "answer", self.text)
        return self


class TierTrace(_Frozen):
    """What one tier did for a request."""

    tier: str
    models: list[str]
    samples: list[SampleTrace]
    agreement_matrix: list[list[float]] = Field(default_factory=list)
    clusters: list[list[int]] = Field(default_factory=list)
    agreement: float | None = None
    #: P(answer right) from the tier's confidence model, when it has one (then it, not agreement, is decided on)
    confidence: float | None = None
    #: the signal the tier decided on (``embedding``, ``p_mean``, ``confidence`` ...) and its score
    signal: str | None = None
    score: float | None = None
    threshold: float
    representative: int | None = None
    decision: TierDecision
    reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    flops: float | None = None
    latency_s: float = 0.0
    scoring_latency_s: float = 0.0
    errors: list[str] = Field(default_factory=list)
    #: retries of transient provider failures made for this tier
    retries: int = 0

    @property
    def answer(self) -> str | None:
        if self.representative is None:
            return None
        return self.samples[self.representative].answer


class RetrievedStrategy(_Frozen):
    """A stored strategy retrieved for this request."""

    id: int | None
    similarity: float
    strategy: str


class MemoryTrace(_Frozen):
    """What the strategy memory (Inter-Cascade) did for a request; its cost is in the result's cost."""

    retrieved: list[RetrievedStrategy] = Field(default_factory=list)
    injected_into: str | None = None
    learned: bool = False
    strategy: str | None = None
    strategy_id: int | None = None
    note: str = ""
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0
    errors: list[str] = Field(default_factory=list)


class SpeculationTrace(_Frozen):
    """A speculative start of the next tier (``speculate:`` on a tier; :mod:`semcascade.speculation`).

    ``outcome``: ``used`` (this tier escalated: the speculative samples are the next tier's, no second
    call), ``wasted`` (this tier accepted after the next tier had come back: billed, unused),
    ``cancelled`` (this tier accepted, or the call ended, while the next tier was in flight: it was
    cancelled) or ``refused`` (the rule fired but the next tier's spend did not fit the budget: not started).
    ``cost``/tokens: what the provider reported for the speculative requests that came back (for a
    ``wasted`` or ``cancelled`` one they are added to the result's totals; a ``used`` one's are its
    tier's). ``charged_cost``: what the budget was charged; for requests cut in flight the provider
    may bill what they generated, unknown here, so their upper bound is charged (``charged_cost`` >= ``cost``).
    """

    #: the tier whose early signal fired, and the tier started speculatively
    source: str
    tier: str
    trigger: Literal["disagree", "after"]
    #: seconds after the source tier started that the next tier was started
    started_after_s: float
    outcome: SpeculationOutcome
    reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    charged_cost: float = 0.0


class CascadeResult(_Frozen):
    """The answer of a cascade call and how it was reached.

    ``text`` is the consensus answer of the tier that answered (``tier``); on
    abstention ``abstained`` is true and ``text`` holds the last tier's best
    guess, so nothing paid for is lost.
    """

    id: str = Field(default_factory=lambda: f"semcascade-{uuid.uuid4().hex[:24]}")
    created: int = Field(default_factory=lambda: int(time.time()))
    text: str
    tier: str
    tier_index: int
    agreement: float | None
    abstained: bool = False
    trace: list[TierTrace]
    prompt_tokens: int
    completion_tokens: int
    cost: float
    flops: float | None = None
    latency_s: float
    memory: MemoryTrace | None = None
    #: ``final_answer: consensus``: the tier whose sample won the vote over every tier that ran, and its support
    voted_from: str | None = None
    #: the config task that answered (``generate(..., task=NAME)``), when the config defines tasks
    task: str | None = None
    vote_support: float | None = None
    #: the call stopped early because the next tier could exceed the budget / the deadline passed;
    #: ``text`` is then the best answer so far and ``stop_reason`` says why
    budget_exhausted: bool = False
    #: answered from the answer cache (``state.answer_cache``): no tier ran; ``cached_cost`` is what the
    #: answer cost when it was computed (this result's ``cost`` is 0)
    answer_cache_hit: bool = False
    cached_cost: float | None = None
    deadline_exceeded: bool = False
    stop_reason: str | None = None
    #: speculative starts of a next tier during this call (``speculate:`` on a tier), in order
    speculation: list[SpeculationTrace] = Field(default_factory=list)

    @property
    def speculated(self) -> str | None:
        """What became of this call's speculation (``used``, ``wasted``, ``cancelled``, ``refused``;
        the last one when several tiers speculated), or ``None`` when none started."""
        return self.speculation[-1].outcome if self.speculation else None

    @property
    def escalated(self) -> bool:
        return self.tier_index > 0

    @property
    def tiers_tried(self) -> list[str]:
        return [t.tier for t in self.trace]

    def to_openai(self) -> Any:
        """This result as an ``openai`` ``ChatCompletion`` (what litellm/OpenAI code expects).

        ``model`` is the answering tier's model; the full trace stays available
        on this object. ``finish_reason`` is ``content_filter`` on abstention so
        that callers checking it notice the flag for human review.
        """
        from openai.types.chat import ChatCompletion

        answering = self.trace[self.tier_index]
        sample = answering.samples[answering.representative] if answering.representative is not None else None
        finish = (
            "content_filter"
            if self.abstained
            else (sample.finish_reason if sample and sample.finish_reason in ("stop", "length") else "stop")
        )
        return ChatCompletion.model_validate(
            {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": sample.model if sample else answering.models[0],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": finish,
                        "message": {"role": "assistant", "content": self.text},
                    }
                ],
                "usage": {
                    "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens,
                    "total_tokens": self.prompt_tokens + self.completion_tokens,
                },
            }
        )

    def summary(self) -> str:
        """A compact multi-line trace for terminals."""
        lines = []
        for t in self.trace:
            agr = "n/a" if t.agreement is None else f"{t.agreement:.2f}"
            lines.append(
                f"  {t.tier:<12} k={len(t.samples):<2} agreement={agr:<5} threshold={t.threshold:<4g} "
                f"-> {t.decision:<8} ({t.reason}); {t.prompt_tokens}+{t.completion_tokens} tok, "
                f"cost {t.cost:.3g}, {t.latency_s:.2f}s"
            )
        if self.memory is not None:
            m = self.memory
            lines.append(f"  memory: {len(m.retrieved)} retrieved, injected into {m.injected_into or '-'}; {m.note}")
        flag = " [ABSTAINED: flag for human review]" if self.abstained else ""
        if self.stop_reason:
            flag += f" [STOPPED EARLY: {self.stop_reason}]"
        lines.append(
            f"  answered by {self.tier!r}{flag}; escalations {len(self.trace) - 1}; "
            f"cost {self.cost:.3g}; latency {self.latency_s:.2f}s"
        )
        return "\n".join(lines)
