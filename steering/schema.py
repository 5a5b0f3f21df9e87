"""Field-by-field checks of data read from files (vector metadata, the session
index): each field has one expected type, and a wrong one is refused with a
message naming the field, the type found and the type wanted.

Python's own conversions are too forgiving for files: `tuple("hello world")`
is eleven one-letter prompts, `int(True)` is layer 1, and a list where a
number belongs ends in a TypeError far from the file. Nothing here converts:
a value is the wanted type or it is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from steering.errors import InvalidInputError


class SchemaError(InvalidInputError):
    """A field of a file has the wrong type or value."""


_NAMES = {
    bool: "true/false",
    int: "a whole number",
    float: "a number",
    str: "text",
    list: "a list",
    dict: "a mapping",
}


def kind_of(value: Any) -> str:
    """How a JSON value is called in messages."""
    if value is None:
        return "null"
    for kind in (bool, int, float, str, list, dict):
        if isinstance(value, kind):
            return _NAMES[kind]
    return type(value).__name__


def _wrong(where: str, value: Any, wanted: str) -> SchemaError:
    plain = isinstance(value, (bool, int, float)) or value is None
    shown = repr(value) if plain else kind_of(value)
    return SchemaError(f"{where} must be {wanted}, got {shown}.")


def mapping(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _wrong(where, value, "a mapping")
    return value


def text(where: str, value: Any, max_chars: int = 10_000, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise _wrong(where, value, "text")
    if len(value) > max_chars:
        raise SchemaError(f"{where} is {len(value):,} characters long; at most {max_chars:,}.")
    if not empty and not value.strip():
        raise SchemaError(f"{where} must not be empty.")
    return value


def whole(where: str, value: Any, minimum: int | None = None) -> int:
    """An int (never a bool, never a float)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong(where, value, "a whole number")
    if minimum is not None and value < minimum:
        raise SchemaError(f"{where} must be {minimum} or more, got {value}.")
    return value


def number(where: str, value: Any) -> float:
    """A finite int or float (never a bool)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _wrong(where, value, "a number")
    if not math.isfinite(value):
        raise SchemaError(f"{where} must be finite, got {value!r}.")
    return float(value)


def text_list(where: str, value: Any, max_items: int) -> list[str]:
    """A list of strings (a single string is refused, not split into letters)."""
    if not isinstance(value, list):
        raise _wrong(where, value, "a list of texts")
    if len(value) > max_items:
        raise SchemaError(f"{where} holds {len(value):,} items; at most {max_items:,}.")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _wrong(f"{where}[{i}]", item, "text")
    return value


def items(where: str, value: Any, max_items: int) -> list[Any]:
    if not isinstance(value, list):
        raise _wrong(where, value, "a list")
    if not value:
        raise SchemaError(f"{where} is empty.")
    if len(value) > max_items:
        raise SchemaError(f"{where} holds {len(value):,} items; at most {max_items:,}.")
    return value
