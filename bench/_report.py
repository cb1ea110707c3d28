"""What every benchmark does with its markdown table: write it where asked and show it."""

from __future__ import annotations

from pathlib import Path


def publish(text: str, path: str | Path) -> None:
    """Write the report to `path` (its folder made if needed) and print it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
