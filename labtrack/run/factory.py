"""Starting a run: its creation into the spool (``begin``), and the run handle that logs to it.

The run's row is created by the background writer, in the same transaction as its first writes — and,
for a run that ends before the writer gets to it, as everything else it logged and its end: a short run
is one transaction. What a crash leaves behind: a process killed before ``start_run`` returned leaves
nothing; killed later, its spool holds the creation and everything logged before the kill, which the next
process that opens the store stores, then marks the run CRASHED (``labtrack.run.recovery``). A run is
never half-written: each write of it is one transaction.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from labtrack.core.model import NewRun
from labtrack.run import process
from labtrack.run.handle import GIT_DIFF_ARTIFACT, Live, Run, shared_part
from labtrack.run.log import RunLog, journal_environment
from labtrack.run.writer import writer
from labtrack.settings import Settings

if TYPE_CHECKING:
    from labtrack.core.environment import Environment
    from labtrack.store.base import Store

__all__ = ["begin"]


def begin(store: Store, new: NewRun, settings: Settings, *, environment: Environment | None = None,
          git_diff: str | None = None, claim: tuple[str, float] | None = None,
          conflicts_recorded: bool = True, started: float | None = None) -> Run:
    """Create the run ``new`` (validated by the caller) and make it this process's active run.

    ``environment``: the snapshot captured for it (its shared part is stored once per fingerprint);
    ``git_diff``: the uncommitted changes, stored as the artifact ``labtrack/git.diff``; ``claim``: a
    sweep's (owner, lease) on the run's configuration, renewed with the heartbeat; ``started``: the
    monotonic clock when ``new.start_time`` was read (its end is its start plus the time it took)."""
    drainer = writer().drainer(store, settings)
    if environment is not None and new.env_fingerprint:
        journal_environment(drainer.spool, new.env_fingerprint, shared_part(environment))
    log = RunLog(drainer.spool, new.id, params=new.params)
    log.create(new)
    if git_diff:
        log.add_bytes(git_diff.encode("utf-8"), GIT_DIFF_ARTIFACT)
    imported = (new.context or {}).get("imported")
    live = Live(drainer, os.getpid(), environment=environment, conflicts_recorded=conflicts_recorded,
                start_time=new.start_time, started=time.monotonic() if started is None else started,
                imported=imported if isinstance(imported, list) else None)
    run = Run(store, new.id, log=log, live=live, settings=settings)
    drainer.live[new.id] = claim
    process.install_hooks()
    process.push(run)
    return run
