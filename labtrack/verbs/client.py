"""``Client``: every verb over one store — the analogue of MLflow's ``MlflowClient``.

    client = labtrack.Client("postgresql+psycopg://team@db/labtrack")
    with client.start_run("mnist", params={"lr": 0.01}) as run:
        run.log_metric("loss", 0.5)
    client.search_runs("mnist", filter="metrics.loss < 1")
    client.diff(a, b)

The module-level API (``labtrack.start_run`` ...) is a default client built from the settings
(``labtrack.verbs.tracking``). Two clients on two stores in one process never see each other's runs. The
only process-wide state is what really is: the stack of active runs (``labtrack.active_run()`` is the
innermost, whichever client started it), the background writer and the signal hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from labtrack.run.handle import Run
from labtrack.verbs.runs import RunClient

if TYPE_CHECKING:
    from labtrack.core.checks import DoctorReport, Reproduction, Verdict
    from labtrack.core.diff import RunDiff
    from labtrack.verbs.sweeps import SweepResult, TrackedFunction

__all__ = ["Client"]


class Client(RunClient):
    """Every verb over one store: a store URL (``None``: the settings' store) or a ``Store`` object.

    The run verbs come from ``RunClient`` (start_run, get_run, search_runs, find_run, exists ...); these
    load their modules on first use, so that ``import labtrack`` stays fast."""

    def diff(self, a: Run | str, b: Run | str) -> RunDiff:
        """What differs between two runs, most likely causes first."""
        from labtrack.verbs.compare import diff

        return diff(self.run_of(a), self.run_of(b))

    def check(self, run: Run | str) -> Verdict:
        """Can this machine reproduce ``run``? ``identical``, ``compatible``, ``at-risk`` or ``incompatible``."""
        from labtrack.verbs.reproduction import check

        return check(self, run)

    def export(self, run: Run | str, fmt: str = "requirements") -> str:
        """A recipe that rebuilds ``run``: ``requirements``, ``dockerfile``, ``conda`` or ``script``."""
        from labtrack.verbs.reproduction import export

        return export(self, run, fmt)

    def reproduce(self, run: Run | str, **options: Any) -> Reproduction:
        """Rebuild ``run``, run it again, compare (``workdir``, ``rtol``, ``atol``, ``ignore``, ``keep``, ``log``)."""
        from labtrack.verbs.reproduction import reproduce

        return reproduce(self, run, **options)

    def doctor(self) -> DoctorReport:
        """This environment's health: dependency conflicts, CUDA consistency, settings and this store."""
        from labtrack.verbs.reproduction import doctor

        return doctor(self)

    def track(self, experiment: str | Callable[..., Any] | None = None, **options: Any) -> Any:
        """``labtrack.track`` over this store: a decorator whose calls are runs, skipped when done."""
        from labtrack.verbs.sweeps import track

        return track(experiment, source=self, **options)

    def sweep(self, fn: Callable[..., Any] | TrackedFunction, grid: Mapping[str, Iterable[Any]] | None = None,
              **options: Any) -> SweepResult:
        """``labtrack.sweep`` over this store: every configuration not done yet, shared by many workers."""
        from labtrack.verbs.sweeps import sweep

        return sweep(fn, grid, source=self, **options)
