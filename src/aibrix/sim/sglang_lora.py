"""SGLang's LoRA bookkeeping as 0.5.23 keeps it, so the simulator refuses, evicts and reloads as SGLang does.

Sources (sgl-project/sglang 0.5.23, python/sglang/srt/...): arg_groups/fields/lora.py (flags and defaults:
``--max-loras-per-batch`` 8, ``--lora-eviction-policy`` lru, ``--max-lora-rank`` and ``--lora-target-modules``
inferred from ``--lora-paths``); arg_groups/lora_hook.py (``--max-loaded-loras`` between ``--max-loras-per-batch``
and twice it; without ``--lora-paths`` both rank and target modules must be given); lora/lora_manager.py
``validate_new_adapter`` (already loaded; rank or modules beyond the memory pool; pinned adapters limited to
``max_loras_per_batch - 1``); managers/tokenizer_control_mixin.py ``load_lora_adapter`` (loads and unloads under one
lock; past ``--max-loaded-loras`` the least recently used unpinned adapter is unloaded and the load still succeeds,
or fails when every adapter is pinned) and ``unload_lora_adapter`` (waits for requests in flight on the adapter);
managers/tokenizer_manager.py ``_resolve_lora_path`` (a request naming an adapter that was unloaded or evicted loads
it again from ``lora_ref_cache``, which keeps every adapter ever loaded; one never loaded is refused).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

NOT_ENABLED = "LoRA is not enabled. Please set `--enable-lora` to enable LoRA."
INCOMPATIBLE = (
    "LoRA adapter {name} with rank {rank} is incompatible with the current LoRA memory pool configuration. Please "
    "ensure that the LoRA adapter's rank is within the configured `--max-lora-rank` and that the target modules are "
    "included in `--lora-target-modules`."
)
PINNED = (
    "Failed to load LoRA adapter {name} as a pinned adapter. It is not allowed to pin all slots in the LoRA memory "
    "pool to avoid starvation for unpinned adapters and base models. Please increase your `--max-loras-per-batch` or "
    "load it as unpinned LoRA adapters."
)


@dataclass
class SGLangLoRAFlags:
    enable_lora: bool = False
    max_lora_rank: int | None = None
    target_modules: frozenset[str] | None = None  # {"all"} or module names
    max_loras_per_batch: int = 8
    max_loaded_loras: int | None = None
    eviction_policy: str = "lru"  # the GPU pool's policy; the CPU registry evicts least recently used
    lora_paths: dict[str, str] = field(default_factory=dict)

    def problem(self) -> str | None:
        """SGLang's start-up refusals of these flags (arg_groups/lora_hook.py), None when they are fine."""
        if self.max_loras_per_batch < 1:
            return "max_loras_per_batch must be positive"
        if self.enable_lora and not self.lora_paths and not (self.max_lora_rank and self.target_modules):
            return (
                "When no initial --lora-paths is provided, you need to specify both --max-lora-rank and "
                "--lora-target-modules for LoRA initialization."
            )
        if self.max_loaded_loras is not None and not (
            self.max_loras_per_batch <= self.max_loaded_loras <= 2 * self.max_loras_per_batch
        ):
            return (
                f"--max-loaded-loras must be between --max-loras-per-batch ({self.max_loras_per_batch}) and "
                f"double it ({2 * self.max_loras_per_batch})"
            )
        return None


@dataclass
class Adapter:
    path: str
    pinned: bool
    rank: int
    modules: frozenset[str]


def read_adapter(path: str) -> Adapter | str:
    """The adapter's rank and target modules from adapter_config.json, or SGLang's message when it has none."""
    try:
        with open(os.path.join(path, "adapter_config.json")) as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return f"Can't find 'adapter_config.json' at '{path}'"
    modules = config.get("target_modules") or []
    return Adapter(path, False, int(config.get("r", 8)), frozenset([modules] if isinstance(modules, str) else modules))


