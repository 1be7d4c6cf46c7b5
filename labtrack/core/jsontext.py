"""JSON text of a value exactly as ``json.dumps(value, ensure_ascii=False)`` writes it, faster for scalars.

Every param of every run is stored as its JSON text, and every ended run's frame holds its tags as JSON:
``json.dumps`` with a non-default option builds an encoder per call (~3 µs), more than the rest of the
work for a float. Scalars are written directly here; anything else goes through one shared encoder.
"""

from __future__ import annotations

import json
from json.encoder import py_encode_basestring
from typing import Any

__all__ = ["json_text"]

try:  # the C version, as the json module itself uses
    from _json import encode_basestring as _string
except ImportError:  # pragma: no cover - CPython always has _json
    _string = py_encode_basestring

_ENCODER = json.JSONEncoder(ensure_ascii=False)
_INFINITY = float("inf")


def json_text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return str(_string(value))
    if kind is float:
        if value != value:
            return "NaN"
        if value == _INFINITY:
            return "Infinity"
        if value == -_INFINITY:
            return "-Infinity"
        return float.__repr__(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    return _ENCODER.encode(value)
