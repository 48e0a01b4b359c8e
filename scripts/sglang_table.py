"""Print the SGLang conformance table (tests/helpers/sglang_conformance.py) as Markdown, for docs/simulator.md."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.sglang_conformance import FLAGS, PLAIN_FLAGS, PLAIN_ROWS, ROWS, Row  # noqa: E402


def table(rows: list[Row]) -> str:
    lines = ["| case | request | SGLang 0.5.23 answers | source |", "|---|---|---|---|"]
    for row in rows:
        answer = f"{row.status}" + "".join(f" `{part}`" for part in row.holds)
        answer += "".join(f", without `{part}`" for part in row.lacks)
        answer += f"; lists {', '.join(row.listed) or 'nothing'}" if row.listed is not None else ""
        lines.append(f"| {row.name} | `{row.method} {row.path}` | {answer.replace('|', '/')} | `{row.source}` |")
    return "\n".join(lines)


def main() -> None:
    print(f"Started with `{' '.join(FLAGS)}`, in this order:\n")
    print(table(ROWS))
    print(f"\nStarted with `{' '.join(PLAIN_FLAGS)}` (LoRA and metrics off, SGLang's defaults):\n")
    print(table(PLAIN_ROWS))


if __name__ == "__main__":
    main()
