"""One wire format: every record labtrack exchanges, as JSON data and back to an equal object.

The CLI's ``--json`` prints it, and the tracking server and the remote store speak it. The codec is
driven by the dataclass field type hints of the records, so a record's shape is its fields, by name:

- ``float`` fields: finite numbers as JSON numbers; NaN, +inf and -inf as the strings ``"NaN"``,
  ``"Infinity"`` and ``"-Infinity"``. ``int``, ``str``, ``bool``: as themselves; enums by their value.
- Free-form values (hint ``Any``: params, a run's result, environment snapshots, context sections): plain
  JSON, except that a non-finite float becomes ``{"$float": "NaN" | "Infinity" | "-Infinity"}`` and a dict
  whose only key starts with ``$`` is wrapped as ``{"$dict": {...}}``, so user data is never read as a tag.
  (A param that is the *string* ``"NaN"`` stays a string; a float NaN stays a float.)
- ``X | None``: null or X. A union of several records carries ``"type": <class name>`` (the filter AST).
- ``list``, ``tuple`` and ``Sequence``: arrays (a ``Sequence`` decodes to a tuple); ``set`` and
  ``frozenset``: sorted arrays; ``dict[str, T]`` and ``Mapping[str, T]``: objects.
- Read-only properties a record names in ``wire_derived`` (``RunDiff.identical``, ``Verdict.exit_code``) are
  written for readers and ignored when decoding: they follow from the fields.
- A class with its own layout encodes itself through ``wire_encode()`` and the classmethod
  ``wire_decode(data, path)``: metric series and run tables travel packed, as base64 of little-endian
  int64/float64 arrays (``"encoding": "le-base64"``; every bit kept, NaN payloads and -0.0 included).
- Errors: ``{"error": {"code": <class name>, "message", "field", "status"}}``, decoded to the class of
  that name (any ``LabtrackError`` subclass; an unknown code gives ``LabtrackError``).

Decoding validates, for bodies from the network: a wrong JSON type, a missing or unknown field or a
malformed array raises ``InvalidInput`` whose ``field`` is the path to the value (``metrics.loss.last``,
``artifacts[2].size``). Nothing is evaluated or unpickled. ``dumps`` writes strict JSON (no bare NaN).
"""

from __future__ import annotations

import binascii
import collections.abc as abc
import dataclasses
import enum
import functools
import json
import math
import sys
import types
import zlib
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, TypeVar, Union, cast, get_args, get_origin, overload

from labtrack.core import wirefast
from labtrack.core.errors import InvalidInput, LabtrackError
from labtrack.core.hints import derived as _derived
from labtrack.core.hints import record_fields as _fields

__all__ = [
    "ENCODING",
    "MAX_INFLATED",
    "Json",
    "decode_array",
    "dumps",
    "encode_array",
    "error_from_wire",
    "error_to_wire",
    "expect_object",
    "from_wire",
    "join_path",
    "loads",
    "to_wire",
]

Json: TypeAlias = "bool | int | float | str | list[Json] | dict[str, Json] | None"
_T = TypeVar("_T")

ENCODING = "le-base64"  # how packed arrays travel: base64 of the little-endian bytes
_SWAP = sys.byteorder != "little"
_DEFLATE = "deflate"  # a packed array deflated: {"deflate": <base64 of the raw deflate stream>}
MAX_INFLATED = 1 << 28  # bytes one deflated array may inflate to (32M points)
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_FLOAT_TAG, _DICT_TAG = "$float", "$dict"
_NONE_TYPE = type(None)


# -- encoding ----------------------------------------------------------------------------------------


def to_wire(obj: object, tp: object = None) -> Json:
    """``obj`` as JSON data. ``tp`` is its type (a class or a hint such as ``list[RunRecord]``); by default
    the object's own class, and a list or dict of records of one class is read as such."""
    tp = _infer(obj) if tp is None else tp
    fast = wirefast.encoder(tp)
    if fast is not None:
        try:
            return cast(Json, fast(obj))
        except Exception:
            pass
    return _encode(obj, tp, "")


