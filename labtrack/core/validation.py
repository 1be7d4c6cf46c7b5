"""Checks on what users log, with errors that name the field and say the fix.

Limits (documented in the README):
- keys (params, metrics, tags, experiment names): 1 to 250 characters, no control characters or NUL;
- param values: at most 6,000 characters once serialised as JSON;
- tag values: strings (numbers and bools are converted) of at most 8,000 characters;
- metric values: real numbers (int, float, numpy scalars and 0-d arrays); bool, str, None and complex
  are refused; NaN and ±inf are kept exactly;
- steps: integers >= 0.
"""

from __future__ import annotations

import json
import math
import numbers
import posixpath
import unicodedata
from datetime import datetime
from typing import Any

from labtrack.core.errors import InvalidInput

__all__ = [
    "END_TIMESTAMP",
    "FIRST_TIMESTAMP",
    "MAX_KEY_LENGTH",
    "MAX_NESTING",
    "MAX_NOTE_LENGTH",
    "MAX_PARAM_VALUE_LENGTH",
    "MAX_TAG_VALUE_LENGTH",
    "check_artifact_path",
    "check_key",
    "check_nesting",
    "check_note",
    "checked_params",
    "checked_tags",
    "coerce_foreign_param_value",
    "coerce_metric_value",
    "coerce_param_value",
    "coerce_step",
    "coerce_tag_value",
    "coerce_timestamp",
    "parse_age",
]

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
_CONTROL = {chr(i) for i in range(32)} | {"\x7f"}


def check_key(key: object, field: str = "key") -> str:
    """``key`` as stored: in Unicode NFC (a composed and a decomposed "é" are one name everywhere — storage,
    run keys, lookups); InvalidInput if it is empty, only white space, too long or has control characters."""
    if not isinstance(key, str):
        raise InvalidInput(
            f"{field} must be a string, got {type(key).__name__} {key!r}", field=field
        )
    if not key:
        raise InvalidInput(f"{field} must not be empty", field=field)
    if not key.isascii():
        key = unicodedata.normalize("NFC", key)
    if key.isspace():
        raise InvalidInput(f"{field} {key!r} is only white space; give it a visible name", field=field)
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"{field} {key[:40]!r}... is {len(key)} characters; the limit is {MAX_KEY_LENGTH}",
            field=field,
        )
    if not _CONTROL.isdisjoint(key):
        raise InvalidInput(
            f"{field} {key!r} contains a control character or NUL; use printable characters",
            field=field,
        )
    return key


def _unwrap_numpy(value: Any) -> Any:
    """numpy scalars and 0-d arrays become Python scalars, without importing numpy."""
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        return value.item()
    return value


