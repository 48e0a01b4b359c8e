"""What the runtime knows of each adapter it manages (listed by /v1/lora_adapter, persisted in the record), and
the rules a record entry must meet before it is believed: the file may have been edited, and an unload deletes
the folder a downloaded entry names."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from aibrix.errors import capped
from aibrix.names import is_adapter_name
from aibrix.runtime.artifacts import adapter_folders
from aibrix.storage.base import BadURI


class AdapterState(StrEnum):
    """Where an adapter the runtime manages stands (``state`` in /v1/lora_adapter and the record)."""

    DOWNLOADING = "downloading"
    LOADING = "loading"
    LOADED = "loaded"
    RELOADING = "reloading"  # the engine lost it; being loaded again
    FAILED = "failed"


WANTED = (AdapterState.LOADED, AdapterState.RELOADING)  # kept in the engine (and on disk)


@dataclass
class ManagedAdapter:
    """What the runtime knows of one adapter; persisted without credentials."""

    name: str
    lora_path: str
    source: str  # redacted artifact URL, or the path the engine was given
    delegated: bool  # files downloaded by the runtime into the adapter directory
    state: AdapterState = AdapterState.LOADED
    reason: str = ""
    size_bytes: int = 0
    updated: float = field(default_factory=time.time)
    rank: int | None = None  # from adapter_config.json, when the runtime could read it

    def as_dict(self) -> dict[str, object]:
        """The fields as a new dict (flat: no deep copy needed, unlike dataclasses.asdict, which a load paid twice)."""
        return dict(vars(self))


def owned_folder(adapter_dir: Path | None, adapter: ManagedAdapter) -> Path | None:
    """The folder the runtime downloaded ``adapter`` into, exactly ``adapter_dir/<name>`` (or its spare, while a
    replacement takes turns with it); None for anything else (a parent, a sibling, a symlink planted there): only
    such a folder is ever deleted."""
    if adapter_dir is None or not adapter.delegated:
        return None
    try:
        folders = adapter_folders(adapter_dir, adapter.name)  # the one rule for a download's folder
    except BadURI:
        return None
    return next((folder for folder in folders if adapter.lora_path == str(folder)), None)


def record_problem(adapter_dir: Path | None, adapter: ManagedAdapter) -> str | None:
    """Why a record entry cannot be believed, or None."""
    if not isinstance(adapter.name, str) or not is_adapter_name(adapter.name):
        return "not an adapter name"
    if adapter.state not in set(AdapterState):
        return f"unknown state {capped(str(adapter.state), 40)!r}"
    if not isinstance(adapter.lora_path, str) or not os.path.isabs(adapter.lora_path):
        return "lora_path is not an absolute path"
    if any(ord(ch) < 32 for ch in adapter.lora_path):
        return "lora_path holds control characters"
    if adapter.rank is not None and (isinstance(adapter.rank, bool) or not isinstance(adapter.rank, int)):
        return "rank is not a whole number"
    if adapter.delegated is True and owned_folder(adapter_dir, adapter) is None:
        return f"a downloaded adapter must live in {adapter_dir}/<name>"
    return None
