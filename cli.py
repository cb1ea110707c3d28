"""Composition root shim: the real typer app is `advisor.cli` (installed as `advisor`)."""

from advisor.cli import app, main

if __name__ == "__main__":
    main()

__all__ = ["app", "main"]
