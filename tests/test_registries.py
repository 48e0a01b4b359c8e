"""One registry per extension point, and every other list that names the same things agrees with it: adding an
engine, a storage scheme or a placement policy in one place and forgetting another fails here."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from aibrix.controller import injection, loader, spec
from aibrix.controller.schedulers import POLICIES
from aibrix.engines import ENGINES
from aibrix.metrics.rules import RULES
from aibrix.storage.credentials import _BY_SCHEME
from aibrix.storage.uri import SCHEMES, SchemeKind, check_uri

ROOT = Path(__file__).resolve().parents[1]


def test_every_engine_has_metric_rules_a_documented_row_and_is_what_the_webhook_may_name() -> None:
    assert set(RULES) == set(ENGINES)
    readme = (ROOT / "docs" / "runtime.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z]+)` \| [^|]+ \| `(/[^`]*)` \|", readme, re.M))  # engine -> metrics path
    assert rows == {name: engine.metrics_path for name, engine in ENGINES.items()}, rows
    assert {engine for _, engine in injection._IMAGE_HINTS} <= set(ENGINES)
    assert injection.DEFAULT_ENGINE in ENGINES


def test_every_scheme_is_opened_accepted_by_the_controller_and_confined() -> None:
    assert set(spec.SCHEMES) == set(SCHEMES)
    assert set(_BY_SCHEME) - {""} == set(SCHEMES)  # held credentials are confined for every scheme
    assert loader.DELEGATED_SCHEMES == tuple(f"{s}://" for s, k in SCHEMES.items() if k is SchemeKind.OBJECT_STORE)
    for scheme in SCHEMES:
        check_uri(f"{scheme}://org/name/" if SCHEMES[scheme] is not SchemeKind.HUB else f"{scheme}://org/name")
    crd = yaml.safe_load((ROOT / "deploy" / "crd.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    pattern = schema["artifactURL"]["pattern"]
    for scheme in SCHEMES:
        assert re.match(pattern, f"{scheme}://bucket/key"), scheme
    assert not re.match(pattern, "ftp://bucket/key")


def test_every_placement_policy_is_in_the_crd_and_the_spec() -> None:
    crd = yaml.safe_load((ROOT / "deploy" / "crd.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert schema["schedulerName"]["enum"] == list(POLICIES) == list(spec.SCHEDULERS)
