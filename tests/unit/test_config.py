from __future__ import annotations

from pathlib import Path

import pytest

from semcascade.config import DEFAULT_CONFIG_PATH, CascadeConfig, load_config
from semcascade.errors import ConfigError, MissingAPIKeyError

REPO = Path(__file__).resolve().parents[2]
TWO_TIERS = """
tiers:
  - {name: cheap, model: openai/gpt-4o-mini, k: 3, threshold: 0.8}
  - {name: strong, model: openai/gpt-4o, k: 1}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["local.yaml", "openai.yaml", "anthropic.yaml", "mixed.yaml"])
def test_shipped_configs_validate(name: str) -> None:
    cfg = load_config(REPO / "configs" / name)
    assert len(cfg.tiers) >= 2
    assert cfg.tiers[-1].name != cfg.tiers[0].name


def test_default_is_local_yaml() -> None:
    assert DEFAULT_CONFIG_PATH.resolve() == (REPO / "configs" / "local.yaml").resolve()
    cfg = load_config(None)
    assert cfg.uses_local_server
    assert [t.model for t in cfg.tiers] == ["local/qwen2.5-coder-0.5b", "local/qwen2.5-coder-1.5b"]
    # the shipped cheap tier decides on its fitted confidence model, which needs token logprobs
    assert cfg.tiers[0].confidence_model == "builtin:qwen05-rc-v1" and cfg.tiers[0].logprobs
    from semcascade import load_confidence_model

    model = load_confidence_model("builtin:qwen05-rc-v1")
    assert model.provenance["split"] == "calibration" and model.provenance["dataset"] == "halueval_qa"


def test_valid_two_tier(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, TWO_TIERS))
    assert isinstance(cfg, CascadeConfig)
    assert cfg.tiers[0].k == 3 and cfg.tiers[0].threshold == 0.8
    assert cfg.tiers[1].model_list == ["openai/gpt-4o"]
    assert not cfg.uses_local_server


def test_missing_file_names_path() -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config("nope.yaml")


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"c\.yaml: malformed YAML at line \d+, column \d+"):
        load_config(write(tmp_path, "tiers:\n  - [unclosed\n"))


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("", "config is empty"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("tiers: []\n", r"tiers: List should have at least 1 item"),
        ("tiers:\n  - {name: a, model: m, k: 0}\n", r"tiers\[0\]\.k: Input should be greater than or equal to 1"),
        (
            "tiers:\n  - {name: a, model: m, threshold: 1.5}\n",
            r"tiers\[0\]\.threshold: Input should be less than or equal to 1",
        ),
        ("tiers:\n  - {name: a, model: m, threshold: -0.1}\n", r"tiers\[0\]\.threshold"),
        ("tiers:\n  - {name: a}\n", r"tiers\[0\]: give exactly one of 'model'"),
        ("tiers:\n  - {name: a, model: m, models: [x]}\n", r"give exactly one of"),
        ("tiers:\n  - {name: a, model: m, temprature: 0.2}\n", r"tiers\[0\]\.temprature: unknown field"),
        ("tiers:\n  - {name: a, model: m}\n  - {name: a, model: n}\n", "tier names must be unique; repeated: a"),
        (
            "tiers:\n  - {name: a, model: m}\nfinal_action: shrug\n",
            r"final_action: Input should be 'answer' or 'abstain'",
        ),
    ],
)
def test_semantic_errors_name_the_field(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(write(tmp_path, text))
    assert str(info.value).startswith(str(tmp_path / "c.yaml"))


def test_pasted_key_is_rejected_without_echo(tmp_path: Path) -> None:
    key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f"tiers:\n  - {{name: a, model: m, api_key_env: {key}}}\n"))
    assert key not in str(info.value)
    assert "NAME of an environment variable" in str(info.value)


def test_missing_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEMCASCADE_TEST_KEY", raising=False)
    cfg = load_config({"tiers": [{"name": "a", "model": "openai/x", "api_key_env": "SEMCASCADE_TEST_KEY"}]})
    with pytest.raises(MissingAPIKeyError, match=r"\$SEMCASCADE_TEST_KEY, which is not set"):
        cfg.tiers[0].api_key()
    monkeypatch.setenv("SEMCASCADE_TEST_KEY", "secret-value-123")
    assert cfg.tiers[0].api_key() == "secret-value-123"


def test_mapping_and_passthrough() -> None:
    cfg = load_config({"tiers": [{"name": "a", "models": ["x/1", "y/2"], "k": 4}]})
    assert cfg.tiers[0].model_list == ["x/1", "y/2"]
    assert load_config(cfg) is cfg


def test_local_slot_context() -> None:
    cfg = load_config(
        {"tiers": [{"name": "a", "model": "local/smollm2-135m"}], "local_server": {"parallel": 4, "ctx_size": 8192}}
    )
    assert cfg.local_server.slot_context == 2048
