"""A tracked function's result, stored as data and read back without executing anything.

A result is stored as JSON when it is JSON. What JSON cannot hold travels as tagged JSON objects
(``{"__labtrack__": <tag>, ...}``): bytes, tuples, sets and frozensets, dicts whose keys are not all strings (or
that hold the tag key themselves), numpy scalars (dtype and value), and numpy arrays, each written as a
``.npy`` artifact (``labtrack/result.<i>.npy``) and read with ``allow_pickle=False``. Reading only builds
those types: a stored result cannot name a class to construct or code to run.

Anything else (an object, a namedtuple, an array of objects) is refused — unless the caller passes
``trust_pickle=True``: it is then pickled into ``labtrack/result.pkl``, and loaded back only by a caller that
passes ``trust_pickle=True`` too. Whoever can write runs to a store can write such a result, so a reader
that trusts pickle trusts every writer of the store.
"""

from __future__ import annotations

import binascii
import io
import json
import pickle
from collections.abc import Callable
from typing import IO, Any

from labtrack.core.errors import InvalidInput

__all__ = ["PICKLED_RESULT", "TAG", "TRUST_PICKLE", "NotData", "decode_result", "encode_result", "pickled"]

TAG = "__labtrack__"
PICKLED_RESULT = "labtrack/result.pkl"
TRUST_PICKLE = ("pass trust_pickle=True only for a store whose every writer you trust (loading a pickle runs "
          "whatever code its writer chose)")


_PREVIEW_ITEMS = 100  # an array this small is also kept in the record itself (not read back from there)


class NotData(Exception):
    """The value holds something that is not plain data (see the module docstring)."""


def _encode(value: Any, arrays: list[Any]) -> Any:
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str or kind is float:
        return value
    if kind is list:
        return [_encode(v, arrays) for v in value]
    if kind is dict:
        if TAG not in value and all(type(k) is str for k in value):
            return {k: _encode(v, arrays) for k, v in value.items()}
        return {TAG: "dict", "items": [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()]}
    if kind is bytes:
        return {TAG: "bytes", "base64": binascii.b2a_base64(value, newline=False).decode("ascii")}
    if kind is tuple or kind is set or kind is frozenset:
        return {TAG: kind.__name__, "items": [_encode(v, arrays) for v in value]}
    if kind.__module__ == "numpy":
        return _encode_numpy(value, arrays)
    raise NotData(kind.__qualname__)


def _encode_numpy(value: Any, arrays: list[Any]) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise NotData("numpy array of Python objects")
        arrays.append(value)
        tagged = {TAG: "npy", "artifact": f"labtrack/result.{len(arrays) - 1}.npy", "dtype": value.dtype.str,
                  "shape": list(value.shape)}
        if value.size <= _PREVIEW_ITEMS and value.dtype.kind in "biuf":  # for people and other tools
            tagged["preview"] = value.tolist()
        return tagged
    if isinstance(value, np.generic):
        item = value.item()
        if value.dtype.kind in "biuf" and type(item) in (bool, int, float):
            return {TAG: "numpy", "dtype": value.dtype.str, "value": item}
    raise NotData(type(value).__qualname__)


def encode_result(value: Any) -> tuple[Any, list[tuple[str, bytes]]]:
    """``value`` as JSON-able data and the ``.npy`` artifacts it refers to, as (path, content) pairs.
    Raises ``NotData`` (naming what) when it holds anything else (see the module docstring)."""
    arrays: list[Any] = []
    try:
        encoded = _encode(value, arrays)
    except RecursionError:
        raise InvalidInput("the result is nested too deeply to store", field="result") from None
    files = []
    if arrays:
        import numpy as np

        for i, array in enumerate(arrays):
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            files.append((f"labtrack/result.{i}.npy", buffer.getvalue()))
    return encoded, files


def pickled(value: Any) -> tuple[Any, list[tuple[str, bytes]]]:
    """``value`` pickled (the caller trusts pickle): the tagged reference and the artifact."""
    data = pickle.dumps(value)
    preview = json.loads(json.dumps(value, default=repr, allow_nan=True))
    return {TAG: "pickled", "artifact": PICKLED_RESULT, "preview": preview}, [(PICKLED_RESULT, data)]


def decode_result(data: Any, open_artifact: Callable[[str], IO[bytes]], *, trust_pickle: bool = False) -> Any:
    """The value ``encode_result`` (or ``pickled``) made ``data``; artifacts are read through ``open_artifact``. A
    pickled result raises InvalidInput unless ``trust_pickle``."""
    if isinstance(data, list):
        return [decode_result(v, open_artifact, trust_pickle=trust_pickle) for v in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(TAG)
    if tag is None:
        return {k: decode_result(v, open_artifact, trust_pickle=trust_pickle) for k, v in data.items()}
    try:
        return _decode_tagged(tag, data, open_artifact, trust_pickle)
    except InvalidInput:
        raise
    except (KeyError, TypeError, ValueError, OSError, binascii.Error) as exc:
        raise InvalidInput(f"the stored result is damaged ({type(exc).__name__}: {exc})", field="result") from exc


def _decode_tagged(tag: Any, data: dict[str, Any], open_artifact: Callable[[str], IO[bytes]],
                   trust_pickle: bool) -> Any:
    def items() -> list[Any]:
        return [decode_result(v, open_artifact, trust_pickle=trust_pickle) for v in data["items"]]

    if tag == "bytes":
        return binascii.a2b_base64(str(data["base64"]).encode("ascii"), strict_mode=True)
    if tag == "tuple":
        return tuple(items())
    if tag == "set":
        return set(items())
    if tag == "frozenset":
        return frozenset(items())
    if tag == "dict":
        return {_hashable(k): v for k, v in items()}
    if tag == "numpy":
        import numpy as np

        dtype = np.dtype(str(data["dtype"]))
        if dtype.kind not in "biuf" or not isinstance(data["value"], (bool, int, float)):
            raise ValueError(f"not a numeric numpy scalar: {dtype}")
        return dtype.type(data["value"])
    if tag == "npy":
        import numpy as np

        with open_artifact(str(data["artifact"])) as f:
            return np.load(io.BytesIO(f.read()), allow_pickle=False)
    if tag == "pickled":
        if not trust_pickle:
            raise InvalidInput(
                f"the stored result is a pickle (artifact {data.get('artifact')!r}); it is not loaded unless "
                f"the caller asks: load_result(trust_pickle=True) or track(trust_pickle=True) — {TRUST_PICKLE}",
                field="result",
            )
        with open_artifact(str(data["artifact"])) as f:
            return pickle.loads(f.read())  # the caller trusts this store (trust_pickle=True)
    raise ValueError(f"unknown result tag {tag!r}")


def _hashable(key: Any) -> Any:
    if isinstance(key, (list, dict, set)):
        raise ValueError(f"a dict key decoded as {type(key).__name__}")
    return key
