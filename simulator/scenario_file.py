"""Scenario files: TOML in, a validated `Scenario` out, and back to TOML.

Validation walks the dataclass schema of `simulator/scenario.py` (type hints plus each field's
`metadata`), so a new field is checked and documented without new code here. Every problem is
one `ScenarioError` whose text is a single line naming the file, the dotted key and what was
expected — the CLI prints it as is and exits 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from simulator.scenario import EXTERNAL_METADATA, MAX_ITEMS, MAX_STRING_CHARS, Scenario

#: the largest scenario file read (the CI scenarios are 1-3 KB; a 50 MB file took 95 s to parse)
MAX_SCENARIO_BYTES = 1024 * 1024


class ScenarioError(Exception):
    """A scenario file that cannot be used; `str()` is one line: `file: key: problem`."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, " ".join(problem.split())
        super().__init__(f"{source}: {key}: {self.problem}" if key else f"{source}: {self.problem}")


# ---- the schema, as seen from a file


@dataclass(frozen=True)
class FieldInfo:
    """One key of a table: its name, type hint, default and metadata (help, range, choices)."""

    name: str
    hint: Any
    default: Any  # MISSING when the key is required
    meta: Mapping[str, Any]


def schema_fields(cls: type, defaults: Any = None) -> list[FieldInfo]:
    """The keys of dataclass `cls`; defaults come from the instance `defaults` when given."""
    hints = typing.get_type_hints(cls)
    external = EXTERNAL_METADATA.get(cls, {})
    out = []
    for f in dataclasses.fields(cls):
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = MISSING
        meta = {**external.get(f.name, {}), **f.metadata}
        out.append(FieldInfo(f.name, hints[f.name], default, meta))
    return out


def unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """`X | None` → (X, True); anything else → (hint, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def tuple_items(hint: Any) -> tuple[Any, int | None] | None:
    """`tuple[X, ...]` → (X, None); `tuple[X, X]` → (X, 2); not a tuple → None."""
    if typing.get_origin(hint) is not tuple:
        return None
    args = typing.get_args(hint)
    if len(args) == 2 and args[1] is Ellipsis:
        return args[0], None
    if args and all(a == args[0] for a in args):
        return args[0], len(args)
    raise TypeError(f"unsupported tuple type {hint!r}: use tuple[X, ...] or tuple[X, X]")


def is_table(hint: Any) -> bool:
    return dataclasses.is_dataclass(hint) and isinstance(hint, type)


def is_table_array(hint: Any) -> bool:
    items = tuple_items(hint)
    return items is not None and is_table(items[0])


def expected(hint: Any, meta: Mapping[str, Any]) -> str:
    """What a value of this type and range looks like, in words."""
    inner, _ = unwrap_optional(hint)
    items = tuple_items(inner)
    if items is not None:
        item, length = items
        if is_table(item):
            return "an array of tables"
        many = _plural(item, meta)
        return f"a list of {length} {many}" if length else f"a list of {many}"
    if is_table(inner):
        return "a table"
    if "choices" in meta:
        return "one of " + ", ".join(json.dumps(c) for c in meta["choices"])
    noun = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[inner]
    return noun + _range(meta)


def _plural(item: Any, meta: Mapping[str, Any]) -> str:
    if "choices" in meta:
        return "strings from " + ", ".join(json.dumps(c) for c in meta["choices"])
    noun = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}[item]
    return noun + _range(meta)


def _range(meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return f" between {number(lo)} and {number(hi)}"
    if lo is not None:
        return f" of at least {number(lo)}"
    if hi is not None:
        return f" of at most {number(hi)}"
    return ""


def number(value: float) -> str:
    """A bound as people write it: 1, 0.5, 86400 (not 1.0, 8.64e+04)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


