"""An adapter folder judged before any engine sees it: its PEFT config, rank, base model and weight files.

The rules follow vLLM 0.32 and say at least as much: ``lora/peft_helper.py`` (``PEFTHelper.__post_init__``: ``r`` and
every ``rank_pattern`` value a positive integer; ``validate_legal``: the rank checked is the largest of them, "LoRA
rank N is greater than max_lora_rank M"), ``lora/lora_model.py`` (``adapter_model.safetensors``, else
``adapter_model.bin``/``.pt`` read with ``torch.load``), and ``plugins/lora_resolvers/filesystem_resolver.py``
(``peft_type`` must be ``LORA``). On top, what a platform wants refused up front: weights in a format that can run
code when loaded (pickle), too many files or bytes, and, when asked, an adapter trained for another base model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from aibrix.errors import AibrixError, capped

CONFIG = "adapter_config.json"
MAX_CONFIG_BYTES = 1 << 20
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
DEFAULT_MAX_FILES = 1000
# vLLM's refusal names its limit: "LoRA rank 64 is greater than max_lora_rank 8." (lora/peft_helper.py)
_VLLM_RANK_LIMIT = re.compile(r"greater than max_lora_rank (\d+)")
_RANK_REFUSAL = re.compile(r"LoRA rank (\d+) is greater than max_lora_rank (\d+)")


class InvalidAdapter(AibrixError):
    """An adapter no engine should be asked to load; the body type is the one engine refusals carry."""

    status = 422
    type = "AdapterRejected"


class RankTooHigh(InvalidAdapter):
    """Above this engine's rank limit: a fact about the pod, not the adapter (an engine with a higher limit can)."""

    type = "RankTooHigh"


class DigestMismatch(InvalidAdapter):
    """The files are not the ones ``artifact_digest`` names: the artifact changed, or something in between did."""

    type = "DigestMismatch"


class BaseModelCheck(StrEnum):
    REFUSE = "refuse"
    WARN = "warn"
    OFF = "off"


@dataclass(frozen=True)
class Limits:
    max_rank: int | None = None  # None: not known (yet)
    allow_pickle: bool = False
    max_files: int = DEFAULT_MAX_FILES
    max_bytes: int | None = None


@dataclass(frozen=True)
class AdapterFacts:
    rank: int | None  # the largest of r and rank_pattern; None when the config gives no rank
    base_model: str | None  # base_model_name_or_path as written
    files: int
    size_bytes: int


def inspect(folder: Path, limits: Limits) -> AdapterFacts:
    """The adapter's facts, or InvalidAdapter saying exactly what is wrong (one problem per refusal, config first)."""
    if not folder.is_dir():
        raise InvalidAdapter(f"{folder} is not a folder: an adapter is a folder holding {CONFIG} and its weights")
    files = _files(folder, limits.max_files)
    return judge(files, _read_config(folder / CONFIG), limits)


def judge(files: list[tuple[str, int]], config_raw: bytes, limits: Limits) -> AdapterFacts:
    """The rules over an adapter's file list (relative paths and sizes) and its config's bytes, wherever they were
    read from: a folder on the runtime's disk, or a repository listing when an engine will download it itself."""
    if len(files) > limits.max_files:
        raise InvalidAdapter(f"the adapter holds more than {limits.max_files} files")
    config = _config(config_raw)
    rank = _rank(config)
    if rank is not None and limits.max_rank is not None and rank > limits.max_rank:
        raise RankTooHigh(f"LoRA rank {rank} is greater than max_lora_rank {limits.max_rank} (the engine's limit)")
    pickled = sorted(name for name, _ in files if name.endswith(PICKLE_SUFFIXES))
    if pickled and not limits.allow_pickle:
        raise InvalidAdapter(
            f"weights in a pickle-based format can run code when loaded: {', '.join(pickled[:5])}; use safetensors "
            "(or set AIBRIX_ALLOW_PICKLE_ADAPTERS=1)"
        )
    size = sum(size for _, size in files)
    if limits.max_bytes is not None and size > limits.max_bytes:
        raise InvalidAdapter(f"the adapter holds {size} bytes, over the limit of {limits.max_bytes}")
    base = config.get("base_model_name_or_path")
    return AdapterFacts(rank, base if isinstance(base, str) and base else None, len(files), size)


