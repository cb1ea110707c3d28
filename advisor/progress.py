"""Progress for long work on stderr: a one-line bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator


class StageProgress:
    """Reports named stages of a long job with elapsed time; silent when `quiet`."""

    def __init__(self, total: int | None = None, quiet: bool = False, stream=None):
        self.total, self.quiet = total, quiet
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        self.done += 1
        elapsed = time.monotonic() - self.start
        if self.total:
            filled = min(20, int(20 * self.done / self.total))
            head = f"[{'#' * filled}{'.' * (20 - filled)}] {self.done}/{self.total}"
        else:
            head = f"[{self.done}]"
        line = f"{head} {elapsed:6.1f}s  {message}"
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and not self.quiet and self.done:
            self.stream.write("\n")
            self.stream.flush()


# Stages reported from deep inside long library work (training, evaluation) without passing a
# callback through every function: a command opens `reporting(...)`, the library calls `stage()`,
# which says nothing when no command listens (the library used from Python stays quiet).
_LISTENERS: list[StageProgress] = []


@contextlib.contextmanager
def reporting(progress: StageProgress) -> Iterator[StageProgress]:
    """Send `stage()` messages to `progress` inside the block."""
    _LISTENERS.append(progress)
    try:
        yield progress
    finally:
        _LISTENERS.remove(progress)
        progress.close()


def stage(message: str) -> None:
    """Report a stage of long work to the innermost `reporting` block, if any."""
    if _LISTENERS:
        _LISTENERS[-1](message)
