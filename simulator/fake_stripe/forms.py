"""Form bodies as stripe-python sends them (`a[b][0][c]=v`), parsed back into nested values.

Stripe's v1 API takes `application/x-www-form-urlencoded` with bracketed keys; the fake needs the
same nested dicts and lists the engine passed to the SDK, so it can validate and compare them.
"""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import parse_qsl

_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_PART = re.compile(r"\[([^\[\]]*)\]")

#: children of these keys are free-form maps: `metadata[0]=x` stays a dict
_MAP_KEYS = frozenset({"metadata"})


def parse_form(text: str) -> dict[str, Any]:
    """Nested dicts for `a[b]`, lists for `a[0]`; every leaf stays a string, as on the wire."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        parts = _split_key(key)
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        last = parts[-1] if parts[-1] != "" else str(len(node))  # `a[]=x` appends
        node[last] = value
    return _listify(root)


@functools.lru_cache(maxsize=4096)
def _split_key(key: str) -> tuple[str, ...]:
    """`a[b][0]` -> (a, b, 0); cached, as every request of a kind sends the same keys."""
    match = _KEY.fullmatch(key)
    if match is None:
        return (key,)
    head, tail = match.groups()
    return (head, *_PART.findall(tail))


def _listify(node: dict[str, Any], *, free_form: bool = False) -> Any:
    converted = {
        k: _listify(v, free_form=k in _MAP_KEYS) if isinstance(v, dict) else v
        for k, v in node.items()
    }
    if not free_form and converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted
