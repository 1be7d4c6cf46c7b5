"""The wire format's fast path: an encoder and a decoder compiled once per type hint.

``core.wire`` walks a value and its type hint together, resolving the hint and naming the path of every
member as it goes, so that an error can say where it is. Most data is fine, and that bookkeeping then
costs five times the JSON itself (a search's 100 run records: ~7 ms each way). So ``wire`` first tries
these compiled functions, which follow the same rules without any path; whenever one of them meets
anything it does not expect, it raises, and ``wire`` does the work again its careful way — which either
gives the same result or raises the error that names the path. The fast path never decides what is
valid; it only ever gives up.
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import enum
import math
import types
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

from labtrack.core.hints import derived, record_fields

__all__ = ["Codec", "GiveUp", "decoder", "encoder"]

_NONE_TYPE = type(None)
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_FLOAT_TAG = "$float"
_DICT_TAG = "$dict"

Codec = Callable[[Any], Any]


class GiveUp(Exception):
    """Something the fast path does not handle: the careful path decides."""


# -- decoding ----------------------------------------------------------------------------------------


def decoder(tp: Any) -> Codec | None:
    """A function decoding JSON data into ``tp`` on the fast path (it raises GiveUp, or anything, when the
    careful path must decide), or None for a type the fast path leaves to the careful one."""
    return _compiled(_decoders, _decoder, tp)


def encoder(tp: Any) -> Codec | None:
    """A function encoding a value of ``tp`` as JSON data on the fast path (it raises when the careful path
    must decide), or None for a type the fast path leaves to the careful one."""
    return _compiled(_encoders, _encoder, tp)


_decoders: dict[Any, Codec | None] = {}
_encoders: dict[Any, Codec | None] = {}


def _compiled(cache: dict[Any, Codec | None], build: Callable[[Any], Codec], tp: Any) -> Codec | None:
    try:
        return cache[tp]
    except KeyError:
        pass
    except TypeError:  # an unhashable hint
        return None
    cache[tp] = None  # while it is built: a type that contains itself (the filter AST) is left to the careful path
    try:
        made: Codec | None = build(tp)
    except GiveUp:
        made = None
    cache[tp] = made
    return made


def _need(codec: Codec | None) -> Codec:
    """A member's codec while compiling: a member the fast path leaves out leaves out the whole type."""
    if codec is None:
        raise GiveUp
    return codec


def _decoder(tp: Any) -> Codec:
    if tp is Any or tp is object:
        return _free_in
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return _union_in(get_args(tp))
    if origin is Literal:
        allowed = {(type(a), a) for a in get_args(tp)}

        def literal(data: Any) -> Any:
            if (type(data), data) in allowed:
                return data
            raise GiveUp

        return literal
    if origin is not None:
        return _container_in(tp, origin)
    if tp is float:
        return _float_in
    if tp in (int, str, bool):
        return _exact(tp)
    if tp is _NONE_TYPE:
        return _none
    if isinstance(tp, type):
        decode = getattr(tp, "wire_decode", None)
        if decode is not None:
            return lambda data: decode(data, "")
        if issubclass(tp, enum.Enum):
            members = {(type(m.value), m.value): m for m in tp}

            def member(data: Any) -> Any:
                if type(data) is bool:
                    raise GiveUp
                return members[(type(data), data)]

            return member
        if dataclasses.is_dataclass(tp) and not issubclass(tp, BaseException):
            return _record_in(tp, tagged=False)
    raise GiveUp


def _float_in(data: Any) -> float:
    kind = type(data)
    if kind is float:
        return data  # type: ignore[no-any-return]
    if kind is int:
        return float(data)
    if kind is str and data in _NON_FINITE:
        return _NON_FINITE[data]
    raise GiveUp


def _exact(kind: type) -> Codec:
    """An int, str or bool, the same in JSON data and in Python (both directions): of exactly that type."""
    def exact(data: Any) -> Any:
        if type(data) is kind:
            return data
        raise GiveUp

    return exact


def _none(data: Any) -> None:
    if data is not None:
        raise GiveUp


def _free_in(data: Any) -> Any:
    kind = type(data)
    if data is None or kind is bool or kind is int or kind is float or kind is str:
        return data
    if kind is list:
        return [_free_in(member) for member in data]
    if kind is dict:
        if len(data) == 1:
            key = next(iter(data))
            if key.startswith("$"):
                member = data[key]
                if key == _FLOAT_TAG and type(member) is str and member in _NON_FINITE:
                    return _NON_FINITE[member]
                if key == _DICT_TAG and type(member) is dict:
                    return {k: _free_in(v) for k, v in member.items()}
                raise GiveUp
        return {k: _free_in(v) for k, v in data.items()}
    raise GiveUp


def _union_in(args: tuple[Any, ...]) -> Codec:
    optional = _NONE_TYPE in args
    members = [a for a in args if a is not _NONE_TYPE]
    if len(members) == 1:
        inner = _need(decoder(members[0]))

        def one(data: Any) -> Any:
            return None if data is None and optional else inner(data)

        return one
    if not all(isinstance(m, type) and dataclasses.is_dataclass(m) and not hasattr(m, "wire_encode") for m in members):
        raise GiveUp
    tagged = {m.__name__: _record_in(m, tagged=True) for m in members}

    def union(data: Any) -> Any:
        if data is None and optional:
            return None
        if type(data) is not dict:
            raise GiveUp
        return tagged[data["type"]](data)

    return union


