"""Environment capture: what a run ran on — hardware, GPUs, frameworks, packages, OS, process, git.

``capture()`` runs one small gatherer per section (see :mod:`labtrack.env.gatherers`), each isolated:
a gatherer that fails or times out records ``{"error": ...}`` and the capture goes on. Everything is
read in-process or from a few short ``git`` calls, and what cannot change within a process is cached,
so a repeat capture costs about a millisecond. The snapshot schema and the fingerprint are documented
in :mod:`labtrack.core.environment`. Importing this package is cheap: the gatherers load on first use.
"""

from __future__ import annotations

import time

from labtrack.core.environment import SCHEMA_VERSION, SECTIONS, Environment
from labtrack.core.errors import InvalidInput
from labtrack.env.options import ALL_SECTIONS, Captured, CaptureOptions

__all__ = [
    "PER_RUN_SECTIONS",
    "CaptureOptions",
    "Captured",
    "capture",
    "refresh_frameworks",
    "seed_everything",
]

_DEFAULT_OPTIONS = CaptureOptions()


# The sections that can differ between two runs of one process (command line, variables, the code).
PER_RUN_SECTIONS = ("process", "git")


def capture(options: CaptureOptions = _DEFAULT_OPTIONS, *, reuse: Captured | None = None) -> Captured:
    """Capture the environment of this process (and the git repository of ``options.cwd``).

    With ``reuse`` (an earlier capture with the same options), only the ``process`` and ``git`` sections
    are gathered again and the rest, and the fingerprint, are taken from it: the fingerprint does not
    cover those two sections.

    Never raises because of the machine: failures are recorded in the snapshot. Raises
    :class:`~labtrack.core.errors.InvalidInput` only for invalid options.
    """
    unknown = set(options.sections) - ALL_SECTIONS
    if unknown:
        raise InvalidInput(
            f"unknown environment section(s) {sorted(unknown)}; choose from {sorted(ALL_SECTIONS)}",
            field="sections",
        )
    if options.timeout <= 0:
        raise InvalidInput(f"timeout must be positive, got {options.timeout!r}", field="timeout")
    from labtrack.env.gatherers import run_gatherers

    names = [name for name in SECTIONS if name in options.sections]
    snapshot: dict[str, object] = {"schema": SCHEMA_VERSION}
    diff: str | None = None
    if reuse is not None:
        snapshot.update(reuse.environment.snapshot)
        diff = reuse.git_diff
        names = [name for name in names if name in PER_RUN_SECTIONS]
    snapshot["captured_at"] = time.time()
    results = run_gatherers(names, options, options.timeout)
    for name in names:
        result = results[name]
        if name == "git":
            result, diff = result if isinstance(result, tuple) else (result, None)
        if not isinstance(result, dict):
            result = {"error": f"gatherer returned {type(result).__name__}, not a dict"}
        snapshot[name] = result
    environment = Environment(snapshot, fingerprint=reuse.environment.fingerprint if reuse is not None else None)
    return Captured(environment=environment, git_diff=diff)


def refresh_frameworks(env: Environment) -> Environment:
    """``env`` with its ``frameworks`` section re-read, now that the run may have imported them.

    Call at run end: the runtime build facts (torch's CUDA build, cuDNN, determinism flags…) exist only
    for frameworks that are imported. Returns a new Environment (with a new fingerprint when anything
    was added); an Environment captured without the section is returned unchanged.
    """
    if "frameworks" not in env.snapshot:
        return env
    from labtrack.env.gatherers import GATHERERS

    try:
        section = GATHERERS["frameworks"](None)
    except Exception as e:  # the run is ending; a failed refresh must not fail it
        section = {"error": f"{type(e).__name__}: {e}"}
    return env.replace_section("frameworks", section)


def seed_everything(seed: int, *, deterministic: bool = False) -> dict[str, object]:
    """Seed random, numpy and torch (when present); see :func:`labtrack.env.seeds.seed_everything`."""
    from labtrack.env.seeds import seed_everything as _seed

    return _seed(seed, deterministic=deterministic)
