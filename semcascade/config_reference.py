"""Render ``docs/configuration.md``, the config reference, from the pydantic config models.

    python -m semcascade.config_reference > docs/configuration.md     # or: make docs

Every field of :class:`~semcascade.config.CascadeConfig` and of each model
nested in it (found through the field annotations, so a new nested model is
included) is listed with its YAML path, type and bounds, default and
description. The description is the field's ``Field(description=...)``;
:data:`NOTES` fills in for fields that have none yet (move a note into the
field's description and drop it here). ``tests/unit/test_config_reference.py``
fails when the committed file differs from what this renders.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from semcascade.config import CascadeConfig

__all__ = ["NOTES", "iter_models", "render"]

REGENERATE = "`make docs` (`python -m semcascade.config_reference > docs/configuration.md`)"

#: Descriptions of the fields whose ``Field()`` has none (model name -> field -> text).
NOTES: dict[str, dict[str, str]] = {
    "CascadeConfig": {
        "tiers": "the tiers, cheapest first (at least one; names unique)",
        "scorer": "the agreement scorer and its options",
        "equivalence": "when two answers count as having the same meaning",
        "aggregation": "a tier's agreement score: the mean pairwise agreement, or the largest meaning cluster's share",
        "system_prompt": "added when the messages have no system message (a tier's own `system_prompt` wins)",
        "max_prompt_chars": "hard cap on the prompt size in characters",
        "local_server": "the managed llama-server that serves `local/NAME` models",
        "memory": "Inter-Cascade strategy memory (off by default)",
    },
    "TierConfig": {
        "name": "unique tier name",
        "model": "a litellm model string (`openai/gpt-4o-mini`, `anthropic/...`, `local/NAME` for the embedded "
        "server); give exactly one of `model` and `models`",
        "models": "a list of model strings: a heterogeneous ensemble, the k samples spread round-robin",
        "temperature": "sampling temperature",
        "max_tokens": "completion tokens per sample at most",
        "api_base": "custom endpoint of the provider",
        "input_cost_per_token": "price per prompt token; `null` = litellm's cost map (unknown models cost 0)",
        "output_cost_per_token": "price per completion token; `null` = litellm's cost map (unknown models cost 0)",
        "max_concurrency": "calls of this tier in flight at once",
        "requests_per_second": "rate limit of this tier's calls; `null` = none",
        "context_window": "prompt + `max_tokens` must fit, else `PromptTooLongError` before any call; "
        "`null` = unknown (local models: the server's slot size)",
        "timeout": "seconds per provider call",
        "seed": "sampling seed, passed through to the call",
        "stop": "stop sequences, passed through to the call",
        "logprobs": "ask for token log-probabilities (a confidence model that uses them needs it)",
        "system_prompt": "this tier's system prompt (instead of the config's)",
        "litellm_params": "extra parameters passed through to the litellm call (plain JSON data)",
    },
    "ScorerConfig": {
        "name": "agreement scorer by registry name: `embedding`, `lexical`, `cross_encoder`, `llm_judge`",
        "options": "the scorer's constructor options (plain JSON data)",
    },
    "EquivalenceConfig": {
        "rule": "`bidirectional`: each answer entails the other (similarity scorers: similarity >= `threshold`); "
        "`no_contradiction`: neither contradicts the other",
        "threshold": "probability / similarity cut-off of the rule",
    },
    "LocalServerConfig": {
        "host": "address the server listens on",
        "threads": "CPU threads of the server",
        "models_max": "models loaded at once",
        "startup_timeout": "seconds to wait for the server to become healthy",
    },
    "BudgetConfig": {
        "max_cost_per_call": "money per `generate` call at most (the tiers' price units); `null` = no cap",
        "max_tokens_per_call": "prompt + completion tokens per `generate` call at most; `null` = no cap",
        "max_cost_per_run": "money per run (one `Cascade`'s lifetime) at most; `null` = no cap",
        "max_tokens_per_run": "tokens per run (one `Cascade`'s lifetime) at most; `null` = no cap",
    },
    "MemoryConfig": {
        "enabled": "turn the strategy memory on",
        "min_agreement_to_learn": "learn from an escalation only when the last tier's agreement is at least this",
        "strategy_max_tokens": "length cap of a written strategy, in tokens",
        "strategy_temperature": "temperature of the teaching call",
        "embedding_backend": "how queries are embedded: the int8 ONNX MiniLM or sentence-transformers",
    },
}


def _nested_models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in get_args(annotation):
        yield from _nested_models(arg)


def iter_models(root: type[BaseModel] = CascadeConfig) -> list[tuple[str, type[BaseModel]]]:
    """``(yaml path, model)`` for ``root`` and every model nested in it, breadth first, each once."""
    out: list[tuple[str, type[BaseModel]]] = []
    queue: list[tuple[str, type[BaseModel]]] = [("", root)]
    seen: set[type[BaseModel]] = set()
    while queue:
        path, model = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        out.append((path, model))
        for name, field in model.model_fields.items():
            many = get_origin(field.annotation) is list or any(
                get_origin(a) is list for a in get_args(field.annotation)
            )
            for child in _nested_models(field.annotation):
                queue.append((f"{path}.{name}".lstrip(".") + ("[]" if many else ""), child))
    return out


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def _type(annotation: Any) -> str:
    origin = get_origin(annotation)
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{_anchor(annotation)})"
    if origin is Literal:
        return " | ".join(f"`{a}`" for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_type(a) for a in get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation) or (Any,)
        return f"list of {_type(item)}"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type):
        return {"str": "text", "int": "integer", "float": "number", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation).replace("typing.", "")


_BOUNDS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "<="),
    (annotated_types.MinLen, "min_length", "length >="),
    (annotated_types.MaxLen, "max_length", "length <="),
)


def _bounds(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for kind, attr, sign in _BOUNDS:
            if isinstance(meta, kind):
                parts.append(f"{sign} {getattr(meta, attr)}")
    return ", ".join(parts)


def _scalar(value: Any) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, BaseModel):
        return "its defaults"
    if isinstance(value, dict | list) and not value:
        return "`{}`" if isinstance(value, dict) else "`[]`"
    return f"`{value}`"


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "(required)"
    return _scalar(field.get_default(call_default_factory=True))


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _description(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    return field.description or NOTES.get(model.__name__, {}).get(name, "")


def _section(path: str, model: type[BaseModel]) -> list[str]:
    where = f"`{path}`" if path else "top level"
    doc = inspect.cleandoc(model.__doc__ or "").replace("``", "`")
    lines = [f'<a id="{_anchor(model)}"></a>', f"## {model.__name__} ({where})", ""]
    if doc:
        lines += [doc, ""]
    lines += ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        kind = _type(field.annotation)
        bounds = _bounds(field)
        if bounds:
            kind += f", {bounds}"
        desc = _description(model, name, field)
        lines.append(f"| `{name}` | {_cell(kind)} | {_cell(_default(field))} | {_cell(desc)} |")
    return [*lines, ""]


def render() -> str:
    """The Markdown of ``docs/configuration.md``."""
    models = iter_models()
    lines = [
        "# Configuration reference",
        "",
        f"<!-- Generated from the pydantic config models by {REGENERATE}; do not edit by hand. -->",
        "",
        "A config is YAML, validated by pydantic; every error names the file and the field",
        "(`configs/x.yaml: tiers[0].k: Input should be greater than or equal to 1`), and an unknown",
        "field is an error. Shipped: `configs/local.yaml` (the embedded default), `configs/openai.yaml`,",
        "`configs/anthropic.yaml`, `configs/mixed.yaml` (a heterogeneous cross-provider ensemble).",
        "",
        "```yaml",
        "tiers:",
        "  - name: cheap",
        "    model: openai/gpt-4o-mini",
        "    k: 5",
        "    threshold: 0.8",
        "  - name: strong",
        "    model: openai/gpt-4o",
        "    k: 1",
        "scorer: {name: embedding}",
        "```",
        "",
        "Sections (a path `a[]` is a list of such objects):",
        "",
        *(f"- [{m.__name__}](#{_anchor(m)}): {f'`{p}`' if p else 'top level'}" for p, m in models),
        "",
    ]
    for path, model in models:
        lines += _section(path, model)
    return "\n".join(lines).rstrip("\n") + "\n"


def stale_notes() -> list[str]:
    """Notes for fields that no longer exist (``Model.field``)."""
    fields = {m.__name__: set(m.model_fields) for _, m in iter_models()}
    return sorted(f"{m}.{f}" for m, notes in NOTES.items() for f in notes if f not in fields.get(m, set()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print docs/configuration.md, rendered from the config models.")
    parser.add_argument("--output", "-o", type=Path, default=None, help="write to this file instead of stdout")
    args = parser.parse_args(argv)
    text = render()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
