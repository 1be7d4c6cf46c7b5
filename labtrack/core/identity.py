"""Canonical forms of values, the basis of run identity.

``canonical_json`` is stable across dict order and spelling: keys are sorted, an integral float is
written as the integer it equals (``1.0`` and ``1`` are the same param, as a user expects), strings
are NFC-normalised (a composed and a decomposed "é" are the same), tuples are lists, and non-finite
floats are written as the strings "NaN", "Infinity" and "-Infinity".
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

__all__ = ["canonical_json", "canonical_value", "same_value"]


def canonical_value(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value.is_integer() and abs(value) < 2**63:
            return int(value)
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, (list, tuple)):
        return [canonical_value(v) for v in value]
    if isinstance(value, dict):
        return {unicodedata.normalize("NFC", str(k)): canonical_value(v) for k, v in value.items()}
    return str(value)


def canonical_json(value: Any) -> str:
    return json.dumps(
        canonical_value(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def same_value(a: Any, b: Any) -> bool:
    """Whether two param values are the same under the canonical form."""
    return canonical_json(a) == canonical_json(b)
