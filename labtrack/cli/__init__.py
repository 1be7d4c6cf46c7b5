"""The `labtrack` command line: a thin face over the library (see ``labtrack.cli.main``)."""

from labtrack.cli.main import main

__all__ = ["main"]
