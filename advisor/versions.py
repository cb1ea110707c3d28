"""Installed versions of the libraries a result depends on (for provenance and bug reports)."""

from __future__ import annotations

import platform
from collections.abc import Iterable

MEASURE_DISTS = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy")
PREDICT_DISTS = ("xgboost", "numpy", "scipy", "scikit-learn", "pandas")


def library_versions(dists: Iterable[str]) -> dict[str, str | None]:
    """This tool's and Python's versions, and each distribution's (None where not installed)."""
    from importlib import metadata

    import advisor

    out: dict[str, str | None] = {"compression-advisor": advisor.__version__, "python": platform.python_version()}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out
