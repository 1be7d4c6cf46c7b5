"""The `labtrack` command line: a thin face over the library (see ``labtrack.cli.main``)."""

from labtrack.cli import interop as _interop  # noqa: F401  (registers `labtrack import mlflow`)
from labtrack.cli import server as _server  # noqa: F401  (registers `labtrack server` and `labtrack token`)
from labtrack.cli.main import main

__all__ = ["main"]
