"""Property tests of the config loader: any YAML document is a valid config or a ConfigError.

"Valid" means more than "no exception": the returned :class:`CascadeConfig`
holds only finite numbers, dumps to JSON and validates again to an equal
config, so nothing later (cost sums, the response cache key, reports) meets
data it cannot handle.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semcascade.config import CascadeConfig, LocalServerConfig, TierConfig, load_config
from semcascade.errors import ConfigError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# ------------------------------------------------------------------ strategies

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["local/smollm2-135m", "openai/gpt-4o-mini", "OPENAI_API_KEY", "embedding", "lexical", "0.5", ""]),
)
keys = st.one_of(st.text(max_size=12), st.integers(-3, 3), st.booleans(), st.none())
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=20,
)


def _fields(model: type[Any]) -> list[str]:
    return list(model.model_fields)


# Values that are often right for a field: the loader must get past the first error sometimes.
plausible = st.one_of(
    anything,
    st.integers(0, 70),
    st.floats(-0.5, 2.5),
    st.sampled_from(["cheap", "strong", "local/smollm2-135m", "openai/x", "http://127.0.0.1:1/v1", "MY_KEY_VAR"]),
    st.lists(st.sampled_from(["local/smollm2-135m", "openai/a", " "]), max_size=3),
    st.dictionaries(st.sampled_from(["top_p", "api_base", "seed", "x"]), anything, max_size=3),
)


@st.composite
def tier_like(draw: st.DrawFn) -> dict[Any, Any]:
    tier: dict[Any, Any] = {"name": draw(st.sampled_from(["a", "b", "c", ""])), "model": draw(plausible)}
    for name in draw(st.lists(st.sampled_from([*_fields(TierConfig), "bogus"]), max_size=6)):
        tier[name] = draw(plausible)
    if draw(st.booleans()):
        tier["model"] = "openai/m"
    return tier


@st.composite
def config_like(draw: st.DrawFn) -> dict[Any, Any]:
    doc: dict[Any, Any] = {"tiers": draw(st.lists(tier_like(), max_size=3) | plausible)}
    for name in draw(st.lists(st.sampled_from([*_fields(CascadeConfig), "bogus"]), max_size=4)):
        if name == "local_server":
            doc[name] = draw(
                st.dictionaries(st.sampled_from([*_fields(LocalServerConfig), "x"]), plausible, max_size=4) | plausible
            )
        elif name == "scorer":
            doc[name] = draw(st.fixed_dictionaries({"name": plausible}, optional={"options": plausible}) | plausible)
        else:
            doc[name] = draw(plausible)
    return doc


# YAML features that plain dumping never produces: tags, anchors, aliases, odd scalars.
fragments = st.sampled_from(
    [
        "tiers: [{name: a, model: openai/m}]\n",
        "tiers:\n  - name: a\n    model: openai/m\n    litellm_params: &p {x: *p}\n",
        "tiers: [{name: a, model: openai/m, litellm_params: {when: 2001-02-30}}]\n",
        "tiers: [{name: a, model: openai/m, litellm_params: {blob: !!binary /w==}}]\n",
        "tiers: [{name: a, model: openai/m, timeout: .inf}]\n",
        "scorer: {name: lexical, options: &o [*o]}\n",
        "a: !!float abc\n",
        "a: !!int 0x\n",
        "a: !!float\n",
        "a: !!int \n",
        "a: !!bool \n",
        "a: !!timestamp \n",
        "a: !!timestamp 2001-99-99\n",
        "a: !!set {b, c}\n",
        "? [a, b]\n: 1\n",
        "!!python/object:os.system {}\n",
        "%YAML 1.1\n---\n",
        "--- a\n--- b\n",
        "[" * 3000,
        "{" * 3000,
        "- " * 2000 + "x\n",
        "&a [*a, *a]\n",
        "tiers: *undefined\n",
        "\t\x00\x07",
        "tiers: [{name: a, model: openai/m, k: 1e400}]\n",
        "tiers: [{name: a, model: openai/m, api_key_env: sk-abcdefghijklmnopqrstuvwxyz123456}]\n",
    ]
)
documents = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(fragments, st.text(max_size=30)), min_size=1, max_size=4).map("".join),
    anything.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
    config_like().map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
)

# ------------------------------------------------------------------ the property


def _finite_numbers(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_numbers(v) for v in value)
    return True


def check(outcome: Any) -> None:
    """``load_config`` returned a usable config or raised ConfigError (anything else fails the test)."""
    assert isinstance(outcome, CascadeConfig)
    dumped = outcome.model_dump(mode="json")
    assert _finite_numbers(dumped)
    text = json.dumps(dumped, allow_nan=False)
    assert CascadeConfig.model_validate(json.loads(text)) == outcome
    assert outcome.tiers and all(t.model_list for t in outcome.tiers)


def load_or_config_error(source: Any) -> CascadeConfig | None:
    try:
        return load_config(source)
    except ConfigError as exc:
        assert str(exc).strip(), "a ConfigError must say what is wrong"
        return None


@SETTINGS
@given(doc=documents)
def test_any_yaml_text_is_a_config_or_a_config_error(doc: str, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(doc, encoding="utf-8", errors="surrogatepass")
    cfg = load_or_config_error(path)
    if cfg is not None:
        check(cfg)


@SETTINGS
@given(data=st.binary(max_size=200))
def test_any_bytes_are_a_config_or_a_config_error(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    cfg = load_or_config_error(path)
    if cfg is not None:
        check(cfg)


@SETTINGS
@given(doc=st.one_of(config_like(), st.dictionaries(keys, anything, max_size=5)))
def test_any_mapping_is_a_config_or_a_config_error(doc: dict[Any, Any]) -> None:
    cfg = load_or_config_error(doc)
    if cfg is not None:
        check(cfg)


# PyYAML itself does not round-trip control characters (e.g. U+0085 reads back as a line break).
PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))


@SETTINGS
@given(tier=st.fixed_dictionaries({"name": st.just("a"), "model": st.just("openai/m")}, optional={
    "k": st.integers(1, 64), "temperature": st.floats(0, 2), "threshold": st.floats(0, 1),
    "max_tokens": st.integers(1, 4096), "timeout": st.floats(0.1, 600), "seed": st.integers(-5, 5),
    "stop": st.lists(st.text(PRINTABLE, min_size=1, max_size=5), max_size=3),
    "litellm_params": st.dictionaries(st.text(PRINTABLE, max_size=8), st.integers() | st.text(PRINTABLE, max_size=8), max_size=3),
}))  # fmt: skip
def test_well_formed_tiers_always_load_through_yaml(tier: dict[str, Any], tmp_path: Path) -> None:
    """The generator reaches valid configs too, and YAML text and a mapping load the same."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"tiers": [tier]}, allow_unicode=True), encoding="utf-8")
    cfg = load_config(path)
    check(cfg)
    assert cfg == load_config({"tiers": [tier]})


