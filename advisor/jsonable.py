"""JSON for results that carry numpy values (the CLI's output, a campaign worker's report)."""

from __future__ import annotations

from typing import Any


def plain(o: Any) -> Any:
    """`json.dumps(default=plain)`: numpy scalars and arrays as Python numbers and lists."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
