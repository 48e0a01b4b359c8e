"""Declared fields (aibrix.runtime.fields): what settings and request bodies accept, and what a refusal says."""

from __future__ import annotations

import enum
import subprocess
import sys
from dataclasses import dataclass

import pytest

from aibrix.runtime.fields import Invalid, Secret, json_schema, parse, spec


class Mode(enum.StrEnum):
    ON = "on"
    OFF = "off"


@dataclass(frozen=True)
class Sample:
    name: str = spec(str, min_length=1, max_length=8)
    count: int = spec(int, 3, ge=1, le=10)
    ratio: float = spec(float, 1.0, gt=0)
    flag: bool = spec(bool, False)
    mode: Mode = spec(Mode, Mode.ON)
    level: str = spec(str, "info", choices=("info", "debug"))
    labels: dict | None = spec(dict, None, values=str)
    key: Secret | None = spec(Secret, None)


@pytest.mark.parametrize(
    "data, says",
    [
        ({}, "name: required"),
        ({"name": ""}, "name: must not be empty"),
        ({"name": "x" * 9}, "name: must be at most 8 characters"),
        ({"name": 5}, "name: must be a string"),
        ({"name": "a", "count": "many"}, "count: must be an integer"),
        ({"name": "a", "count": 0}, "count: must be at least 1"),
        ({"name": "a", "count": True}, "count: must be an integer"),
        ({"name": "a", "ratio": "0"}, "ratio: must be greater than 0"),
        ({"name": "a", "flag": "maybe"}, "flag: must be true or false (1/0, yes/no, on/off)"),
        ({"name": "a", "mode": "auto"}, "mode: must be one of on, off"),
        ({"name": "a", "level": "trace"}, "level: must be one of info, debug"),
        ({"name": "a", "labels": {"k": 1}}, "labels: every value must be a string"),
        ({"name": "a", "labels": []}, "labels: must be a JSON object"),
    ],
)
def test_each_refusal_names_the_field_and_the_rule(data, says):
    with pytest.raises(Invalid) as refused:
        parse(Sample, data)
    assert str(refused.value) == says


def test_every_problem_is_listed_at_once_and_unknown_keys_are_refused_when_asked():
    with pytest.raises(Invalid) as refused:
        parse(Sample, {"count": 99, "colour": "red"}, forbid_extra=True)
    assert [name for name, _ in refused.value.problems] == ["name", "count", "colour"]


def test_values_are_coerced_the_way_environment_variables_are_written():
    sample = parse(Sample, {"name": "a", "count": " 4 ", "ratio": "0.5", "flag": "YES", "mode": "off", "key": "s3cr3t"})
    assert (sample.count, sample.ratio, sample.flag, sample.mode) == (4, 0.5, True, Mode.OFF)
    assert sample.key is not None and sample.key.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(sample)
    assert parse(Sample, {"name": "a", "labels": None}).labels is None


def test_the_schema_says_what_the_parser_checks():
    schema = json_schema(Sample)
    assert schema["required"] == ["name"]
    assert schema["properties"]["name"] == {"type": "string", "minLength": 1, "maxLength": 8}
    assert schema["properties"]["mode"]["enum"] == ["on", "off"]
    assert schema["properties"]["count"]["default"] == 3


def test_the_runtime_starts_without_importing_pydantic():
    """Start-up to /ready is a budget (docs/benchmarks.md): pydantic's import and model building took ~40 % of it."""
    probe = (
        "import sys, aibrix.runtime.cli, aibrix.runtime.app; print(sorted(m for m in sys.modules if 'pydantic' in m))"
    )
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60).stdout == "[]\n"
