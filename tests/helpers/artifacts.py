"""Adapter files the tests serve and compare, and a retry policy quick enough for tests."""

from __future__ import annotations

import os
from pathlib import Path

from aibrix.storage.retry import RetryPolicy

# The adapter the Hub fixtures serve as org/sql-lora: a config and 3 MiB of weights.
ADAPTER = {"adapter_config.json": b'{"r": 8, "lora_alpha": 16}', "adapter_model.safetensors": os.urandom(3 << 20)}

QUICK = RetryPolicy(attempts=3, base=0.01, cap=0.02)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, leaving out hidden top-level entries (records, partial files)."""
    files = (p for p in root.rglob("*") if p.is_file())
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in files
        if not p.relative_to(root).parts[0].startswith(".")
    }
