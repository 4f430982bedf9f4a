"""A stored document as bytes and back, exactly: orjson when JSON says it all, else pickle.

The embedded store's documents on disk (`embedded_spill`) must read back as what mongomock
stored, value for value and type for type. JSON says it all for a document of dicts with string
keys, lists, strings, 64-bit integers, finite floats, booleans and None, which is what the
engines store: orjson writes that several times faster than pickle, and reads it back with the
field names shared between documents (its key cache), where pickle gives every document read
back its own copy of every name: a thousand owed receipts read at once hold the names once, not
a thousand times. Anything else, which JSON would change (NaN and infinities become null,
tuples lists, a dict subclass a dict, a datetime text) or cannot write (an ObjectId, a lone
surrogate, an integer past 64 bits), is pickled: pickle's bytes start with 0x80, JSON's never do.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import orjson

_PICKLED = 0x80
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_SCALARS = frozenset({str, int, bool, type(None)})


def encode(doc: Any) -> bytes:
    """The bytes of `doc`; raises what pickle raises for a value it cannot write."""
    if _json_exact(doc):
        try:
            return orjson.dumps(doc)
        except (TypeError, orjson.JSONEncodeError):
            pass  # a lone surrogate, an integer past 64 bits
    return pickle.dumps(doc, _PROTOCOL)


def decode(data: bytes) -> Any:
    if data[0] == _PICKLED:
        return pickle.loads(data)
    return orjson.loads(data)


def _json_exact(value: Any) -> bool:
    """Whether JSON reads `value` back as it is (orjson may still refuse to write it)."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is dict:
        return all(type(k) is str and _json_exact(v) for k, v in value.items())
    if kind is list:
        return all(_json_exact(v) for v in value)
    return False
