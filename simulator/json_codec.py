"""The harness's JSON on its hot paths: orjson where it writes plain JSON, the stdlib otherwise.

A run writes tens of JSON lines per purchase (history entries, Stripe answers, signed webhook
bodies, spilled objects) and its checkers read them all back. orjson does both several times
faster than the standard library. The text it writes is equally valid JSON but not always the
same bytes: it writes UTF-8 rather than `\\u` escapes, and floats in its own shortest form
(`1e16`, not `1e+16`). Histories stay deterministic, which is all the harness promises.

Whatever orjson refuses (an integer past 64 bits, a lone surrogate, a type it does not know) goes
to the standard library, so every value is written as before; NaN and infinities, which orjson
would quietly write as `null`, never reach these functions (scenario values are bounded, Stripe
amounts are integers). Reads fall back likewise: a line orjson cannot parse is parsed (or
refused, with its usual message) by `json.loads`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

#: keys sorted; non-string keys as strings (as `json.dumps` does); dataclasses and datetimes
#: to `default` (`str`), as `json.dumps(default=str)` would, not as orjson's own dicts and ISO text
_LINE = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_NON_STR_KEYS
    | orjson.OPT_APPEND_NEWLINE
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
_PRETTY = orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
_COMPACT = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | _COMPACT
_line_fallback = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
_compact_fallback = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_sorted_fallback = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def line(entry: dict[str, Any]) -> bytes:
    """One sorted, compact JSON line ending in a newline (a history entry)."""
    try:
        return orjson.dumps(entry, default=str, option=_LINE)
    except (TypeError, orjson.JSONEncodeError):
        return (_line_fallback(entry) + "\n").encode()


def pretty(obj: Any) -> bytes:
    """Stripe's two-space indented JSON (API answers and webhook bodies), UTF-8."""
    try:
        return orjson.dumps(obj, option=_PRETTY)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(obj, indent=2, ensure_ascii=False).encode()


def compact(obj: Any) -> bytes:
    """Compact JSON in the given key order (spilled objects: read back equal)."""
    try:
        return orjson.dumps(obj, option=_COMPACT)
    except (TypeError, orjson.JSONEncodeError):
        return _compact_fallback(obj).encode()


def canonical(obj: Any) -> bytes:
    """Compact JSON with sorted keys: equal values, equal bytes (fingerprints)."""
    try:
        return orjson.dumps(obj, option=_SORTED)
    except (TypeError, orjson.JSONEncodeError):
        return _sorted_fallback(obj).encode()


def loads(data: bytes | str) -> Any:
    """`json.loads`, faster; what orjson cannot parse is left to `json.loads` to parse or refuse
    (integers past 64 bits, NaN, and its error messages)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
