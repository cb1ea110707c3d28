"""Command-line commands for the dataset: `ingest-published`.

`register(app)` adds them to the `advisor` app. Nothing here imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

from advisor.cli_kit import App, Argument, Option, echo
from advisor.cli_predictor import JsonOpt
from advisor.errors import OptionError
from advisor.lookup import DEFAULT_STORE


def ingest_published(
    paths: Annotated[Optional[list[Path]], Argument(
        help="Published-figures CSVs (default: every *.csv in ../shared/published/ beside the repository).",
        show_default=False)] = None,
    store: Annotated[Path, Option("--store", help="Dataset store folder.")] = DEFAULT_STORE,
    dry_run: Annotated[bool, Option("--dry-run", help="Map and report; write nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add published top-1 accuracy figures to the dataset as source=published rows (idempotent)."""
    from advisor import published
    from advisor.store import Store

    chosen = list(paths or published.default_paths())
    if not chosen:
        raise OptionError(f"no published CSVs found in {published.DEFAULT_DIR}; pass the CSV paths "
                          "(advisor ingest-published PATH.csv ...)")
    report = published.ingest(chosen, Store(store), dry_run=dry_run)
    if as_json:
        from advisor.cli_predictor import _emit

        _emit(report.to_dict())
        return
    for line in published.summary_lines(report):
        echo(line)


def register(app: App) -> None:
    """Add `ingest-published` to the `advisor` app."""
    app.command("ingest-published")(ingest_published)
