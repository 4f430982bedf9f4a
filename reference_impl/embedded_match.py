"""A fast matcher for the filters engines write most, answering exactly as mongomock's does.

mongomock's `filter_applies` is general (dotted paths, arrays, type brackets, every operator)
and costs a few microseconds per document, several times per store call. Most engine filters
are a handful of top-level conditions on scalars: `{"_id": p, "status": "pending"}`,
`{"stripe_session_id": None}`, `{"n": {"$lt": 3}}`. `matches` decides those; for anything it
is not sure of (a dotted path, an array or sub-document on either side, NaN, a bool against a
number, an operator it does not know) it answers None, and the caller asks mongomock.
tests/test_fast_paths.py compares both on generated documents and filters.
"""

from __future__ import annotations

import math
from typing import Any

_MISSING: Any = object()
#: scalars whose equality is plain Python equality within the same kind (bool apart from ints)
_SCALARS = (str, int, float, bool, type(None))
_ORDER = frozenset({"$lt", "$lte", "$gt", "$gte"})
_KNOWN = frozenset({"$ne", "$exists", "$in", *_ORDER})


def matches(filter: dict[str, Any], doc: dict[str, Any]) -> bool | None:
    """True or False as mongomock would answer; None when that takes mongomock."""
    for field, cond in filter.items():
        if type(field) is not str or not field or field[0] == "$" or "." in field:
            return None
        value = doc.get(field, _MISSING)
        found = _operators(cond, value) if type(cond) is dict else _equal(value, cond)
        if found is not True:
            return found  # False, or None: not sure
    return True


def _equal(value: Any, cond: Any) -> bool | None:
    """Does a stored `value` (or _MISSING) equal the filter's scalar `cond`?"""
    kind = type(cond)
    if kind not in _SCALARS:
        return None
    vkind = type(value)
    if value is _MISSING:
        return cond is None
    if vkind not in _SCALARS:
        return None  # an array or a sub-document: mongomock's rules
    if cond is None or value is None:
        return cond is None and value is None
    if kind is str or vkind is str:
        return kind is vkind and value == cond
    if kind is bool or vkind is bool:
        return value == cond if kind is vkind else None
    if math.isnan(cond) or math.isnan(value):
        return None
    return value == cond  # numbers


def _operators(cond: dict[str, Any], value: Any) -> bool | None:
    if not cond or not _KNOWN.issuperset(cond):
        return None
    for op, operand in cond.items():
        if op == "$ne":
            equal = _equal(value, operand)
            found = None if equal is None else not equal
        elif op == "$exists":
            found = (value is not _MISSING) == operand if type(operand) is bool else None
        elif op == "$in":
            found = _among(value, operand)
        else:
            found = _compare(op, value, operand)
        if found is not True:
            return found
    return True


def _among(value: Any, operand: Any) -> bool | None:
    if type(operand) is not list:
        return None
    answer: bool | None = False
    for item in operand:
        equal = _equal(value, item)
        if equal:
            return True
        if equal is None:
            answer = None
    return answer


def _compare(op: str, value: Any, operand: Any) -> bool | None:
    number = (int, float)
    if type(operand) not in number or math.isnan(operand):
        return None
    if value is _MISSING:
        return False
    if type(value) not in number or math.isnan(value):
        return None
    if op == "$lt":
        return value < operand
    if op == "$lte":
        return value <= operand
    if op == "$gt":
        return value > operand
    return value >= operand