def coerce_metric_value(value: Any, key: str) -> float:
    field = f"metric {key!r}"
    value = _unwrap_numpy(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "complex" if isinstance(value, numbers.Complex) and not isinstance(value, bool) else type(value).__name__
        raise InvalidInput(
            f"{field}: value must be a real number (int, float or numpy scalar), got {kind} {value!r}",
            field=field,
        )
    try:
        return float(value)
    except (OverflowError, ValueError) as exc:
        raise InvalidInput(f"{field}: value {value!r} is not representable as a float", field=field) from exc


def coerce_step(step: Any, key: str) -> int:
    field = f"step of metric {key!r}"
    step = _unwrap_numpy(step)
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise InvalidInput(f"{field} must be an integer >= 0, got {type(step).__name__} {step!r}", field=field)
    number = int(step)
    if number < 0:
        raise InvalidInput(f"{field} must be >= 0, got {number}", field=field)
    if number >= 2**63:
        raise InvalidInput(f"{field} must be below 2**63, got {number}", field=field)
    return number


# Timestamps every time zone can show as a date: 0001-01-02 to 9999-12-30 (UTC), whole days.
FIRST_TIMESTAMP = -62135510400.0  # 0001-01-02T00:00:00Z
END_TIMESTAMP = 253402214400.0  # 9999-12-31T00:00:00Z (excluded)


def coerce_timestamp(timestamp: Any, key: str) -> float:
    """Seconds since the epoch (float) or an aware/naive datetime (naive means local time), from year 1
    to 9999 (see ``FIRST_TIMESTAMP``)."""
    if isinstance(timestamp, datetime):
        try:
            seconds = timestamp.timestamp()
        except (ValueError, OverflowError, OSError):  # a naive datetime at the edge of the calendar
            raise _timestamp_range(key, timestamp) from None
    else:
        timestamp = _unwrap_numpy(timestamp)
        if isinstance(timestamp, bool) or not isinstance(timestamp, numbers.Real) or not math.isfinite(timestamp):
            raise InvalidInput(
                f"timestamp of metric {key!r} must be seconds since the epoch or a datetime, got {timestamp!r}",
                field="timestamp",
            )
        seconds = float(timestamp)
    if not FIRST_TIMESTAMP <= seconds < END_TIMESTAMP:
        raise _timestamp_range(key, timestamp)
    return seconds


def _timestamp_range(key: str, timestamp: Any) -> InvalidInput:
    return InvalidInput(
        f"timestamp of metric {key!r} is {timestamp!r}: it must lie between year 1 and 9999 (0001-01-02 to "
        f"9999-12-30 UTC, {FIRST_TIMESTAMP:.0f} to {END_TIMESTAMP:.0f} seconds since the epoch)",
        field="timestamp",
    )


MAX_NESTING = 32  # levels of lists and dicts in a param value or a log_dict dictionary
MAX_NOTE_LENGTH = 100_000


def _too_deep(field: str) -> InvalidInput:
    return InvalidInput(
        f"{field}: value is nested more than {MAX_NESTING} levels deep, or contains itself; flatten it (or "
        "store a large configuration as a file with log_artifact)", field=field,
    )


def _no_nul(text: str, field: str) -> str:
    if "\x00" in text:
        raise InvalidInput(f"{field}: a string contains a NUL character; remove it (PostgreSQL cannot store "
                           "it, so no backend does)", field=field)
    return text


def check_nesting(value: Any, field: str, depth: int = 0) -> None:
    """InvalidInput if ``value`` nests lists, tuples and dicts more than ``MAX_NESTING`` levels deep (a
    structure that contains itself does)."""
    if isinstance(value, (list, tuple)):
        items: Any = value
    elif isinstance(value, dict):
        items = value.values()
    else:
        return
    if depth >= MAX_NESTING:
        raise _too_deep(field)
    for item in items:
        check_nesting(item, field, depth + 1)


def check_note(note: object) -> str:
    if not isinstance(note, str):
        raise InvalidInput(f"note must be a string, got {type(note).__name__}", field="note")
    if len(note) > MAX_NOTE_LENGTH:
        raise InvalidInput(f"note is {len(note):,} characters; the limit is {MAX_NOTE_LENGTH:,} (store longer "
                           "text as an artifact with log_text)", field="note")
    return _no_nul(note, "note")


def _jsonable(value: Any, field: str, depth: int = 0) -> Any:
    value = _unwrap_numpy(value)
    if type(value) is str:
        return _no_nul(value, field)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        if depth >= MAX_NESTING:
            raise _too_deep(field)
        return [_jsonable(v, field, depth + 1) for v in value]
    if isinstance(value, dict):
        if depth >= MAX_NESTING:
            raise _too_deep(field)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidInput(f"{field}: nested dict keys must be strings, got {k!r}", field=field)
            out[_no_nul(k, field)] = _jsonable(v, field, depth + 1)
        return out
    if hasattr(value, "__fspath__"):
        return str(value)
    raise InvalidInput(
        f"{field}: value of type {type(value).__name__} cannot be stored; use str, int, float, bool, "
        "None, or lists/dicts of those",
        field=field,
    )


def coerce_param_value(value: Any, key: str) -> Any:
    kind = type(value)
    if kind is float or kind is int or kind is bool or value is None or (
        kind is str and len(value) < 1000 and "\x00" not in value
    ):
        return value  # the common case, as it is stored
    field = f"param {key!r}"
    out = _jsonable(value, field)
    if out is None or isinstance(out, (bool, int, float)) or (isinstance(out, str) and len(out) < 1000):
        return out  # cannot reach the limit: spare the JSON encoding (this is on start_run's path)
    size = len(json.dumps(out, ensure_ascii=False))
    if size > MAX_PARAM_VALUE_LENGTH:
        raise InvalidInput(
            f"{field}: value is {size} characters as JSON; the limit is {MAX_PARAM_VALUE_LENGTH} "
            "(log large configurations with log_dict as an artifact)",
            field=field,
        )
    return out


def coerce_foreign_param_value(value: Any, key: str) -> Any:
    """A param value from another tracker (MLflow's endpoint, an import): a string counted in characters, as
    MLflow counts them (its autologging cuts values to 6000) — labtrack's own limit counts JSON, where a newline
    or a quote is two, and would refuse a YAML config MLflow kept; anything else as ``coerce_param_value``."""
    if not isinstance(value, str):
        return coerce_param_value(value, key)
    if len(value) > MAX_PARAM_VALUE_LENGTH or "\x00" in value:
        field = f"param {key!r}"
        raise InvalidInput(f"{field}: value is {len(value)} characters{' with a NUL' if chr(0) in value else ''}; "
                           f"the limit is {MAX_PARAM_VALUE_LENGTH} characters, without NUL", field=field)
    return value


def coerce_tag_value(value: Any, key: str) -> str:
    if type(value) is str and len(value) <= MAX_TAG_VALUE_LENGTH and "\x00" not in value:
        return value
    field = f"tag {key!r}"
    value = _unwrap_numpy(value)
    if isinstance(value, (bool, int, float)):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: value must be a string, got {type(value).__name__}", field=field)
    if len(value) > MAX_TAG_VALUE_LENGTH:
        raise InvalidInput(
            f"{field}: value is {len(value)} characters; the limit is {MAX_TAG_VALUE_LENGTH}", field=field
        )
    if "\x00" in value:
        raise InvalidInput(f"{field}: value contains a NUL character", field=field)
    return value


def check_artifact_path(path: object, field: str = "artifact_path") -> str:
    """A relative posix path inside the run: no absolute paths, no '..', no empty or control parts."""
    if not isinstance(path, str):
        raise InvalidInput(f"{field} must be a string, got {type(path).__name__}", field=field)
    if not path or not _CONTROL.isdisjoint(path):
        raise InvalidInput(f"{field} {path!r} must be a non-empty printable relative path", field=field)
    if "\\" in path:
        raise InvalidInput(f"{field} {path!r}: use '/' as the separator", field=field)
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise InvalidInput(f"{field} {path!r} must be relative to the run, not absolute", field=field)
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidInput(
            f"{field} {path!r} must not contain '..', '.' or empty components (it must stay inside the run)",
            field=field,
        )
    return posixpath.normpath(path)


def checked_params(params: Any) -> dict[str, Any]:
    """Params as stored: each key checked, each value coerced (see ``coerce_param_value``)."""
    if params is None:
        return {}
    if not isinstance(params, dict) and not hasattr(params, "items"):
        raise InvalidInput(f"params must be a dict, got {type(params).__name__}", field="params")
    return {check_key(k, "param key"): coerce_param_value(v, k) for k, v in params.items()}


def checked_tags(tags: Any) -> dict[str, str]:
    """Tags as stored: each key checked, each value a string (see ``coerce_tag_value``)."""
    if tags is None:
        return {}
    if not isinstance(tags, dict) and not hasattr(tags, "items"):
        raise InvalidInput(f"tags must be a dict, got {type(tags).__name__}", field="tags")
    return {check_key(k, "tag key"): coerce_tag_value(v, k) for k, v in tags.items()}


_AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_age(age: object, field: str = "older_than") -> float:
    """An age in seconds, from seconds (a number), a ``datetime.timedelta``, or text such as ``30d``,
    ``12h``, ``1d12h``, ``90m``, ``45s``, ``2w`` or ``0``."""
    import datetime
    import re

    if isinstance(age, datetime.timedelta):
        seconds = age.total_seconds()
    elif isinstance(age, (int, float)) and not isinstance(age, bool):
        seconds = float(age)
    elif isinstance(age, str) and re.fullmatch(r"\s*0+\s*|(\s*\d+(\.\d+)?\s*[smhdw]\s*)+", age.lower()):
        seconds = 0.0 + sum(float(n) * _AGE_UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([smhdw])", age.lower()))
    else:
        raise InvalidInput(f"{field}: give an age such as 30d, 12h, 1d12h, 90m or 0, got {age!r}", field=field)
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput(f"{field}: an age is 0 or more, got {age!r}", field=field)
    return seconds
