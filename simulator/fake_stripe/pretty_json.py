"""`json.dumps(obj, indent=1, sort_keys=True, default=str)`, byte for byte, about three times as
fast: how a run's final state and ledgers are written (orjson, which the hot paths use, knows
no one-space indent; simulator/json_codec.py).

With an indent, the standard library (3.11) falls back to its pure-Python encoder (generators,
one per nesting level per value); this writes the same text with plain recursion into
containers only (scalars are written in the loop, not by a call each), using the standard
library's own (C) string quoting. Anything but dicts with string keys, lists, strings, numbers,
booleans and None goes to `json.dumps` itself, so odd values are answered exactly as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

_INFINITY = float("inf")


class _Unsupported(Exception):
    pass


def dumps_sorted(obj: Any, *, indent: int = 1) -> str:
    """Same as `json.dumps(obj, indent=indent, sort_keys=True, default=str)` (the run's files)."""
    try:
        return _render(obj, " " * indent)
    except (_Unsupported, RecursionError, TypeError):  # TypeError: keys that do not sort
        return json.dumps(obj, indent=indent, sort_keys=True, default=str)


def _render(obj: Any, unit: str) -> str:
    """The pure-Python encoder's text for a dict or list; raises `_Unsupported` for anything it
    would not write as plain JSON of these types (the caller then asks `json.dumps`, which also
    writes a bare scalar)."""
    if type(obj) is not dict and type(obj) is not list:
        raise _Unsupported
    parts: list[str] = []
    _container(obj, "\n", unit, parts.append)
    return "".join(parts)


def _container(value: Any, newline: str, unit: str, append: Callable[[str], None]) -> None:
    """One dict or list, appended as text. A module function, not a closure of `_render`: a
    closure that calls itself is a reference cycle, and each one kept its row's text alive
    until the cyclic collector came by (most of a simulated run's cyclic garbage: 30 objects
    per purchase then, 7 now)."""
    is_dict = type(value) is dict
    if not value:
        append("{}" if is_dict else "[]")
        return
    quote = encode_basestring_ascii
    inner = newline + unit
    if is_dict:
        items: Any = sorted(value.items())
    else:
        items = zip(value, value, strict=True)  # (item, item): one loop serves both kinds
    separator = ("{" if is_dict else "[") + inner
    for key, item in items:
        append(separator)
        separator = "," + inner
        if is_dict:
            if type(key) is not str:
                raise _Unsupported  # json.dumps converts or refuses such keys
            append(quote(key))
            append(": ")
        kind = type(item)
        if kind is str:
            append(quote(item))
        elif item is None:
            append("null")
        elif item is True:
            append("true")
        elif item is False:
            append("false")
        elif kind is int:
            append(int.__repr__(item))
        elif kind is dict or kind is list:
            _container(item, inner, unit, append)
        elif kind is float:
            append(_float(item))
        else:
            raise _Unsupported
    append(newline + ("}" if is_dict else "]"))


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == _INFINITY:
        return "Infinity"
    if value == -_INFINITY:
        return "-Infinity"
    return float.__repr__(value)
