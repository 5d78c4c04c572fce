"""The ``{name, options}`` shape of every extension point in a config, and plain-JSON option values.

A scorer, a deferral policy and a strategy store are each chosen by registry
name with constructor options::

    scorer: {name: embedding, options: {backend: onnx}}
    policy: {name: threshold}
    memory: {store: {name: sqlite, options: {path: strategies.sqlite}}}

A bare string is the name with no options (``policy: threshold``), so configs
written before these fields took options still load. This module depends on
pydantic only, so both :mod:`semcascade.config` and
:mod:`semcascade.memory.config` can use it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = ["JsonObject", "NamedOptions", "json_data"]


def json_data(value: Any, _path: tuple[int, ...] = ()) -> Any:
    """``value`` if it is plain JSON data (finite numbers, string keys, no self-reference), else ValueError."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be plain JSON data; {value!r} is not a finite number")
    if isinstance(value, dict | list):
        if id(value) in _path:
            raise ValueError("must be plain JSON data; it refers to itself (a YAML alias inside its own anchor)")
        for k, v in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(value, dict) and not isinstance(k, str):
                raise ValueError(f"must be plain JSON data; key {k!r} is not a string")
            json_data(v, (*_path, id(value)))
    elif value is not None and not isinstance(value, str | int | float):
        raise ValueError(f"must be plain JSON data (text, numbers, lists, mappings), not {type(value).__name__}")
    return value


#: A free-form mapping passed on as JSON (litellm parameters, extension options).
JsonObject = Annotated[dict[str, Any], AfterValidator(json_data)]


class NamedOptions(BaseModel):
    """An extension chosen by registry ``name``, built with ``options`` as keyword arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1, description="registry name of the implementation")
    options: JsonObject = Field(default_factory=dict, description="keyword arguments of its constructor")

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value
