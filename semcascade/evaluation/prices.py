"""Replay recorded runs under another price table.

Quality and agreement come from the recorded outputs; only money depends on the
prices. A run records, per tier and example, the prompt and completion tokens of
its samples and what its greedy answer cost, so its costs can be recomputed for
any per-token prices without a model call:

    table = load_price_table("gpt-4o-mini/gpt-4o", n_tiers=2)
    run = reprice_run(load_run("eval/results/halueval_qa"), table)

A price table is a preset (a chain of models priced from litellm's bundled,
offline cost map, cheapest first) or a YAML/JSON file::

    name: my-prices            # optional
    tiers:                     # cheapest first, one per tier of the run
      - {input_cost_per_token: 1.5e-7, output_cost_per_token: 6.0e-7}
      - {input_cost_per_token: 2.5e-6, output_cost_per_token: 1.0e-5}

The greedy answer's own token split is recorded since ``greedy_prompt_tokens``
exists; for older records it is recovered from its cost at the run's prices
(which must then charge prompt and completion tokens alike, as the FLOP-priced
local tiers do), taking the prompt as one call's prompt of the sampled call.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from semcascade.errors import CalibrationError
from semcascade.evaluation.records import EvalRun
from semcascade.evaluation.replay import ExampleRecord, TierRecord

__all__ = [
    "PRICE_PRESETS",
    "PriceTable",
    "TierPrice",
    "load_price_table",
    "reprice_records",
    "reprice_run",
    "run_prices",
]


@dataclass(frozen=True)
class TierPrice:
    """USD (or any unit) per prompt and per completion token."""

    input: float
    output: float

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return prompt_tokens * self.input + completion_tokens * self.output


@dataclass(frozen=True)
class PriceTable:
    """Per-tier prices, cheapest tier first; ``source`` says where they came from."""

    name: str
    tiers: tuple[TierPrice, ...]
    source: str

    @property
    def ratio(self) -> float:
        """Cheapest tier's price over the strongest's (mean of input and output ratios)."""
        a, b = self.tiers[0], self.tiers[-1]
        parts = [x / y for x, y in ((a.input, b.input), (a.output, b.output)) if y > 0]
        return sum(parts) / len(parts) if parts else math.nan


#: named price tables: model chains priced from litellm's offline cost map (cheapest first)
PRICE_PRESETS: dict[str, tuple[str, ...]] = {
    "gpt-4o-mini/gpt-4o": ("gpt-4o-mini", "gpt-4o"),
    "claude-haiku/claude-sonnet": ("claude-haiku-4-5", "claude-sonnet-4-5"),
    "gpt-4.1-nano/gpt-4.1-mini/gpt-4.1": ("gpt-4.1-nano", "gpt-4.1-mini", "gpt-4.1"),
}


def _preset(name: str, n_tiers: int) -> PriceTable:
    from semcascade.costs import cost_map_prices

    models = PRICE_PRESETS[name]
    if n_tiers > len(models):
        fitting = [p for p, m in PRICE_PRESETS.items() if len(m) >= n_tiers]
        raise CalibrationError(
            f"price preset {name!r} prices {len(models)} tiers but the run has {n_tiers}; "
            f"use {', '.join(fitting) or 'a price file'} or a price file with {n_tiers} tiers"
        )
    # a chain longer than the run: its strongest models (the run's final tier is the strong one)
    chosen = models[len(models) - n_tiers :]
    tiers = []
    for m in chosen:
        prices = cost_map_prices(m)
        if prices is None:
            raise CalibrationError(f"litellm's cost map has no price for {m!r} (preset {name!r}); use a price file")
        tiers.append(TierPrice(*prices))
    return PriceTable(name, tuple(tiers), "litellm cost map: " + " -> ".join(chosen))


def _from_file(path: Path, n_tiers: int) -> PriceTable:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CalibrationError(f"{path}: cannot read the price table ({exc})") from None
    rows = raw.get("tiers") if isinstance(raw, dict) else None
    if not isinstance(rows, list) or not rows:
        raise CalibrationError(
            f"{path}: a price table needs `tiers:`, a list of "
            "{input_cost_per_token, output_cost_per_token}, cheapest tier first"
        )
    tiers = []
    for i, row in enumerate(rows):
        try:
            inp, out = float(row["input_cost_per_token"]), float(row["output_cost_per_token"])
        except (KeyError, TypeError, ValueError):
            raise CalibrationError(
                f"{path}: tier {i} needs numeric input_cost_per_token and output_cost_per_token"
            ) from None
        if inp < 0 or out < 0 or not (math.isfinite(inp) and math.isfinite(out)):
            raise CalibrationError(f"{path}: tier {i} has a negative or non-finite price")
        tiers.append(TierPrice(inp, out))
    if len(tiers) != n_tiers:
        raise CalibrationError(f"{path}: prices {len(tiers)} tiers but the run has {n_tiers}")
    name = str(raw.get("name") or path.stem)
    return PriceTable(name, tuple(tiers), str(path))


def load_price_table(spec: str | os.PathLike[str], n_tiers: int) -> PriceTable:
    """A preset name (see :data:`PRICE_PRESETS`) or a YAML/JSON price file, for a run of ``n_tiers`` tiers."""
    s = os.fspath(spec)
    if s in PRICE_PRESETS:
        return _preset(s, n_tiers)
    p = Path(s)
    if p.is_file():
        return _from_file(p, n_tiers)
    raise CalibrationError(
        f"unknown price table {s!r}: pass a preset ({', '.join(PRICE_PRESETS)}) or a YAML/JSON price file"
    )


def run_prices(run: EvalRun, config: str | os.PathLike[str] | None = None) -> PriceTable:
    """The prices a run was recorded at: its config's per-token prices (every tier must state them)."""
    from semcascade.calibration.run import run_config_path
    from semcascade.config import load_config

    path = run_config_path(run, config)
    cfg = load_config(path)
    if len(cfg.tiers) != run.n_tiers:
        raise CalibrationError(f"{path} has {len(cfg.tiers)} tiers but {run.path} records {run.n_tiers}")
    tiers = []
    for t in cfg.tiers:
        if t.input_cost_per_token is None and t.output_cost_per_token is None:
            raise CalibrationError(
                f"tier {t.name!r} of {path} states no per-token price, so its recorded costs cannot be "
                "re-priced; set input_cost_per_token/output_cost_per_token"
            )
        tiers.append(TierPrice(t.input_cost_per_token or 0.0, t.output_cost_per_token or 0.0))
    return PriceTable("recorded", tuple(tiers), f"{path} (as recorded)")


