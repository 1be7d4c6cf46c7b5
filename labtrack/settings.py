"""Every labtrack setting, in one table.

Each setting is resolved, highest first, from: an explicit value (``--store`` on the CLI, a keyword
argument), the environment variable, ``labtrack.toml`` or ``[tool.labtrack]`` in ``pyproject.toml``
(the nearest one in the current directory or its parents), then the default. Values are validated when
they are read; an invalid one raises ``InvalidInput`` naming the setting, where it came from and what
is accepted. Secrets never come from files: credentials belong in the store URL's environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labtrack.core.errors import InvalidInput

__all__ = [
    "ALL_SECTIONS",
    "SETTINGS",
    "Setting",
    "Settings",
    "default_settings",
    "load_settings",
    "reset_default_settings",
]

ALL_SECTIONS = ("hardware", "gpu", "frameworks", "packages", "system", "process", "git")


def _positive_float(raw: Any) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a number > 0")
    return value


def _positive_int(raw: Any) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be an integer > 0")
    return value


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _names(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).replace(",", " ").split()
    return tuple(str(i).strip() for i in items if str(i).strip())


def _sections(raw: Any) -> tuple[str, ...]:
    names = _names(raw)
    if names in (("all",), ()):
        return ALL_SECTIONS if names else ()
    if names == ("none",):
        return ()
    unknown = sorted(set(names) - set(ALL_SECTIONS))
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; choose from all, none, {', '.join(ALL_SECTIONS)}")
    return names


def _seconds_or_off(raw: Any) -> float:
    """A number of seconds > 0, or off (0.0): ``off``, ``false``, ``no``, ``0``; ``on``/``true``: 10."""
    if isinstance(raw, bool):
        return 10.0 if raw else 0.0
    text = str(raw).strip().lower()
    if text in ("off", "false", "no", "none", "0"):
        return 0.0
    if text in ("on", "true", "yes"):
        return 10.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number of seconds > 0, or off") from None
    if not 0 < value < float("inf"):
        raise ValueError("must be a number of seconds > 0, or off")
    return value


def _text(raw: Any) -> str:
    text = str(raw).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    env: str
    help: str
    parse: Callable[[Any], Any]


SETTINGS: tuple[Setting, ...] = (
    Setting("store", ".labtrack", "LABTRACK_STORE",
            "Where runs are stored: a directory, sqlite:///file.db or postgresql+psycopg://...", _text),
    Setting("artifacts", None, "LABTRACK_ARTIFACTS",
            "Where artifact blobs go (a local or shared-file-system directory). Default: <store dir>/artifacts "
            "for a directory or SQLite store; for a PostgreSQL store, a directory of this user's "
            "(~/.local/share/labtrack/artifacts/<store>), with a warning: other machines cannot read it.", _text),
    Setting("flush_interval", 1.0, "LABTRACK_FLUSH_INTERVAL",
            "Seconds between background writes of buffered metrics.", _positive_float),
    Setting("flush_points", 50_000, "LABTRACK_FLUSH_POINTS",
            "Metric points waiting in the spool that trigger an early background write.", _positive_int),
    Setting("flush_timeout", 60.0, "LABTRACK_FLUSH_TIMEOUT",
            "Seconds that ending a run (or run.flush()) waits for an unreachable store before it warns and "
            "leaves the writes in the spool, to be written later.", _positive_float),
    Setting("spool_max_mb", 2048, "LABTRACK_SPOOL_MAX_MB",
            "Most megabytes of metric points a process keeps in its spool while the store does not take them "
            "(a long outage at a high rate); beyond it, new points are dropped with a warning.", _positive_int),
    Setting("spool_dir", None, "LABTRACK_SPOOL_DIR",
            "Where processes keep their crash-safe spools. Default: <store dir>/spool for a directory or "
            "SQLite store, ~/.cache/labtrack/spool/<store> otherwise.", _text),
    Setting("heartbeat_interval", 10.0, "LABTRACK_HEARTBEAT_INTERVAL",
            "Seconds between heartbeats of a running run.", _positive_float),
    Setting("heartbeat_timeout", 60.0, "LABTRACK_HEARTBEAT_TIMEOUT",
            "A RUNNING run whose last heartbeat is older than this many seconds is shown as CRASHED.",
            _positive_float),
    Setting("capture", "all", "LABTRACK_CAPTURE",
            "Environment sections recorded on every run: all, none, or a list of "
            + ", ".join(ALL_SECTIONS) + ".", _sections),
    Setting("record_hostname", True, "LABTRACK_RECORD_HOSTNAME",
            "Record the machine's hostname in the environment snapshot.", _bool),
    Setting("env_vars", (), "LABTRACK_ENV_VARS",
            "Extra environment variable names to record (comma-separated), beyond the built-in allowlist "
            "of variables that affect results.", _names),
    Setting("git_diff_max_bytes", 1_000_000, "LABTRACK_GIT_DIFF_MAX_BYTES",
            "Largest uncommitted git diff stored with a run; a larger one is truncated and says so.",
            _positive_int),
    Setting("sqlite_busy_timeout", 60.0, "LABTRACK_SQLITE_BUSY_TIMEOUT",
            "Seconds a SQLite writer waits for another process's write to finish.", _positive_float),
    Setting("system_metrics", 10.0, "LABTRACK_SYSTEM_METRICS",
            "Seconds between samples of the machine's CPU, memory, disk, network and GPUs, recorded on every run "
            "as system/... metrics (the first 1 s after the start), or off.", _seconds_or_off),
    Setting("console_log", True, "LABTRACK_CONSOLE_LOG",
            "Keep what the process prints to stdout and stderr during a run as its artifact labtrack/console.log "
            "(secrets redacted); off to keep nothing.", _bool),
    Setting("console_log_max_mb", 10.0, "LABTRACK_CONSOLE_LOG_MAX_MB",
            "Most megabytes of console output kept per run; the log ends with a line saying the rest was cut.",
            _positive_float),
    Setting("reproduces", None, "LABTRACK_REPRODUCES",
            "A run id: runs started are tagged reproduces=<id> (set by `labtrack reproduce`).", _text),
)
_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, Any]
    sources: Mapping[str, str]  # name -> "default" | "environment variable X" | "file F" | "argument"
    base_dir: Path  # directory that relative paths from a config file are resolved against

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # unpickling asks for __setstate__ before ``values`` is there: no recursion
            raise AttributeError(name)
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def _find_config_file(start: Path) -> tuple[Path, dict[str, Any]] | None:
    for directory in (start, *start.parents):
        for filename in ("labtrack.toml", "pyproject.toml"):
            path = directory / filename
            if not path.is_file():
                continue
            import tomllib

            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise InvalidInput(f"cannot read settings from {path}: {exc}", field=str(path)) from exc
            if filename == "pyproject.toml":
                data = data.get("tool", {}).get("labtrack")
                if data is None:
                    continue
            return path, data
    return None


def load_settings(overrides: Mapping[str, Any] | None = None, *, cwd: str | os.PathLike[str] | None = None) -> Settings:
    """Resolve every setting; ``overrides`` (explicit arguments) win over everything else."""
    start = Path(cwd) if cwd is not None else Path.cwd()
    found = _find_config_file(start)
    file_values: dict[str, Any] = {}
    base_dir = start
    if found is not None:
        path, file_values = found
        base_dir = path.parent
        unknown = sorted(set(file_values) - set(_BY_NAME))
        if unknown:
            raise InvalidInput(
                f"unknown setting(s) {', '.join(unknown)} in {path}; known: {', '.join(sorted(_BY_NAME))}",
                field=unknown[0],
            )
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        raw: Any = setting.default
        source = "default"
        if overrides and overrides.get(setting.name) is not None:
            raw, source = overrides[setting.name], "argument"
        elif os.environ.get(setting.env, "").strip():
            raw, source = os.environ[setting.env], f"environment variable {setting.env}"
        elif setting.name in file_values:
            raw, source = file_values[setting.name], f"file {found[0] if found else ''}"
        if raw is not None and source != "default":
            try:
                raw = setting.parse(raw)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(
                    f"setting {setting.name!r} from {source} is invalid ({raw!r}): {exc}. {setting.help}",
                    field=setting.name,
                ) from exc
        elif raw is not None:
            raw = setting.parse(raw)
        if setting.name in ("store", "artifacts", "spool_dir") and raw is not None and source.startswith("file"):
            raw = _resolve_relative(raw, base_dir)
        values[setting.name] = raw
        sources[setting.name] = source
    return Settings(values=values, sources=sources, base_dir=base_dir)


def _resolve_relative(location: str, base_dir: Path) -> str:
    """A relative directory in a config file means relative to that file, not to the current directory."""
    if "://" in location or os.path.isabs(location):
        return location
    return str(base_dir / location)


_default: Settings | None = None


def default_settings() -> Settings:
    """The settings of this process as the environment and config files give them, read once."""
    global _default
    if _default is None:
        _default = load_settings()
    return _default


def reset_default_settings() -> None:
    """Read the settings again on next use (after the environment or the working directory changed)."""
    global _default
    _default = None