class SGLangLoRA:
    """Registered adapters in least-recently-used order, every adapter ever loaded, and requests in flight."""

    def __init__(self, flags: SGLangLoRAFlags, registered: dict[str, str]) -> None:
        self.flags = flags
        self.registered: OrderedDict[str, Adapter] = OrderedDict()
        self.paths = registered  # the engine's name -> path map (listed by /v1/models, counted by /metrics)
        self.ever_loaded: dict[str, Adapter] = {}
        self.in_flight: Counter[str] = Counter()
        self.lock = asyncio.Lock()
        self._idle = asyncio.Condition()
        self.max_rank = flags.max_lora_rank
        self.modules = flags.target_modules

    def preload(self) -> None:
        """``--lora-paths``: loaded at start, and they size the pool when rank and modules were not given."""
        found = {name: read_adapter(path) for name, path in self.flags.lora_paths.items()}
        adapters = {name: a for name, a in found.items() if isinstance(a, Adapter)}
        if self.max_rank is None:
            self.max_rank = max((a.rank for a in adapters.values()), default=None)
        if self.modules is None:
            self.modules = frozenset().union(*(a.modules for a in adapters.values()))
        for name, adapter in adapters.items():
            self._register(name, adapter)

    async def load(self, name: str, path: str, pinned: bool = False) -> tuple[bool, str, list[str]]:
        """(success, error message, names evicted to make room)."""
        if not self.flags.enable_lora:
            return False, NOT_ENABLED, []
        async with self.lock:
            return self._load_locked(name, path, pinned)

    def _load_locked(self, name: str, path: str, pinned: bool) -> tuple[bool, str, list[str]]:
        if name in self.registered:
            return False, f"Failed to load LoRA adapter {name} because it is already loaded", []
        adapter = read_adapter(path)
        if isinstance(adapter, str):
            return False, adapter, []
        adapter.pinned = pinned
        fits_modules = self.modules is not None and ("all" in self.modules or adapter.modules <= self.modules)
        if self.max_rank is None or adapter.rank > self.max_rank or not fits_modules:
            return False, INCOMPATIBLE.format(name=name, rank=adapter.rank), []
        if pinned and sum(a.pinned for a in self.registered.values()) >= self.flags.max_loras_per_batch - 1:
            return False, PINNED.format(name=name), []
        self._register(name, adapter)
        return self._evict()

    def _register(self, name: str, adapter: Adapter) -> None:
        self.registered[name] = adapter
        self.ever_loaded[name] = adapter
        self.paths[name] = adapter.path

    def _evict(self) -> tuple[bool, str, list[str]]:
        evicted: list[str] = []
        limit = self.flags.max_loaded_loras
        while limit is not None and len(self.registered) > limit:
            victim = next((n for n, a in self.registered.items() if not a.pinned), None)
            if victim is None:
                return (
                    False,
                    (
                        "Didn't find any LoRA adapters when trying to evict LRU LoRA adapter. "
                        f"LoRA registry is: {dict(self.registered)}"
                    ),
                    evicted,
                )
            self._forget(victim)
            evicted.append(victim)
        return True, "", evicted

    def _forget(self, name: str) -> None:
        del self.registered[name]
        self.paths.pop(name, None)

    async def unload(self, name: str) -> str:
        """ "" on success, else SGLang's message. Waits for the requests running on the adapter."""
        if not self.flags.enable_lora:
            return NOT_ENABLED
        async with self.lock:
            if name not in self.registered:
                loaded = ", ".join(repr(n) for n in self.registered)
                return f"LoRA with name {name} does not exist. Loaded LoRAs: dict_keys([{loaded}])"
            async with self._idle:
                await self._idle.wait_for(lambda: self.in_flight[name] == 0)
            self._forget(name)
            return ""

    async def acquire(self, name: str) -> None:
        """A request runs on ``name``: loaded again when it was unloaded or evicted; ValueError as SGLang refuses."""
        if not self.flags.enable_lora:
            raise ValueError(
                f"LoRA adapter '{name}' was requested, but LoRA is not enabled. Please launch the server "
                "with --enable-lora flag and preload adapters using --lora-paths or /load_lora_adapter "
                "endpoint."
            )
        known = self.ever_loaded.get(name)
        if known is None:
            loaded = ", ".join(repr(n) for n in self.ever_loaded)
            raise ValueError(
                f"Got LoRA adapter that has never been loaded: {name}\nAll loaded adapters: dict_keys([{loaded}])."
            )
        async with self.lock:  # as SGLang's lora_update_lock: a reload waits for loads and unloads under way
            if name not in self.registered:
                ok, message, _ = self._load_locked(name, known.path, known.pinned)
                if not ok:
                    raise ValueError(message)
            self.registered.move_to_end(name)
            self.in_flight[name] += 1

    async def release(self, name: str) -> None:
        self.in_flight[name] -= 1
        async with self._idle:
            self._idle.notify_all()

    def pool(self) -> tuple[int, int]:
        """(slots used, slots total) of the GPU pool: adapters running now, out of --max-loras-per-batch."""
        return sum(1 for n in self.in_flight if self.in_flight[n] > 0), self.flags.max_loras_per_batch


def parse_model(model: str, served: str) -> tuple[str, str | None]:
    """SGLang's ``_parse_model_parameter`` (entrypoints/openai/serving_base.py): ``base:adapter`` names an adapter,
    matched on the served name first (it may hold colons); a bare name, an adapter's included, is the base model."""
    if ":" not in model or model == served:
        return model, None
    if model.startswith(f"{served}:"):
        base, adapter = served, model[len(served) + 1 :]
    else:
        base, adapter = model.split(":", 1)
    return base.strip(), adapter.strip() or None
