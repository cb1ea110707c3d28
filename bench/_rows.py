"""What the predictor benchmarks read: a store's rows that measured something, with their profiles
and machine fingerprints."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def ok_rows(data: str | Path) -> tuple[Any, dict, dict]:
    """(rows with status ok, index reset; profiles by digest; fingerprints by id) of the store `data`."""
    from advisor.cli_predictor import read_fingerprints, read_training_data

    rows, profiles = read_training_data(Path(data))
    rows = rows[(rows["status"] == "ok").fillna(False).to_numpy(dtype=bool)].reset_index(drop=True)
    return rows, profiles, read_fingerprints(Path(data))
