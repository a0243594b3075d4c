"""Checks that JSON read back from a file has the shape the tool wrote, so that a hand edit is one clear line.

A file a user can edit (config.json, state.json, a results record) may hold any JSON at all; the code that
uses it assumes types. These checks stand between the two and name the file, the key and what was expected.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from autotrade.errors import ConfigError

Kinds = tuple[type, ...]

_NAMES = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def describe(value: Any) -> str:
    """A JSON value for a message, as it reads in the file: its text when short, else its kind."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else _NAMES.get(type(value), type(value).__name__)


def is_kind(value: Any, kinds: Kinds) -> bool:
    """True when `value` is one of `kinds`; a bool is no number here, an int is a float, a float must be finite."""
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, float):
        return float in kinds and math.isfinite(value)
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def expect(value: Any, kinds: Kinds, file: object, key: str) -> Any:
    """`value` when it is one of `kinds`; else ConfigError naming the file, the key and the kinds expected."""
    if not is_kind(value, kinds):
        wanted = " or ".join(_NAMES.get(kind, kind.__name__) for kind in kinds)
        raise ConfigError(f"{file}: {key} is {describe(value)}, not {wanted}")
    return value


def check_object(raw: Any, schema: Mapping[str, Kinds], file: object, prefix: str = "") -> dict[str, Any]:
    """`raw` as a dict whose keys in `schema` (when present) hold their kinds; ConfigError naming the first that fails.

    `prefix` names where the object sits in the file (`settings.`); empty for the whole file.
    """
    if not isinstance(raw, dict):
        where = f"{prefix.rstrip('.')} is" if prefix else "holds"
        raise ConfigError(f"{file}: {where} {describe(raw)}, not an object")
    for key, kinds in schema.items():
        if key in raw:
            expect(raw[key], kinds, file, f"{prefix}{key}")
    return raw


def schema_of(cls: type) -> dict[str, Kinds]:
    """The JSON kinds each dataclass field accepts, from its type hints (list[int] → list, str | None → str, null).

    JSON has no tuples and no enums: a tuple field reads from a list, a str enum field from a string.
    """
    schema = {}
    for name, hint in typing.get_type_hints(cls).items():
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        schema[name] = tuple(_json_kind(typing.get_origin(option) or option) for option in options)
    return schema


def _json_kind(kind: type) -> type:
    """The JSON kind a Python field type is written as."""
    if kind is tuple:
        return list
    return str if isinstance(kind, type) and issubclass(kind, str) else kind