def dumps(obj: object, tp: object = None, *, indent: int | None = None) -> str:
    """``to_wire`` as strict JSON text (any JSON parser reads it: no bare NaN or Infinity)."""
    return json.dumps(to_wire(obj, tp), allow_nan=False, ensure_ascii=False, indent=indent)


def error_to_wire(exc: LabtrackError) -> dict[str, Json]:
    """The JSON error body: ``{"error": {"code", "message", "field", "status"}}``."""
    return cast("dict[str, Json]", exc.to_dict())


def join_path(path: str, key: str | int) -> str:
    """The path of a member: ``metrics`` + ``loss`` is ``metrics.loss``; ``artifacts`` + 2 is ``artifacts[2]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def encode_array(values: Iterable[int] | Iterable[float], typecode: str, *, deflate: bool = False) -> Json:
    """Numbers packed as base64 of little-endian ``typecode`` items ('q' int64, 'd' float64); with
    ``deflate``, those bytes deflated first, as ``{"deflate": <base64>}`` (steps and timestamps shrink to a
    fraction at a fraction of what compressing the whole JSON text costs)."""
    arr = values if isinstance(values, array) and values.typecode == typecode else array(typecode, values)
    if _SWAP:  # pragma: no cover - big-endian hosts only
        arr = array(typecode, arr)
        arr.byteswap()
    raw = arr.tobytes()
    if deflate:
        squeeze = zlib.compressobj(1, zlib.DEFLATED, -15)
        packed = squeeze.compress(raw) + squeeze.flush()
        return {_DEFLATE: binascii.b2a_base64(packed, newline=False).decode("ascii")}
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def _infer(obj: object) -> object:
    if _is_record(type(obj)):
        return type(obj)
    if isinstance(obj, (list, tuple)) and obj and _is_record(kind := type(obj[0])):
        if all(type(item) is kind for item in obj):
            return list[kind]  # type: ignore[valid-type]
    if isinstance(obj, dict) and obj and _is_record(kind := type(next(iter(obj.values())))):
        if all(type(item) is kind for item in obj.values()):
            return dict[str, kind]  # type: ignore[valid-type]
    return Any


def _is_record(cls: type) -> bool:
    return (dataclasses.is_dataclass(cls) or hasattr(cls, "wire_encode") or issubclass(cls, LabtrackError)
            or issubclass(cls, enum.Enum))


def _encode(value: Any, tp: Any, path: str) -> Json:
    if tp is Any or tp is object:
        return _encode_free(value, path)
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return _encode_union(value, get_args(tp), path)
    if origin is Literal:
        return _encode_free(value, path)
    if origin is not None:
        return _encode_container(value, tp, origin, path)
    if tp is _NONE_TYPE and value is None:
        return None
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _float_to_wire(float(value))
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if tp is str and isinstance(value, str):
        return str.__str__(value)
    if isinstance(tp, type):
        fits = issubclass(type(value), tp)  # (not isinstance: value stays Any for the calls below)
        if fits and hasattr(tp, "wire_encode"):
            return cast(Json, value.wire_encode())
        if fits and issubclass(tp, LabtrackError):
            return error_to_wire(value)
        if issubclass(tp, enum.Enum):  # a member, or its plain value where the enum is expected
            return _encode_free((value if fits else tp(value)).value, path)
        if fits and dataclasses.is_dataclass(tp):
            return _encode_record(value, tp, path)
    raise TypeError(f"{path or 'the value'}: cannot encode {type(value).__name__} as {_name(tp)}")


def _encode_record(value: Any, cls: type, path: str) -> dict[str, Json]:
    out: dict[str, Json] = {}
    for name, hint, _ in _fields(cls):
        out[name] = _encode(getattr(value, name), hint, join_path(path, name))
    for name in _derived(cls):
        out[name] = _encode_free(getattr(value, name), join_path(path, name))
    return out


def _encode_union(value: Any, args: tuple[Any, ...], path: str) -> Json:
    if value is None and _NONE_TYPE in args:
        return None
    members = [a for a in args if a is not _NONE_TYPE]
    if len(members) == 1:
        return _encode(value, members[0], path)
    tagged = _tagged(members)
    kind = type(value)
    if kind in tagged.values():
        fields = _encode_record(value, kind, path)
        if "type" in fields:
            raise TypeError(f"{kind.__name__} has a field named 'type', which tags it in a union")
        return {"type": kind.__name__, **fields}
    raise TypeError(f"{path or 'the value'}: {kind.__name__} is none of {', '.join(tagged)}")


def _encode_container(value: Any, tp: Any, origin: Any, path: str) -> Json:
    args = get_args(tp)
    if origin in (dict, abc.Mapping, abc.MutableMapping) and isinstance(value, Mapping):
        if args and args[0] is not str:
            raise TypeError(f"{path or 'the value'}: only str keys travel as JSON object keys, not {_name(args[0])}")
        item = args[1] if args else Any
        out: dict[str, Json] = {}
        for key, member in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path or 'the value'}: key {key!r} is not a string")
            out[key] = _encode(member, item, join_path(path, key))
        return out
    if origin is tuple and isinstance(value, (tuple, list)):
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            item = args[0] if args else Any
            return [_encode(member, item, join_path(path, i)) for i, member in enumerate(value)]
        if len(value) != len(args):
            raise TypeError(f"{path or 'the value'}: {len(value)} items for {_name(tp)}")
        return [_encode(member, hint, join_path(path, i)) for i, (member, hint) in enumerate(zip(value, args))]
    if origin in (set, frozenset, abc.Set, abc.MutableSet) and isinstance(value, (set, frozenset)):
        item = args[0] if args else Any
        encoded = [_encode(member, item, join_path(path, i)) for i, member in enumerate(value)]
        if all(isinstance(e, str) for e in encoded):
            return sorted(encoded, key=str)
        return sorted(encoded, key=lambda e: json.dumps(e, sort_keys=True))
    if origin in (list, abc.Sequence, abc.MutableSequence) and isinstance(value, (list, tuple)):
        item = args[0] if args else Any
        return [_encode(member, item, join_path(path, i)) for i, member in enumerate(value)]
    raise TypeError(f"{path or 'the value'}: cannot encode {type(value).__name__} as {_name(tp)}")


def _float_to_wire(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def _encode_free(value: Any, path: str) -> Json:
    """A free-form value (``Any``): JSON, with non-finite floats and $-keyed dicts tagged (see the docstring)."""
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return cast(Json, value)
    if kind is float:
        return value if math.isfinite(value) else {_FLOAT_TAG: _float_to_wire(value)}
    if isinstance(value, Mapping):
        out: dict[str, Json] = {}
        for key, member in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path or 'the value'}: key {key!r} is not a string")
            out[str.__str__(key)] = _encode_free(member, join_path(path, key))
        if len(out) == 1 and next(iter(out)).startswith("$"):
            return {_DICT_TAG: out}
        return out
    if isinstance(value, (list, tuple)):
        return [_encode_free(member, join_path(path, i)) for i, member in enumerate(value)]
    if isinstance(value, enum.Enum):
        return _encode_free(value.value, path)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _encode_free(float(value), path)
    if isinstance(value, str):
        return str.__str__(value)
    raise TypeError(f"{path or 'the value'}: {kind.__name__} is not JSON data")


# -- decoding ----------------------------------------------------------------------------------------


@overload
def from_wire(tp: type[_T], data: object, *, path: str = "") -> _T: ...
@overload
def from_wire(tp: object, data: object, *, path: str = "") -> Any: ...
def from_wire(tp: object, data: object, *, path: str = "") -> Any:
    """Decode JSON data into ``tp`` (a class or a hint such as ``list[RunRecord]``), validating as it goes:
    anything that does not fit raises ``InvalidInput`` naming the path to it (``path`` prefixes it)."""
    fast = wirefast.decoder(tp)
    if fast is not None:
        try:
            return fast(data)
        except Exception:
            pass
    try:
        return _decode(tp, data, path)
    except RecursionError:
        raise InvalidInput("the data is nested too deeply", field=path or None) from None


def loads(tp: object, text: str | bytes) -> Any:
    """Parse strict JSON text and decode it into ``tp`` (see ``from_wire``)."""

    def refuse(constant: str) -> Any:
        raise InvalidInput(f'{constant} is not JSON: write non-finite numbers as "NaN", "Infinity" or "-Infinity"')

    try:
        data = json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput("the JSON is nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"not valid JSON: {exc}") from None
    return from_wire(tp, data)


def error_from_wire(data: object, *, path: str = "") -> LabtrackError:
    """The error a JSON error body describes, of the class its ``code`` names (``LabtrackError`` for a code
    this version does not know), with its message and field."""
    body = expect_object(data, path, ("error",))
    inner_path = join_path(path, "error")
    inner = expect_object(body["error"], inner_path, ("code", "message"), ("field", "status"))
    code = _decode(str, inner["code"], join_path(inner_path, "code"))
    message = _decode(str, inner["message"], join_path(inner_path, "message"))
    field = _decode(str | None, inner.get("field"), join_path(inner_path, "field"))
    _decode(int | None, inner.get("status"), join_path(inner_path, "status"))  # the class carries its own
    cls = _error_class(code)
    for candidate in cls.__mro__:  # the first class that takes a bare message (a subclass may want more)
        if not (isinstance(candidate, type) and issubclass(candidate, LabtrackError)):
            continue
        try:
            exc = candidate(message, field=field) if issubclass(candidate, InvalidInput) else candidate(message)
        except TypeError:
            continue
        exc.field = field
        return exc
    raise AssertionError("LabtrackError takes a message")  # pragma: no cover


def _error_class(code: str) -> type[LabtrackError]:
    queue: list[type[LabtrackError]] = [LabtrackError]
    while queue:
        cls = queue.pop(0)
        if cls.__name__ == code:
            return cls
        queue.extend(cls.__subclasses__())
    return LabtrackError


def expect_object(
    data: object, path: str, required: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, object]:
    """``data`` as a JSON object with the ``required`` keys and no keys but those and ``optional``."""
    if not isinstance(data, dict):
        raise _invalid(path, "an object", data)
    for key in data:
        if key not in required and key not in optional:
            raise InvalidInput(f"{join_path(path, key)}: unknown field", field=join_path(path, key))
    for key in required:
        if key not in data:
            raise InvalidInput(f"{join_path(path, key)}: missing field", field=join_path(path, key))
    return cast("dict[str, object]", data)


def decode_array(data: object, typecode: str, path: str) -> array[Any]:
    """A packed array (see ``encode_array``), deflated or not; InvalidInput for anything else. A deflated one
    is inflated a piece at a time and refused past ``MAX_INFLATED`` bytes (a bomb never fills memory)."""
    deflated = isinstance(data, dict) and len(data) == 1 and _DEFLATE in data
    text = data[_DEFLATE] if deflated else data  # type: ignore[index]
    if not isinstance(text, str):
        raise _invalid(path, f"a {ENCODING} string or {{\"{_DEFLATE}\": string}}", data)
    try:
        raw = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidInput(f"{path or 'the value'}: not base64", field=path or None) from None
    if deflated:
        raw = _inflate(raw, path)
    arr = array(typecode)
    if len(raw) % arr.itemsize:
        raise InvalidInput(f"{path or 'the value'}: {len(raw)} bytes is not a whole number of "
                           f"{arr.itemsize}-byte numbers", field=path or None)
    arr.frombytes(raw)
    if _SWAP:  # pragma: no cover - big-endian hosts only
        arr.byteswap()
    return arr


def _inflate(packed: bytes, path: str) -> bytes:
    inflate = zlib.decompressobj(-15)
    try:
        raw = inflate.decompress(packed, MAX_INFLATED + 1)
    except zlib.error as exc:
        raise InvalidInput(f"{path or 'the value'}: not deflate data ({exc})", field=path or None) from None
    if len(raw) > MAX_INFLATED or inflate.unconsumed_tail:
        raise InvalidInput(f"{path or 'the value'}: inflates to more than {MAX_INFLATED >> 20} MiB",
                           field=path or None)
    if not inflate.eof:
        raise InvalidInput(f"{path or 'the value'}: the deflate data is cut short", field=path or None)
    return raw


def _decode(tp: Any, data: object, path: str) -> Any:
    if tp is Any or tp is object:
        return _decode_free(data, path)
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return _decode_union(get_args(tp), data, path)
    if origin is Literal:
        if data in get_args(tp) and type(data) in {type(a) for a in get_args(tp)}:
            return data
        raise InvalidInput(f"{path or 'the value'}: expected one of {', '.join(map(repr, get_args(tp)))}",
                           field=path or None)
    if origin is not None:
        return _decode_container(tp, origin, data, path)
    if tp is float:
        return _float_from_wire(data, path)
    if tp is int:
        if type(data) is int:
            return data
        raise _invalid(path, "an integer", data)
    if tp is str:
        if isinstance(data, str):
            return data
        raise _invalid(path, "a string", data)
    if tp is bool:
        if isinstance(data, bool):
            return data
        raise _invalid(path, "true or false", data)
    if tp is _NONE_TYPE:
        if data is None:
            return None
        raise _invalid(path, "null", data)
    if isinstance(tp, type):
        decode = getattr(tp, "wire_decode", None)
        if decode is not None:
            return decode(data, path)
        if issubclass(tp, LabtrackError):
            exc = error_from_wire(data, path=path)
            if not isinstance(exc, tp):
                raise InvalidInput(f"{path or 'the value'}: expected a {tp.__name__} error, got "
                                   f"{type(exc).__name__}", field=path or None)
            return exc
        if issubclass(tp, enum.Enum):
            return _decode_enum(tp, data, path)
        if dataclasses.is_dataclass(tp):
            return _decode_record(tp, data, path)
    raise TypeError(f"{path or 'the value'}: the wire format has no decoding for {_name(tp)}")


def _decode_enum(tp: type[enum.Enum], data: object, path: str) -> enum.Enum:
    if isinstance(data, (str, int)) and not isinstance(data, bool):
        for member in tp:
            if member.value == data and type(member.value) is type(data):
                return member
    choices = ", ".join(repr(m.value) for m in tp)
    raise InvalidInput(f"{path or 'the value'}: expected one of {choices}, got {_show(data)}", field=path or None)


def _decode_record(cls: type, data: object, path: str, *, tag: bool = False) -> Any:
    fields = _fields(cls)
    names = [name for name, _, _ in fields]
    required = [name for name, _, needed in fields if needed]
    optional = [*names, *_derived(cls), *(["type"] if tag else [])]
    given = expect_object(data, path, required, optional)
    kwargs = {name: _decode(hint, given[name], join_path(path, name)) for name, hint, _ in fields if name in given}
    try:
        return cls(**kwargs)
    except LabtrackError:
        raise
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{path or cls.__name__}: {exc}", field=path or None) from exc


def _decode_union(args: tuple[Any, ...], data: object, path: str) -> Any:
    if data is None and _NONE_TYPE in args:
        return None
    members = [a for a in args if a is not _NONE_TYPE]
    if len(members) == 1:
        return _decode(members[0], data, path)
    tagged = _tagged(members)
    if not isinstance(data, dict):
        raise _invalid(path, "an object", data)
    name = data.get("type")
    if name not in tagged:
        raise InvalidInput(f"{join_path(path, 'type')}: expected one of {', '.join(tagged)}, got {_show(name)}",
                           field=join_path(path, "type"))
    return _decode_record(tagged[name], data, path, tag=True)


def _decode_container(tp: Any, origin: Any, data: object, path: str) -> Any:
    args = get_args(tp)
    if origin in (dict, abc.Mapping, abc.MutableMapping):
        if not isinstance(data, dict):
            raise _invalid(path, "an object", data)
        item = args[1] if args else Any
        return {key: _decode(item, member, join_path(path, key)) for key, member in data.items()}
    if not isinstance(data, list):
        raise _invalid(path, "an array", data)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(data) != len(args):
            raise InvalidInput(f"{path or 'the value'}: expected {len(args)} items, got {len(data)}",
                               field=path or None)
        return tuple(_decode(hint, member, join_path(path, i)) for i, (hint, member) in enumerate(zip(args, data)))
    item = args[0] if args else Any
    items = [_decode(item, member, join_path(path, i)) for i, member in enumerate(data)]
    if origin in (list, abc.MutableSequence):
        return items
    if origin in (tuple, abc.Sequence):
        return tuple(items)
    if origin in (set, abc.MutableSet):
        return set(items)
    if origin in (frozenset, abc.Set):
        return frozenset(items)
    raise TypeError(f"{path or 'the value'}: the wire format has no decoding for {_name(tp)}")


def _float_from_wire(data: object, path: str) -> float:
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        try:
            return float(data)
        except OverflowError:
            raise InvalidInput(f"{path or 'the value'}: {data} is too large for a float", field=path or None) from None
    if isinstance(data, str) and data in _NON_FINITE:
        return _NON_FINITE[data]
    raise _invalid(path, 'a number, "NaN", "Infinity" or "-Infinity"', data)


def _decode_free(data: object, path: str) -> Any:
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [_decode_free(member, join_path(path, i)) for i, member in enumerate(data)]
    if isinstance(data, dict):
        if len(data) == 1:
            (key, member), = data.items()
            if isinstance(key, str) and key.startswith("$"):
                return _decode_tag(key, member, join_path(path, key))
        return {_key(key, path): _decode_free(member, join_path(path, key)) for key, member in data.items()}
    raise _invalid(path, "JSON data", data)


def _decode_tag(tag: str, data: object, path: str) -> Any:
    if tag == _FLOAT_TAG:
        if isinstance(data, str) and data in _NON_FINITE:
            return _NON_FINITE[data]
        raise _invalid(path, '"NaN", "Infinity" or "-Infinity"', data)
    if tag == _DICT_TAG:
        if not isinstance(data, dict):
            raise _invalid(path, "an object", data)
        return {_key(key, path): _decode_free(member, join_path(path, key)) for key, member in data.items()}
    raise InvalidInput(f"{path}: unknown tag {tag!r} (a dict whose only key starts with $ travels as "
                       f'{{"{_DICT_TAG}": {{...}}}})', field=path)


def _key(key: object, path: str) -> str:
    if not isinstance(key, str):
        raise InvalidInput(f"{path or 'the value'}: key {key!r} is not a string", field=path or None)
    return key


# -- type hints --------------------------------------------------------------------------------------


@functools.cache
def _tagged_members(members: tuple[Any, ...]) -> dict[str, type]:
    if not all(isinstance(m, type) and dataclasses.is_dataclass(m) and not hasattr(m, "wire_encode")
               for m in members):
        raise TypeError(f"a union of {', '.join(map(_name, members))}: only records (dataclasses) are told apart, "
                        "by their class name")
    return {m.__name__: m for m in members}


def _tagged(members: list[Any]) -> dict[str, type]:
    return _tagged_members(tuple(members))


def _name(tp: object) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp)


def _kind(data: object) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "a boolean"
    if isinstance(data, (int, float)):
        return "a number"
    if isinstance(data, str):
        return "a string"
    if isinstance(data, list):
        return "an array"
    if isinstance(data, dict):
        return "an object"
    return type(data).__name__


def _show(data: object) -> str:
    text = repr(data) if isinstance(data, (str, int, float)) and not isinstance(data, bool) else _kind(data)
    return text if len(text) <= 40 else text[:37] + "..."


def _invalid(path: str, expected: str, data: object) -> InvalidInput:
    return InvalidInput(f"{path or 'the value'}: expected {expected}, got {_kind(data)}", field=path or None)
