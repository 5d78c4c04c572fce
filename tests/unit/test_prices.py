"""Re-pricing recorded runs: identity at the recorded prices, exact arithmetic at others, presets from the
offline cost map, and clear errors for tables that do not fit."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from semcascade.errors import CalibrationError
from semcascade.evaluation.prices import (
    PRICE_PRESETS,
    PriceTable,
    TierPrice,
    load_price_table,
    reprice_records,
    reprice_run,
    run_prices,
)
from semcascade.evaluation.records import load_run
from semcascade.evaluation.replay import ExampleRecord, TierRecord, summarize, tier_alone

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "eval" / "results" / "halueval_qa"


def _tier(prompt: int, completion: int, price: float, *, greedy: tuple[int, int] | None, k: int) -> TierRecord:
    t = TierRecord(
        samples=["a"] * k,
        mean_logprobs=[None] * k,
        cost=(prompt + completion) * price,
        latency_s=1.0,
        prompt_tokens=prompt,
        completion_tokens=completion,
        k=k,
    )
    if greedy is None:  # k=1 greedy tier: its one call is the greedy answer
        t.greedy_cost = t.cost
    else:
        t.greedy_cost = sum(greedy) * price
    return t


OLD = PriceTable("old", (TierPrice(1.0, 1.0), TierPrice(4.0, 4.0)), "test")
NEW = PriceTable("new", (TierPrice(0.1, 0.4), TierPrice(2.0, 8.0)), "test")


def test_recorded_token_splits_are_priced_exactly() -> None:
    t0 = _tier(100, 50, 1.0, greedy=(100, 10), k=5)  # greedy split recovered from its cost
    t1 = _tier(100, 7, 4.0, greedy=None, k=1)
    t1.greedy_prompt_tokens, t1.greedy_completion_tokens = 100, 7
    (rec,) = reprice_records([ExampleRecord("e", [t0, t1])], OLD, NEW)
    a, b = rec.tiers
    assert a.cost == pytest.approx(100 * 0.1 + 50 * 0.4)
    assert a.greedy_cost == pytest.approx(100 * 0.1 + 10 * 0.4)
    assert b.cost == pytest.approx(100 * 2.0 + 7 * 8.0)
    assert b.greedy_cost == pytest.approx(b.cost)
    assert t0.cost == 150.0  # the input records are not modified


def test_unsplittable_greedy_cost_is_an_error_not_a_guess() -> None:
    old = PriceTable("old", (TierPrice(1.0, 3.0), TierPrice(4.0, 4.0)), "test")
    t0 = _tier(100, 50, 1.0, greedy=(100, 10), k=5)
    with pytest.raises(CalibrationError, match="token split was not recorded"):
        reprice_records([ExampleRecord("e", [t0, _tier(1, 1, 4.0, greedy=None, k=1)])], old, NEW)


def test_identity_at_recorded_prices_on_a_committed_run() -> None:
    run = load_run(RUN)
    same = reprice_run(run, run_prices(run))
    for a, b in zip(run.records, same.records, strict=True):
        for x, y in zip(a.tiers, b.tiers, strict=True):
            assert math.isclose(x.cost, y.cost, rel_tol=1e-9)
            assert math.isclose(x.greedy_cost, y.greedy_cost, rel_tol=1e-9)


def test_preset_changes_cost_ratios_not_quality() -> None:
    run = load_run(RUN)
    cheap = reprice_run(run, load_price_table("gpt-4o-mini/gpt-4o", run.n_tiers))
    for r in (run, cheap):
        assert r.n_tiers == 2
    q = [summarize(tier_alone(r.records, 0, mode="greedy"), 2).quality for r in (run, cheap)]
    assert q[0] == q[1]

    def ratio(r: object) -> float:
        recs = r.records  # type: ignore[attr-defined]
        return (
            summarize(tier_alone(recs, 0, mode="greedy"), 2).cost
            / summarize(tier_alone(recs, 1, mode="greedy"), 2).cost
        )

    # the 0.5B at FLOP prices costs ~a third of the 1.5B; at gpt-4o-mini/gpt-4o prices ~6%
    assert 0.25 < ratio(run) < 0.4
    assert 0.03 < ratio(cheap) < 0.1
    assert cheap.report["prices"]["name"] == "gpt-4o-mini/gpt-4o"


def test_presets_come_from_the_offline_cost_map() -> None:
    for name, models in PRICE_PRESETS.items():
        table = load_price_table(name, len(models))
        assert len(table.tiers) == len(models)
        assert all(t.input > 0 and t.output > 0 for t in table.tiers)
        assert table.ratio < 1.0
    three = load_price_table("gpt-4.1-nano/gpt-4.1-mini/gpt-4.1", 2)  # the strongest two of the chain
    assert three.source.endswith("gpt-4.1-mini -> gpt-4.1")


def test_price_file(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(
        "name: mine\ntiers:\n  - {input_cost_per_token: 1e-7, output_cost_per_token: 2e-7}\n"
        "  - {input_cost_per_token: 1e-6, output_cost_per_token: 2e-6}\n"
    )
    t = load_price_table(p, 2)
    assert t.name == "mine" and t.tiers[1] == TierPrice(1e-6, 2e-6)
    assert t.ratio == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("tiers: []\n", "needs `tiers:`"),
        ("tiers:\n  - {input_cost_per_token: x, output_cost_per_token: 1}\n", "numeric"),
        ("tiers:\n  - {input_cost_per_token: -1, output_cost_per_token: 1}\n  - {input_cost_per_token: 1, "
         "output_cost_per_token: 1}\n", "negative"),
        ("tiers:\n  - {input_cost_per_token: 1, output_cost_per_token: 1}\n", "prices 1 tiers but the run has 2"),
        ("tiers: [\n", "cannot read"),
    ],
)  # fmt: skip
def test_bad_price_files_are_named(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    with pytest.raises(CalibrationError, match=match):
        load_price_table(p, 2)


def test_unknown_table_and_short_preset() -> None:
    with pytest.raises(CalibrationError, match="unknown price table 'nope'"):
        load_price_table("nope", 2)
    with pytest.raises(CalibrationError, match="prices 2 tiers but the run has 3"):
        load_price_table("gpt-4o-mini/gpt-4o", 3)


def test_mismatched_tables() -> None:
    one = PriceTable("one", (TierPrice(1.0, 1.0),), "test")
    rec = ExampleRecord("e", [_tier(1, 1, 1.0, greedy=None, k=1), _tier(1, 1, 4.0, greedy=None, k=1)])
    with pytest.raises(CalibrationError, match="has 1 tiers"):
        reprice_records([rec], OLD, one)
    assert dataclasses.replace(rec.tiers[0]).cost == 2.0