# ---- loading


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises `ScenarioError` on the first problem."""
    source = str(path)
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(MAX_SCENARIO_BYTES + 1)
        if len(raw) > MAX_SCENARIO_BYTES:
            raise ScenarioError(
                source, "", f"scenario file larger than the {MAX_SCENARIO_BYTES:,}-byte limit"
            )
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ScenarioError(source, "", "no such scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(source, "", f"cannot read scenario file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, "", f"invalid TOML: {exc}") from None
    except RecursionError:
        raise ScenarioError(
            source, "", "invalid TOML: arrays or tables nested too deeply"
        ) from None
    if not data:
        raise ScenarioError(
            source, "", "empty scenario file: expected at least `name` and a `[[workload]]`"
        )
    return scenario_from_dict(data, source)


def scenario_from_dict(data: Mapping[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate parsed TOML against the schema and build the `Scenario`."""
    scenario = _Builder(source).table(Scenario, data, "", Scenario())
    assert isinstance(scenario, Scenario)
    return scenario


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> typing.NoReturn:
        raise ScenarioError(self.source, key, problem)

    def table(self, cls: type, data: Any, key: str, base: Any) -> Any:
        """Build `cls` from a TOML table; keys not given keep `base`'s values (or defaults)."""
        if not isinstance(data, dict):
            self.fail(key, f"expected a table, got {_show(data)}")
        fields = schema_fields(cls, base)
        names = [f.name for f in fields]
        for name in data:
            if name not in names:
                near = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                self.fail(
                    _join(key, name), f"unknown key{hint}; expected one of {', '.join(names)}"
                )
        values: dict[str, Any] = {}
        for f in fields:
            sub = _join(key, f.name)
            if f.name in data:
                values[f.name] = self.value(f.hint, data[f.name], sub, f.meta, f.default)
            elif f.default is MISSING:
                self.fail(sub, f"required, expected {expected(f.hint, f.meta)}")
        obj = dataclasses.replace(base, **values) if base is not None else cls(**values)
        problems = obj.problems() if hasattr(obj, "problems") else []
        if problems:
            where, what = problems[0]
            self.fail(_join(key, where), what)
        return obj

    def value(self, hint: Any, raw: Any, key: str, meta: Mapping[str, Any], current: Any) -> Any:
        inner, _optional = unwrap_optional(hint)  # TOML has no null: an absent key is None
        items = tuple_items(inner)
        if items is not None:
            return self.sequence(inner, items, raw, key, meta)
        if is_table(inner):
            base = current if current is not MISSING and current is not None else None
            return self.table(inner, raw, key, base)
        return self.scalar(inner, raw, key, meta)

    def sequence(
        self, hint: Any, items: tuple[Any, int | None], raw: Any, key: str, meta: Mapping[str, Any]
    ) -> tuple[Any, ...]:
        item, length = items
        if not isinstance(raw, list):
            self.fail(key, f"expected {expected(hint, meta)}, got {_show(raw)}")
        if len(raw) > MAX_ITEMS:
            self.fail(key, f"expected at most {MAX_ITEMS:,} items, got {len(raw):,}")
        if length is not None and len(raw) != length:
            self.fail(
                key,
                f"expected {expected(hint, meta)}, got {len(raw)} item{'s' if len(raw) != 1 else ''}",
            )
        if is_table(item):
            return tuple(self.table(item, v, f"{key}[{n}]", None) for n, v in enumerate(raw))
        out = tuple(self.scalar(item, v, f"{key}[{n}]", meta) for n, v in enumerate(raw))
        if meta.get("ordered") and list(out) != sorted(out):
            self.fail(key, f"expected {expected(hint, meta)} in ascending order, got {_show(raw)}")
        return out

    def scalar(self, kind: Any, raw: Any, key: str, meta: Mapping[str, Any]) -> Any:
        want = expected(kind, meta)
        ok = {
            bool: isinstance(raw, bool),
            int: isinstance(raw, int) and not isinstance(raw, bool),
            float: isinstance(raw, int | float) and not isinstance(raw, bool),
            str: isinstance(raw, str),
        }.get(kind)
        if ok is None:
            raise TypeError(f"{key}: unsupported scenario field type {kind!r}")
        if not ok:
            self.fail(key, f"expected {want}, got {_show(raw)}")
        if kind is str and len(raw) > MAX_STRING_CHARS:
            self.fail(key, f"expected at most {MAX_STRING_CHARS:,} characters, got {len(raw):,}")
        value = float(raw) if kind is float else raw
        if kind is float and (
            math.isnan(value) or (math.isinf(value) and not meta.get("infinite_ok"))
        ):
            self.fail(key, f"expected {want} (finite), got {_show(raw)}")
        lo, hi = meta.get("min"), meta.get("max")
        if kind is float and math.isinf(value) and meta.get("infinite_ok"):
            hi = None  # inf stands for "never": allowed past any finite bound
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.fail(key, f"expected {want}, got {_show(raw)}")
        if "choices" in meta and value not in meta["choices"]:
            near = difflib.get_close_matches(str(value), list(meta["choices"]), n=1)
            hint = f" (did you mean {json.dumps(near[0])}?)" if near else ""
            self.fail(key, f"expected {want}, got {_show(raw)}{hint}")
        return value


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _show(value: Any) -> str:
    """A value as it would appear in the TOML file, shortened to stay on one line."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool | int | float | str | list):
        text = toml_value(value) if not isinstance(value, list) else _show_list(value)
    else:
        text = f"{type(value).__name__} {value}"  # TOML dates and times
    return text if len(text) <= 60 else text[:57] + "..."


def _show_list(values: list[Any], depth: int = 0) -> str:
    if depth > 3:
        return "[...]"
    inner = (_show_list(v, depth + 1) if isinstance(v, list) else _show(v) for v in values[:10])
    return "[" + ", ".join(inner) + (", ...]" if len(values) > 10 else "]")


# ---- writing


def toml_value(value: Any) -> str:
    """A scalar or a list of scalars as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if math.isnan(value):
            return "nan"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON escapes are valid TOML basic strings
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")


def scenario_to_toml(scenario: Scenario) -> str:
    """The scenario as a file that `load_scenario` reads back equal; only non-default keys."""
    lines = _Writer().scenario(scenario)
    return "\n".join(lines).rstrip("\n") + "\n"


#: keys always written in an array-of-tables entry, so each entry reads on its own
_ALWAYS = {"name", "kind", "id", "program"}


class _Writer:
    def scenario(self, scenario: Scenario) -> list[str]:
        return self.table_body(scenario, Scenario(), "", always={"name"})

    def table_body(self, obj: Any, base: Any, header: str, always: set[str]) -> list[str]:
        """Scalars first, then sub-tables and arrays of tables (TOML requires that order)."""
        scalars: list[str] = []
        nested: list[str] = []
        for f in schema_fields(type(obj), base):
            value = getattr(obj, f.name)
            same = f.default is not MISSING and value == f.default
            if same and f.name not in always:
                continue
            key = _join(header, f.name)
            inner, _ = unwrap_optional(f.hint)
            if value is None:
                continue  # None is the only optional value and always the default
            if is_table(inner):
                sub_base = f.default if f.default not in (MISSING, None) else None
                nested += ["", f"[{key}]", *self.table_body(value, sub_base, key, set())]
            elif is_table_array(inner) and value:
                for item in value:
                    nested += ["", f"[[{key}]]", *self.table_body(item, None, key, _ALWAYS)]
            else:
                scalars.append(f"{f.name} = {toml_value(value)}")
        return scalars + nested
