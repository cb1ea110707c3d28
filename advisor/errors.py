"""One small hierarchy of errors a user can cause.

Each message names the bad value and the valid choices. The command line maps every
`AdvisorError` to one line on stderr and exit code 2; anything else is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AdvisorError(Exception):
    """Base of every error caused by the user's input or environment (exit code 2)."""


class UnknownNameError(AdvisorError, KeyError):
    """A name (model, technique, device, dataset) that no registry holds."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        valid = sorted(valid)
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        shown = ", ".join(valid[:40]) + (" ..." if len(valid) > 40 else "")
        super().__init__(f"unknown {kind} '{name}'{hint} (valid: {shown})")
        self.kind, self.name, self.valid, self.close = kind, name, valid, close

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class SpecError(AdvisorError, ValueError):
    """A malformed technique spec."""


class ModelFileError(AdvisorError):
    """A model file that is missing, unreadable, corrupt or of an unsupported kind."""


class DatasetError(AdvisorError):
    """A dataset that is missing, malformed, or whose shapes do not fit the model."""


class UnsupportedError(AdvisorError):
    """A technique that cannot be applied to this model (unsupported layer, conversion failure)."""


class OptionError(AdvisorError, ValueError):
    """An impossible or contradictory option."""


class StoreError(AdvisorError):
    """A dataset store or row that does not match the schema."""


class BundleError(AdvisorError):
    """A predictor bundle that is missing or does not match the code."""
