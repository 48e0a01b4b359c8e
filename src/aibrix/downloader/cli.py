"""``aibrix_download`` / ``python -m aibrix.downloader``: not available in this release yet."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    print("aibrix_download: the model downloader is not yet available in this release", file=sys.stderr)
    raise SystemExit(3)
