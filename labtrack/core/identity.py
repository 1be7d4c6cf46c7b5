"""Canonical forms of values, the basis of run identity.

``canonical_json`` is stable across dict order and spelling: keys are sorted, an integral float is
written as the integer it equals (``1.0`` and ``1`` are the same param, as a user expects), strings
are NFC-normalised (a composed and a decomposed "é" are the same), tuples are lists, and non-finite
floats are written as the strings "NaN", "Infinity" and "-Infinity".
"""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from typing import Any

__all__ = [
    "DEFAULT_IDENTITY",
    "IDENTITY_PARTS",
    "canonical_json",
    "canonical_value",
    "check_identity",
    "run_key",
    "same_value",
]


def _text(value: str) -> str:
    return value if value.isascii() else unicodedata.normalize("NFC", value)  # ASCII is already NFC


def canonical_value(value: Any) -> Any:
    kind = type(value)  # the common exact types first: this runs on every param of every run
    if kind is str:
        return _text(value)
    if kind is int:
        return value
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
        return _text(value)
    if isinstance(value, (list, tuple)):
        return [canonical_value(v) for v in value]
    if isinstance(value, dict):
        return {_text(str(k)): canonical_value(v) for k, v in value.items()}
    return str(value)


def canonical_json(value: Any) -> str:
    return json.dumps(
        canonical_value(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def same_value(a: Any, b: Any) -> bool:
    """Whether two param values are the same under the canonical form."""
    return canonical_json(a) == canonical_json(b)


IDENTITY_PARTS = ("params", "code", "inputs", "env")
DEFAULT_IDENTITY = ("params", "code", "inputs")


def check_identity(identity: Any) -> tuple[str, ...]:
    """Validate an ``identity=`` argument: a subset of params, code, inputs, env."""
    from labtrack.core.errors import InvalidInput

    if isinstance(identity, str):
        identity = (identity,)
    parts = tuple(identity)
    unknown = [p for p in parts if p not in IDENTITY_PARTS]
    if unknown:
        raise InvalidInput(
            f"identity part(s) {unknown} unknown; choose from {', '.join(IDENTITY_PARTS)}", field="identity"
        )
    return tuple(p for p in IDENTITY_PARTS if p in parts)


def run_key(
    experiment: str,
    params: dict[str, Any],
    *,
    identity: tuple[str, ...] = DEFAULT_IDENTITY,
    exclude: tuple[str, ...] = (),
    code: dict[str, Any] | None = None,
    inputs: dict[str, str] | None = None,
    env_fingerprint: str | None = None,
    entry: dict[str, Any] | None = None,
) -> str:
    """The sha256 that names an experiment: same key, same experiment, so it may be skipped.

    It covers the experiment name, what runs (``entry``: the entry script's path in the project, or a
    tracked function's qualified name and source hash — two scripts or two functions with the same params
    are different experiments) and, as ``identity`` selects, the params (minus ``exclude``d keys),
    the code version (``code``: commit and the hash of the uncommitted diff), the declared inputs
    (``inputs``: name -> content sha256) and the environment fingerprint. Keys are canonical:
    dict order, 1 vs 1.0 and composed vs decomposed unicode do not change them.
    """
    body: dict[str, Any] = {"v": 2, "experiment": canonical_value(experiment), "entry": entry}
    if "params" in identity:
        excluded = set(exclude)
        body["params"] = {k: v for k, v in params.items() if k not in excluded} if excluded else params
    if "code" in identity:
        body["code"] = code
    if "inputs" in identity:
        body["inputs"] = dict(inputs or {})
    if "env" in identity:
        body["env"] = env_fingerprint
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()
