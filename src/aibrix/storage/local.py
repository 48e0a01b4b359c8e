"""A directory or file on a local (or mounted) filesystem."""

from __future__ import annotations

import os
from pathlib import Path

from aibrix.storage.base import BadURI, NotFound, RemoteFile, allowed


class LocalSource:
    def __init__(self, path: str) -> None:
        try:
            self.root = Path(path).resolve()
            exists = self.root.exists()
        except OSError as exc:
            raise BadURI(f"{path[:200]}: {exc.strerror or exc}") from None
        if not exists:
            raise NotFound(f"{path}: no such file or directory")

    def describe(self) -> str:
        return str(self.root)

    def list_files(self, suffixes: tuple[str, ...] = ()) -> list[RemoteFile]:
        if self.root.is_file():
            candidates = [(self.root.name, self.root)]
        else:
            candidates = []
            for folder, dirs, names in os.walk(self.root):
                dirs[:] = [d for d in dirs if d != ".aibrix"]
                for name in names:
                    full = Path(folder, name)
                    if full.is_file() and not full.is_symlink():
                        candidates.append((full.relative_to(self.root).as_posix(), full))
        files = []
        for relative, full in sorted(candidates):
            if allowed(relative, suffixes):
                stat = full.stat()
                version = f"{stat.st_size}:{stat.st_mtime_ns}"
                files.append(RemoteFile(relative, stat.st_size, f"file://{full}", {}, None, version))
        return files
