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


def test_readme_lists_every_setting():
    from aibrix.runtime.settings import ENV_VARS

    readme = (ROOT / "README.md").read_text()
    missing = [var for var in ENV_VARS.values() if f"`{var}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}"


def test_readme_lists_every_controller_flag():
    from aibrix.controller.cli import parser

    readme = (ROOT / "README.md").read_text()
    flags = [opt for action in parser()._actions for opt in action.option_strings if opt.startswith("--")]
    missing = [flag for flag in flags if flag != "--help" and f"`{flag}" not in readme]
    assert not missing, f"README controller flag table lacks {missing}"
