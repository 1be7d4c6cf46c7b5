"""What to capture (:class:`CaptureOptions`) and what a capture returns (:class:`Captured`)."""

from __future__ import annotations

from dataclasses import dataclass

from labtrack.core.environment import SECTIONS, Environment

__all__ = ["ALL_SECTIONS", "CaptureOptions", "Captured"]

ALL_SECTIONS: frozenset[str] = frozenset(SECTIONS)


@dataclass(frozen=True)
class CaptureOptions:
    """Which sections to gather and how.

    ``timeout`` applies to each gatherer; gatherers run concurrently, so a capture never takes much
    longer than one timeout even when several hang.
    """

    sections: frozenset[str] = ALL_SECTIONS
    record_hostname: bool = True
    extra_env_vars: tuple[str, ...] = ()  # added to the environment-variable allowlist (exact names)
    git_diff_max_bytes: int = 1_000_000  # cap on the stored uncommitted diff
    timeout: float = 5.0  # per gatherer; over time -> {"error": "timed out after ..."}
    cwd: str | None = None  # directory whose git repository is captured (default: os.getcwd())


@dataclass
class Captured:
    """A snapshot plus the uncommitted diff, which is too big for the snapshot and stored as an artifact.

    ``git_diff`` is already redacted of secrets and size-capped, with a truncation note at the end when
    cut; ``None`` when there is no repository or no tracked change.
    """

    environment: Environment
    git_diff: str | None
