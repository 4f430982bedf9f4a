"""Form bodies as stripe-python sends them (`a[b][0][c]=v`), parsed back into nested values.

Stripe's v1 API takes `application/x-www-form-urlencoded` with bracketed keys; the fake needs the
same nested dicts and lists the engine passed to the SDK, so it can validate and compare them.

This is `urllib.parse.parse_qsl(text, keep_blank_values=True)` folded into a tree, done by
hand: the SDK percent-encodes every bracket, so each name would go through `unquote`'s slow
path at every request; names are decoded and split once (cached, as every request of a kind
sends the same names), values only when they hold a `%` or `+`. tests/test_fast_paths.py
checks it against the `parse_qsl` version on generated and odd bodies.
"""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import unquote

_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_PART = re.compile(r"\[([^\[\]]*)\]")

#: children of these keys are free-form maps: `metadata[0]=x` stays a dict
_MAP_KEYS = frozenset({"metadata"})


def parse_form(text: str) -> dict[str, Any]:
    """Nested dicts for `a[b]`, lists for `a[0]`; every leaf stays a string, as on the wire."""
    root: dict[str, Any] = {}
    for field in text.split("&"):
        if not field:
            continue  # `a=1&&b=2`: parse_qsl skips empty fields
        name, _, value = field.partition("=")  # no `=`: a blank value, as keep_blank_values
        parts = _name_parts(name)
        if "%" in value or "+" in value:
            value = unquote(value.replace("+", " "))
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
def _name_parts(raw: str) -> tuple[str, ...]:
    """A field name as sent (`a%5Bb%5D`) -> (a, b): decoded as parse_qsl does, then split."""
    return _split_key(unquote(raw.replace("+", " ")))


def _split_key(key: str) -> tuple[str, ...]:
    """`a[b][0]` -> (a, b, 0)."""
    match = _KEY.fullmatch(key)
    if match is None:
        return (key,)
    head, tail = match.groups()
    return (head, *_PART.findall(tail))


def _listify(node: dict[str, Any], free_form: bool = False) -> Any:
    """Dicts with only digit keys become lists (but a free-form map's own keys), in place: the
    tree was built by `parse_form` and nobody else holds it."""
    for key, value in node.items():
        if type(value) is dict:
            node[key] = _listify(value, key in _MAP_KEYS)  # same keys: iteration is safe
    if not free_form and node and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node
