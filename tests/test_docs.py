"""The documentation states what the code does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_metrics_doc_matches_the_rule_tables():
    generated = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "metrics_doc.py")], capture_output=True, text=True, check=True
    ).stdout
    assert (ROOT / "docs" / "metrics.md").read_text() == generated, "run scripts/metrics_doc.py > docs/metrics.md"


def test_the_runtime_doc_lists_every_setting():
    from aibrix.runtime.settings import ENV_VARS

    readme = (ROOT / "docs" / "runtime.md").read_text()
    missing = [var for var in ENV_VARS.values() if f"`{var}`" not in readme]
    assert not missing, f"docs/runtime.md's configuration table lacks {missing}"


def test_the_controller_doc_lists_every_controller_flag():
    from aibrix.controller.cli import parser

    readme = (ROOT / "docs" / "controller.md").read_text()
    flags = [opt for action in parser()._actions for opt in action.option_strings if opt.startswith("--")]
    missing = [flag for flag in flags if flag != "--help" and f"`{flag}" not in readme]
    assert not missing, f"docs/controller.md's flag table lacks {missing}"


# Which of our packages each package may import (docs/architecture.md): the products use the building blocks.
ALLOWED_IMPORTS = {
    "runtime": {"downloader", "storage", "engines", "metrics"},
    "controller": {"storage", "engines", "metrics"},
    "downloader": {"storage"},
    "engines": set(), "metrics": set(), "storage": set(), "sim": set(),
}  # fmt: skip


def test_the_code_map_names_every_module_and_imports_point_one_way():
    import ast

    doc = (ROOT / "docs" / "architecture.md").read_text()
    unnamed, backwards = [], []
    for path in sorted((ROOT / "src" / "aibrix").glob("*/*.py")):
        package = path.parent.name
        if path.name != "__init__.py" and f"`{path.name}`" not in doc and f"{path.stem}.py" not in doc:
            unnamed.append(f"{package}/{path.name}")
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                parts = name.split(".")
                shared = len(parts) > 1 and (ROOT / "src" / "aibrix" / f"{parts[1]}.py").is_file()
                if parts[0] == "aibrix" and len(parts) > 1 and parts[1] != package and not shared:
                    if parts[1] not in ALLOWED_IMPORTS[package]:
                        backwards.append(f"{package}/{path.name} imports {name}")
    assert not unnamed, f"docs/architecture.md does not name {unnamed}"
    assert not backwards, backwards


def test_every_test_the_threat_model_cites_exists():
    """docs/security.md proves each defence by a test: a renamed or deleted test must not leave a dangling proof."""
    import re

    cited = set(re.findall(r"`((?:\w+/)?test_\w+\.py)::(test_\w+)`", (ROOT / "docs" / "security.md").read_text()))
    assert len(cited) >= 30
    missing = [
        f"{file}::{name}"
        for file, name in sorted(cited)
        if not re.search(rf"^(async )?def {name}\(", (ROOT / "tests" / file).read_text(), re.M)
    ]
    assert not missing, f"docs/security.md cites tests that do not exist: {missing}"


def test_the_sglang_conformance_table_in_the_docs_is_current():
    generated = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sglang_table.py")], capture_output=True, text=True, check=True
    ).stdout
    assert generated in (ROOT / "docs" / "simulator.md").read_text(), "paste scripts/sglang_table.py into simulator.md"


def test_modules_inside_a_package_import_each_other_without_a_circle():
    """A circle (two modules needing each other, even only for types) means neither can be read alone."""
    import ast

    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "src" / "aibrix").glob("**/*.py")):
        module = ".".join(path.relative_to(ROOT / "src").with_suffix("").parts).removesuffix(".__init__")
        package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
        edges = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package + "."):
                edges.add(node.module)
    circles = []

    def visit(module: str, trail: list[str]) -> None:
        for target in sorted(graph.get(module, ())):
            if target in trail:
                circles.append(trail[trail.index(target) :] + [target])
            elif len(trail) < 30:
                visit(target, [*trail, target])

    for module in sorted(graph):
        visit(module, [module])
    assert not circles, sorted({" -> ".join(c) for c in circles})


def test_the_metrics_doc_names_every_metric_the_runtime_serves():
    """The runtime's own families are listed by hand in scripts/metrics_doc.py: a new one must not go unlisted."""
    from aibrix.runtime.telemetry import Telemetry

    doc = (ROOT / "docs" / "metrics.md").read_text()
    types = [
        line.split()[2:4] for line in Telemetry("vllm").render().decode().splitlines() if line.startswith("# TYPE")
    ]
    names = [name + "_total" if kind == "counter" and not name.endswith("_total") else name for name, kind in types]
    assert len(names) >= 10
    missing = [name for name in names if f"`{name}`" not in doc]
    assert not missing, f"docs/metrics.md does not name {missing}"