def _files(folder: Path, max_files: int) -> list[tuple[str, int]]:
    """Every regular file below ``folder`` as (its path relative to the folder, with ``/``; its size), hidden
    top-level entries (the downloader's) left out. Strings, not Paths: a load pays for this scan."""
    found: list[tuple[str, int]] = []
    pending = [""]
    while pending:
        relative = pending.pop()
        with os.scandir(os.path.join(folder, relative)) as entries:
            for entry in entries:
                if not relative and entry.name.startswith("."):
                    continue
                name = f"{relative}/{entry.name}" if relative else entry.name
                if entry.is_dir(follow_symlinks=False):
                    pending.append(name)
                elif entry.is_file(follow_symlinks=False):
                    found.append((name, entry.stat(follow_symlinks=False).st_size))
                if len(found) > max_files:
                    raise InvalidAdapter(f"the adapter holds more than {max_files} files")
    return found


def _read_config(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:  # read what is there, up to the bound (a 1 MiB buffer per load costs)
            return handle.read(min(os.fstat(handle.fileno()).st_size, MAX_CONFIG_BYTES) + 1)
    except FileNotFoundError:
        raise InvalidAdapter(f"no {CONFIG} in {path.parent}: not a PEFT adapter folder") from None
    except OSError as exc:
        raise InvalidAdapter(f"cannot read {path}: {exc.strerror or exc}") from None


def _config(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_CONFIG_BYTES:
        raise InvalidAdapter(f"{CONFIG} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidAdapter(f"{CONFIG} is not JSON: {capped(str(exc), 200)}") from None
    if not isinstance(config, dict):
        raise InvalidAdapter(f"{CONFIG} must hold a JSON object, not {type(config).__name__}")
    peft_type = config.get("peft_type")
    if peft_type is not None and str(peft_type).upper() != "LORA":
        raise InvalidAdapter(f"{CONFIG} says peft_type {capped(str(peft_type), 40)!r}: only LORA adapters are served")
    return config


def _rank(config: dict[str, Any]) -> int | None:
    pattern = config.get("rank_pattern") or {}
    if not isinstance(pattern, dict):
        raise InvalidAdapter(f"rank_pattern in {CONFIG} must be an object of module patterns to ranks")
    ranks = [("r", config["r"])] if "r" in config else []
    ranks += [(f"rank_pattern[{key!r}]", value) for key, value in pattern.items()]
    for where, value in ranks:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidAdapter(
                f"LoRA rank {capped(where, 80)} must be a positive integer, got {capped(repr(value), 40)}"
            )
    return max((value for _, value in ranks), default=None)


def same_base(adapter_base: str, engine_names: Iterable[str]) -> bool:
    """Whether the adapter's base model is one the engine serves, compared as users write names: a local path and a
    hub id (``org/name``) match on their last component, case aside."""
    last = _last(adapter_base)
    return any(_last(name) == last for name in engine_names if name)


def _last(name: str) -> str:
    return name.strip().rstrip("/").rsplit("/", 1)[-1].lower()


def rank_limit_in(message: str) -> int | None:
    """The rank limit an engine's refusal names, so the next adapter above it is refused before the engine is asked."""
    match = _VLLM_RANK_LIMIT.search(message)
    return int(match.group(1)) if match else None


def rank_refused(message: str) -> tuple[int, int] | None:
    """(the adapter's rank, the engine's limit) from a rank refusal, ours or vLLM's, so placement learns both."""
    match = _RANK_REFUSAL.search(message)
    return (int(match.group(1)), int(match.group(2))) if match else None


def folder_digest(folder: Path, max_files: int = DEFAULT_MAX_FILES) -> str:
    """``sha256:<hex>`` of the folder's manifest: one line ``<sha256 of the file>  <path>`` per file, paths relative
    and with ``/``, sorted by path, each line ending in a newline (what ``sha256sum`` prints, run from the folder
    over the sorted file list); hidden top-level entries (the downloader's own) are left out."""
    lines = []
    for name, _ in sorted(_files(folder, max_files)):
        lines.append(f"{_file_sha256(folder / name)}  {name}\n")
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


def verify_digest(folder: Path, expected: str, max_files: int = DEFAULT_MAX_FILES) -> None:
    """DigestMismatch unless ``expected`` is the folder's manifest digest or, for a folder of one file, that file's."""
    files = _files(folder, max_files)
    if len(files) == 1 and expected == "sha256:" + _file_sha256(folder / files[0][0]):
        return
    actual = folder_digest(folder, max_files)
    if actual != expected:
        raise DigestMismatch(f"the artifact's digest is {actual}, not the expected {expected}")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
