"""docs/configuration.md is what semcascade.config_reference renders from the config models."""

from __future__ import annotations

import difflib
from pathlib import Path

from semcascade.config_reference import NOTES, REGENERATE, iter_models, render, stale_notes

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "configuration.md"


def test_committed_reference_is_current() -> None:
    expected = render()
    committed = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if committed != expected:
        diff = "".join(
            list(difflib.unified_diff(committed.splitlines(True), expected.splitlines(True), str(DOC), "rendered"))[:40]
        )
        raise AssertionError(
            f"docs/configuration.md is out of date with the config models; regenerate: {REGENERATE}\n{diff}"
        )


def test_every_model_and_field_is_documented() -> None:
    names = [m.__name__ for _, m in iter_models()]
    for model in ("CascadeConfig", "TierConfig", "ScorerConfig", "EquivalenceConfig", "LocalServerConfig",
                  "BudgetConfig", "RetryConfig", "MemoryConfig"):  # fmt: skip
        assert model in names
    undocumented = [
        f"{m.__name__}.{name}"
        for _, m in iter_models()
        for name, field in m.model_fields.items()
        if not field.description and name not in NOTES.get(m.__name__, {})
    ]
    assert not undocumented, f"give these fields a Field(description=...): {', '.join(undocumented)}"
    doc = render()
    for field in ("deadline_s", "budget", "memory", "retry", "max_cost_per_call", "backoff_max_s"):
        assert f"`{field}`" in doc


def test_no_stale_notes() -> None:
    assert not stale_notes(), f"semcascade/config_reference.py NOTES name fields that are gone: {stale_notes()}"


def test_readme_links_to_the_reference() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/configuration.md" in readme
    assert "| `tiers` |" not in readme and "| `k` |" not in readme, "the README should link, not copy, the tables"