# ------------------------------------------------------------------ the cases hypothesis found


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # YAML scalars Python cannot construct (they raised ValueError / RecursionError before)
        ("tiers: [{name: a, model: openai/m, litellm_params: {when: 2001-02-30}}]\n", "invalid YAML value: day is out of range"),
        ("a: !!float abc\n", "invalid YAML value: could not convert"),
        ("0: !!float", "invalid YAML value: string index out of range"),  # IndexError before
        ("a: !!bool ", "invalid YAML value: ''"),  # KeyError before
        ("a: !!timestamp ", "invalid YAML value: 'NoneType' object has no attribute"),  # AttributeError before
        ("[" * 3000, "nested too deeply"),
        ("- " * 2000 + "x\n", "nested too deeply"),
        # free-form values that are not JSON data (accepted before, then broke JSON dumps and cache keys)
        ("tiers: [{name: a, model: openai/m, litellm_params: &p {x: *p}}]\n", "tiers[0].litellm_params: must be plain JSON data; it refers to itself"),
        ("tiers: [{name: a, model: openai/m}]\nscorer: {name: lexical, options: &o {a: [*o]}}\n", "scorer.options: must be plain JSON data; it refers to itself"),
        ("tiers: [{name: a, model: openai/m, litellm_params: {blob: !!binary /w==}}]\n", "tiers[0].litellm_params: must be plain JSON data (text, numbers, lists, mappings), not bytes"),
        ("tiers: [{name: a, model: openai/m, litellm_params: {top_p: .nan}}]\n", "tiers[0].litellm_params: must be plain JSON data; nan is not a finite number"),
        ("tiers: [{name: a, model: openai/m, litellm_params: {w: [2001-01-01]}}]\n", "not date"),
        # infinite numbers (an infinite price or timeout was accepted before)
        ("tiers: [{name: a, model: openai/m, timeout: .inf}]\n", "tiers[0].timeout: Input should be a finite number"),
        ("tiers: [{name: a, model: openai/m, input_cost_per_token: .inf}]\n", "tiers[0].input_cost_per_token: Input should be a finite number"),
    ],
)  # fmt: skip
def test_found_cases_are_config_errors_naming_the_file_and_field(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