def _greedy_tokens(t: TierRecord, old: TierPrice, where: str) -> tuple[float, float]:
    if t.greedy_prompt_tokens is not None and t.greedy_completion_tokens is not None:
        return float(t.greedy_prompt_tokens), float(t.greedy_completion_tokens)
    if not math.isfinite(t.greedy_cost) or t.greedy_cost <= 0:
        return 0.0, 0.0
    if math.isclose(t.greedy_cost, t.cost, rel_tol=1e-9) and t.samples and (t.k or len(t.samples)) == 1:
        return float(t.prompt_tokens), float(t.completion_tokens)
    if not math.isclose(old.input, old.output, rel_tol=1e-9) or old.input <= 0:
        raise CalibrationError(
            f"{where}: the greedy answer's token split was not recorded and its cost cannot be split at "
            "prices that charge prompt and completion tokens differently; re-run `semcascade eval`"
        )
    total = t.greedy_cost / old.input
    prompt = min(float(t.prompt_tokens), max(total - 1.0, 0.0))
    return prompt, total - prompt


def reprice_records(records: Sequence[ExampleRecord], old: PriceTable, new: PriceTable) -> list[ExampleRecord]:
    """``records`` with every tier's sample and greedy costs recomputed at ``new``'s prices."""
    if len(old.tiers) != len(new.tiers):
        raise CalibrationError(f"price table {new.name!r} has {len(new.tiers)} tiers, the run {len(old.tiers)}")
    out = []
    for rec in records:
        tiers = []
        for i, t in enumerate(rec.tiers):
            gp, gc = _greedy_tokens(t, old.tiers[i], f"{rec.id} tier {i}")
            price = new.tiers[i]
            tiers.append(
                dataclasses.replace(
                    t,
                    cost=price.cost(t.prompt_tokens, t.completion_tokens),
                    greedy_cost=price.cost(gp, gc),
                    # an LLM judge's calls were metered at its owning tier's prices: scale them alike
                    scoring_cost={k: _scale(v, old.tiers[i], price) for k, v in t.scoring_cost.items()},
                )
            )
        out.append(ExampleRecord(rec.id, tiers))
    return out


def _scale(cost: float, old: TierPrice, new: TierPrice) -> float:
    base = (old.input + old.output) / 2
    return cost * ((new.input + new.output) / 2) / base if base > 0 else cost


def reprice_run(run: EvalRun, new: PriceTable, *, config: str | os.PathLike[str] | None = None) -> EvalRun:
    """``run`` re-priced at ``new`` (its recorded prices read from its config)."""
    old = run_prices(run, config)
    report = dict(run.report)
    report["prices"] = {"name": new.name, "source": new.source, "ratio": new.ratio}
    return EvalRun(path=run.path, records=reprice_records(run.records, old, new), report=report)
