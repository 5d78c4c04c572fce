"""NLI agreement judged by a chat model from its next-token probabilities.

For a pair (a, b) the judge is asked, once per direction, whether answer B
must be right if answer A is right, and replies with one token. With
``max_tokens=1``, ``temperature=0``, ``logprobs=True`` and ``top_logprobs=10``
the reply's first-token alternatives give P(yes), P(no) and P(maybe); tokens
are matched case-insensitively after stripping spaces and punctuation
(``"Yes"``, ``" yes"`` and ``"YES."`` all count as yes, and their
probabilities add up). Then

* ``forward``  = P(yes) / (P(yes) + P(no) + P(maybe)) for a => b,
* ``backward`` = the same for b => a,
* ``contradiction`` = the mean over both directions of P(no) / (same sum).

If none of the alternatives is yes/no/maybe, that direction counts as
"maybe" (entailment 0, contradiction 0), which leans towards escalation;
``unparsed`` counts such replies.

All directions of all pairs are sent concurrently, at most
``max_concurrency`` at a time. The provider must return ``top_logprobs``
(OpenAI-compatible servers such as llama-server do); otherwise a
:class:`~semcascade.errors.ScorerError` explains so.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Mapping, Sequence

from semcascade._limits import PerLoopSemaphore
from semcascade._retry import RetryingProvider
from semcascade.errors import ProviderError, ScorerError
from semcascade.providers import Completion, CompletionRequest, LiteLLMProvider, Provider
from semcascade.scoring.base import PairJudgement, ScorerKind

__all__ = ["DEFAULT_PROMPT_TEMPLATE", "DEFAULT_SYSTEM_PROMPT", "LLMJudgeNLIScorer", "read_verdict"]

logger = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = "Reply with one word: yes, no, or maybe."
#: fields: {question}, {premise} (answer A), {hypothesis} (answer B); write literal braces as {{ }}
#: Chosen on hand-made pairs with qwen2.5-coder-1.5b: 12/12 same-vs-contradicting answer
#: pairs separated at 0.5 (min of both directions), against 11/12 for two other phrasings.
DEFAULT_PROMPT_TEMPLATE = (
    'Premise: The answer to "{question}" is: {premise}\n'
    'Hypothesis: The answer to "{question}" is: {hypothesis}\n'
    "Does the premise entail the hypothesis?"
)

_VERDICTS = ("yes", "no", "maybe")
_NON_WORD = re.compile(r"[\W_]+")
_TOP_LOGPROBS = 10


def _verdict_of(token: str) -> str | None:
    cleaned = _NON_WORD.sub("", token).lower()
    if cleaned.startswith("ġ"):  # byte-level BPE space marker, if a server returns raw pieces
        cleaned = cleaned[1:]
    return cleaned if cleaned in _VERDICTS else None


def read_verdict(chosen: tuple[str, float] | None, top: Mapping[str, float]) -> dict[str, float] | None:
    """P(yes), P(no), P(maybe) normalised over the three, from first-token logprobs.

    ``top`` maps alternative tokens to logprobs; ``chosen`` (token, logprob) is
    the generated token, added when ``top`` lacks it. Returns ``None`` if no
    alternative is yes/no/maybe.
    """
    candidates = dict(top)
    if chosen is not None:
        candidates.setdefault(chosen[0], chosen[1])
    mass = dict.fromkeys(_VERDICTS, 0.0)
    for token, logprob in candidates.items():
        verdict = _verdict_of(token)
        if verdict is not None and math.isfinite(logprob):
            mass[verdict] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0.0:
        return None
    return {k: v / total for k, v in mass.items()}


class LLMJudgeNLIScorer:
    """Entailment in both directions, judged by a chat model's first-token yes/no/maybe probabilities.

    ``model``: a resolved litellm model string (e.g. ``"openai/qwen2.5-coder-1.5b"``).
    ``api_base``/``api_key``: passed to the provider (the key never appears in
    reprs or logs). ``provider``: defaults to :class:`LiteLLMProvider` with retries.
    ``prompt_template``/``system_prompt``: override the prompt (fields
    ``{question}``, ``{premise}``, ``{hypothesis}``).
    """

    name: str = "llm_judge"
    kind: ScorerKind = "nli"

    def __init__(
        self,
        model: str,
        api_base: str | None = None,
        api_key: str | None = None,
        provider: Provider | None = None,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    ) -> None:
        if not model or not isinstance(model, str):
            raise ScorerError("llm_judge scorer: 'model' must be a litellm model string, e.g. 'openai/gpt-4o-mini'")
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ScorerError(f"llm_judge scorer: max_concurrency must be a positive integer, got {max_concurrency!r}")
        if timeout <= 0:
            raise ScorerError(f"llm_judge scorer: timeout must be positive seconds, got {timeout!r}")
        try:
            prompt_template.format(question="q", premise="a", hypothesis="b")
        except (KeyError, IndexError, ValueError) as exc:
            raise ScorerError(
                f"llm_judge scorer: bad prompt_template ({type(exc).__name__}: {exc}); use only the fields "
                "{question}, {premise}, {hypothesis} and write literal braces as {{ }}"
            ) from None
        if "{premise}" not in prompt_template or "{hypothesis}" not in prompt_template:
            raise ScorerError("llm_judge scorer: prompt_template must contain {premise} and {hypothesis}")
        self.model = model
        self.api_base = api_base
        self._api_key = api_key
        self.provider: Provider = provider if provider is not None else RetryingProvider(LiteLLMProvider())
        self.max_concurrency = max_concurrency
        self.timeout = float(timeout)
        self.prompt_template = prompt_template
        self.system_prompt = system_prompt
        self.unparsed = 0
        self._semaphore = PerLoopSemaphore(max_concurrency)

    def __repr__(self) -> str:
        return (
            f"LLMJudgeNLIScorer(model={self.model!r}, api_base={self.api_base!r}, "
            f"max_concurrency={self.max_concurrency}, timeout={self.timeout:g})"
        )

    def build_request(self, question: str, premise: str, hypothesis: str) -> CompletionRequest:
        """The request asking whether ``premise`` (answer A) entails ``hypothesis`` (answer B)."""
        user = self.prompt_template.format(
            question=question.strip(), premise=premise.strip(), hypothesis=hypothesis.strip()
        )
        messages: list[dict[str, str]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": user})
        return CompletionRequest(
            model=self.model,
            messages=messages,
            n=1,
            temperature=0.0,
            max_tokens=1,
            api_base=self.api_base,
            api_key=self._api_key,
            timeout=self.timeout,
            logprobs=True,
            top_logprobs=_TOP_LOGPROBS,
            tier="llm_judge scorer",
        )

    def _parse(self, completion: Completion) -> dict[str, float]:
        choice = completion.choices[0] if completion.choices else None
        first = choice.logprobs[0] if choice is not None and choice.logprobs else None
        if first is None or not first.top:
            raise ScorerError(
                f"llm_judge scorer: the judge model {self.model!r} returned no top_logprobs; the judge "
                "model/provider must return top_logprobs (use an OpenAI-compatible server such as "
                "llama-server, or another scorer)"
            )
        probs = read_verdict((first.token, first.logprob), first.top)
        if probs is None:
            self.unparsed += 1
            logger.debug("llm_judge: no yes/no/maybe among the judge's top tokens %s", sorted(first.top))
            return {"yes": 0.0, "no": 0.0, "maybe": 1.0}
        return probs

    async def _ask(self, question: str, premise: str, hypothesis: str) -> dict[str, float]:
        request = self.build_request(question, premise, hypothesis)
        async with self._semaphore.get():
            try:
                completion = await self.provider.complete(request)
            except ProviderError as exc:
                raise ScorerError(
                    f"llm_judge scorer: the judge call failed ({exc}); check the judge model, its api_base "
                    "and that the server is running"
                ) from exc
        return self._parse(completion)

    async def entailment(self, question: str, premise: str, hypothesis: str) -> dict[str, float]:
        """P(yes), P(no), P(maybe) for ``premise`` => ``hypothesis`` only: one judge call, one direction."""
        return await self._ask(question, premise, hypothesis)

    async def judge(self, question: str, pairs: Sequence[tuple[str, str]]) -> list[PairJudgement]:
        # Each distinct direction (premise, hypothesis) is asked once.
        directions: dict[tuple[str, str], int] = {}
        for a, b in pairs:
            directions.setdefault((a, b), len(directions))
            directions.setdefault((b, a), len(directions))
        tasks = [asyncio.ensure_future(self._ask(question, p, h)) for p, h in directions]
        try:
            answers = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # do not leave the other judge calls running
                task.cancel()
            raise
        out = []
        for a, b in pairs:
            fwd, bwd = answers[directions[(a, b)]], answers[directions[(b, a)]]
            out.append(
                PairJudgement(
                    forward=fwd["yes"],
                    backward=bwd["yes"],
                    contradiction=(fwd["no"] + bwd["no"]) / 2.0,
                )
            )
        return out