def _record_in(cls: type, *, tagged: bool) -> Codec:
    fields = [(name, _need(decoder(hint)), needed) for name, hint, needed in record_fields(cls)]
    required = frozenset(name for name, _, needed in fields if needed)
    allowed = frozenset([*(name for name, _, _ in fields), *derived(cls), *(["type"] if tagged else [])])

    def record(data: Any) -> Any:
        if type(data) is not dict or not required.issubset(data) or not allowed.issuperset(data):
            raise GiveUp
        return cls(**{name: decode(data[name]) for name, decode, _ in fields if name in data})

    return record


def _container_in(tp: Any, origin: Any) -> Codec:
    args = get_args(tp)
    if origin in (dict, abc.Mapping, abc.MutableMapping):
        item = _need(decoder(args[1] if args else Any))

        def mapping(data: Any) -> Any:
            if type(data) is not dict:
                raise GiveUp
            return {key: item(member) for key, member in data.items()}

        return mapping
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        items = [_need(decoder(a)) for a in args]

        def fixed(data: Any) -> Any:
            if type(data) is not list or len(data) != len(items):
                raise GiveUp
            return tuple(decode(member) for decode, member in zip(items, data))

        return fixed
    each = _need(decoder(args[0] if args else Any))
    if origin not in _MAKERS:
        raise GiveUp
    make = _MAKERS[origin]

    def sequence(data: Any) -> Any:
        if type(data) is not list:
            raise GiveUp
        items = [each(member) for member in data]
        return items if make is None else make(items)

    return sequence


# What a decoded array becomes, by the hint's origin (None: the list itself).
_MAKERS: dict[Any, Callable[[list[Any]], Any] | None] = {
    list: None, abc.MutableSequence: None, tuple: tuple, abc.Sequence: tuple, set: set, abc.MutableSet: set,
    frozenset: frozenset, abc.Set: frozenset,
}


# -- encoding ----------------------------------------------------------------------------------------


def _encoder(tp: Any) -> Codec:
    if tp is Any or tp is object:
        return _free_out
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return _union_out(get_args(tp))
    if origin is Literal:
        return _free_out
    if origin is not None:
        return _container_out(tp, origin)
    if tp is float:
        return _float_out
    if tp in (int, str, bool):
        return _exact(tp)
    if tp is _NONE_TYPE:
        return _none
    if isinstance(tp, type):
        if hasattr(tp, "wire_encode"):
            kind: type = tp

            def own(value: Any) -> Any:
                if isinstance(value, kind):
                    return getattr(value, "wire_encode")()  # noqa: B009 - the class says it has one
                raise GiveUp

            return own
        if issubclass(tp, enum.Enum):
            def member(value: Any) -> Any:
                if type(value) is tp:
                    return _free_out(value.value)
                raise GiveUp

            return member
        if dataclasses.is_dataclass(tp) and not issubclass(tp, BaseException):
            return _record_out(tp)
    raise GiveUp


def _float_out(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        if value - value == 0.0:  # finite
            return value
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if kind is int:
        return float(value)
    raise GiveUp


def _free_out(value: Any) -> Any:
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return value
    if kind is float:
        if value - value == 0.0:
            return value
        raise GiveUp  # tagged: the careful path writes it
    if kind is dict:
        out = {}
        for key, member in value.items():
            if type(key) is not str:
                raise GiveUp
            out[key] = _free_out(member)
        if len(out) == 1 and next(iter(out)).startswith("$"):
            raise GiveUp
        return out
    if kind is list or kind is tuple:
        return [_free_out(member) for member in value]
    raise GiveUp


def _union_out(args: tuple[Any, ...]) -> Codec:
    optional = _NONE_TYPE in args
    members = [a for a in args if a is not _NONE_TYPE]
    if len(members) == 1:
        inner = _need(encoder(members[0]))

        def one(value: Any) -> Any:
            return None if value is None and optional else inner(value)

        return one
    raise GiveUp  # tagged unions (the filter AST): the careful path


def _record_out(cls: type) -> Codec:
    fields = [(name, _need(encoder(hint))) for name, hint, _ in record_fields(cls)]
    names = derived(cls)

    def record(value: Any) -> Any:
        if type(value) is not cls:
            raise GiveUp
        out = {name: encode(getattr(value, name)) for name, encode in fields}
        for name in names:
            out[name] = _free_out(getattr(value, name))
        return out

    return record


def _container_out(tp: Any, origin: Any) -> Codec:
    args = get_args(tp)
    if origin in (dict, abc.Mapping, abc.MutableMapping):
        if args and args[0] is not str:
            raise GiveUp
        item = _need(encoder(args[1] if args else Any))

        def mapping(value: Any) -> Any:
            if not isinstance(value, abc.Mapping):
                raise GiveUp
            out = {}
            for key, member in value.items():
                if type(key) is not str:
                    raise GiveUp
                out[key] = item(member)
            return out

        return mapping
    if origin in (list, abc.Sequence, abc.MutableSequence) or (
            origin is tuple and (not args or (len(args) == 2 and args[1] is Ellipsis))):
        each = _need(encoder(args[0] if args else Any))

        def sequence(value: Any) -> Any:
            if type(value) is not list and type(value) is not tuple:
                raise GiveUp
            return [each(member) for member in value]

        return sequence
    raise GiveUp  # fixed tuples and sets: the careful path
