"""Declared fields for settings and request bodies, checked in one pass that names every problem.

The sidecar starts in every engine pod, so this replaces pydantic on its path: importing pydantic and building its
models cost ~100-150 ms of a ~0.35 s start-up on a 2-core machine, for some twenty flat fields. A field is declared
once, on a frozen dataclass, with ``spec(...)``; ``parse`` coerces the way environment variables and JSON are
written ("1"/"true" for a flag, "60" for a number), and ``json_schema`` serves the OpenAPI page.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})
REQUIRED: Any = dataclasses.MISSING  # a spec() default meaning "no default"


class Secret:
    """A string that never shows in a repr, a log line or an error message."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one field accepts. ``kind`` is str, int, float, bool, dict, Secret or an Enum."""

    kind: type
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: tuple[str, ...] | None = None
    values: type | None = None  # a dict's value type, when it must be one
    check: Callable[[Any], Any] | None = None  # after the type and bounds; raises ValueError, returns the value
    schema: Mapping[str, Any] | None = None  # extra JSON Schema keys for the OpenAPI page

    def apply(self, value: Any) -> Any:
        """The value as the field holds it; ValueError saying what is wrong."""
        value = _COERCE.get(self.kind, _coerce_enum)(self.kind, value)
        self._bounds(value)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ValueError(f"must match {self.pattern}")
        if self.values is not None and any(not isinstance(v, self.values) for v in value.values()):
            raise ValueError(f"every value must be a {_NAMES.get(self.values, self.values.__name__)}")
        return self.check(value) if self.check is not None else value

    def _bounds(self, value: Any) -> None:
        if self.gt is not None and not value > self.gt:
            raise ValueError(f"must be greater than {_num(self.gt)}")
        if self.ge is not None and not value >= self.ge:
            raise ValueError(f"must be at least {_num(self.ge)}")
        if self.le is not None and not value <= self.le:
            raise ValueError(f"must be at most {_num(self.le)}")
        if self.min_length is not None and len(value) < self.min_length:
            raise ValueError("must not be empty" if self.min_length == 1 else f"needs {self.min_length} characters")
        if self.max_length is not None and len(value) > self.max_length:
            raise ValueError(f"must be at most {self.max_length} characters")


def spec(kind: type, default: Any = REQUIRED, **rule: Any) -> Any:
    """A dataclass field with its rule; no ``default`` makes it required."""
    return dataclasses.field(default=default, metadata={"rule": Rule(kind, **rule)})


Model = TypeVar("Model")


class Invalid(ValueError):
    """Every field that failed, as (field, problem) pairs; the field is "" for the object as a whole."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{name or 'body'}: {problem}" for name, problem in problems))
        self.problems = problems


def parse(model: type[Model], data: Mapping[str, Any], *, forbid_extra: bool = False) -> Model:
    """Build ``model`` from ``data``: unknown keys ignored (or refused), every problem collected before raising."""
    values: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    known = dataclasses.fields(model)  # type: ignore[arg-type]
    for field in known:
        if field.name not in data or (data[field.name] is None and field.default is None):
            if field.default is REQUIRED:
                problems.append((field.name, "required"))
            continue
        try:
            values[field.name] = field.metadata["rule"].apply(data[field.name])
        except ValueError as exc:
            problems.append((field.name, str(exc)))
    if forbid_extra:
        names = {field.name for field in known}
        problems += [(key, "unknown setting") for key in data if key not in names]
    if problems:
        raise Invalid(problems)
    try:
        return model(**values)
    except ValueError as exc:  # a rule across fields, in __post_init__
        raise Invalid([("", str(exc))]) from None


def json_schema(model: type) -> dict[str, Any]:
    """The model's JSON Schema, for the OpenAPI page."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in dataclasses.fields(model):
        rule: Rule = field.metadata["rule"]
        prop: dict[str, Any] = {"type": _JSON_TYPES.get(rule.kind, "string")}
        if isinstance(rule.kind, type) and issubclass(rule.kind, enum.Enum):
            prop["enum"] = [member.value for member in rule.kind]
        for key, value in (
            ("minLength", rule.min_length),
            ("maxLength", rule.max_length),
            ("pattern", rule.pattern),
            ("enum", list(rule.choices) if rule.choices else None),
        ):
            if value is not None:
                prop[key] = value
        prop.update(rule.schema or {})
        if field.default is REQUIRED:
            required.append(field.name)
        elif field.default is not None:
            prop["default"] = field.default
        properties[field.name] = prop
    return {"title": model.__name__, "type": "object", "properties": properties, "required": required}


def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _coerce_str(kind: type, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _coerce_number(kind: type, value: Any) -> Any:
    """An int or float field: the number, or text holding one ("60" from an environment variable); never a bool."""
    if isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool):
        return kind(value)
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            pass
    raise ValueError("must be an integer" if kind is int else "must be a number")


def _coerce_bool(kind: type, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("must be true or false (1/0, yes/no, on/off)")


def _coerce_dict(kind: type, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


def _coerce_secret(kind: type, value: Any) -> Secret:
    return Secret(_coerce_str(kind, value))


def _coerce_enum(kind: type, value: Any) -> Any:
    choices = [member.value for member in kind]  # type: ignore[attr-defined]
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"must be one of {', '.join(map(str, choices))}") from None


_COERCE: dict[type, Callable[[type, Any], Any]] = {
    str: _coerce_str,
    int: _coerce_number,
    float: _coerce_number,
    bool: _coerce_bool,
    dict: _coerce_dict,
    Secret: _coerce_secret,
}
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", Secret: "string"}
_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean"}
