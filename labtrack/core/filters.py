"""The filter language of ``search_runs(filter=...)`` and ``labtrack runs --filter``: parsed to an AST.

    metrics.acc > 0.9 and (params.lr = 0.01 or params.lr = 0.1) and tags.team = 'cv'
    metrics.loss.min < 0.2            attributes.status = 'FINISHED'     start_time > '2026-11-01'
    env.gpu.name LIKE '%A100%'        env.packages.torch >= '2.1'        params.opt IN ('adam', 'sgd')
    tags.note IS NULL                 not (metrics.acc <= 0.5)           params.`batch.size` = 32

Fields: ``metrics.<key>[.last|.min|.max|.count]`` (last by default), ``params.<key>``, ``tags.<key>``,
``attributes.<name>`` (or the bare name: id, name, status, experiment, start_time, end_time, run_key,
env_fingerprint), ``env.<fact>``. A key containing dots or spaces goes in backticks. Operators: ``=``
``!=`` ``<>`` ``<`` ``<=`` ``>`` ``>=``, ``[NOT] IN (...)``, ``[NOT] LIKE``, ``[NOT] ILIKE``,
``IS [NOT] NULL``; ``and``, ``or``, ``not`` and parentheses (keywords in any case). Values: numbers,
strings in single or double quotes (a quote doubled, or backslash-escaped, stands for itself, and so
does a doubled backslash; a backslash before anything else is kept), ``true``, ``false``. In a LIKE
pattern ``%`` and ``_`` are wildcards, and a backslash makes them (or itself) literal: ``'100\\%'``.
A syntax error points at its column with a caret.

This module is pure: the store compiles the AST into one parameterised SQL query, so values never
become SQL text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from labtrack.core.errors import InvalidInput

__all__ = [
    "ATTRIBUTES",
    "FIELD_KINDS",
    "And",
    "Compare",
    "Field",
    "InList",
    "IsNull",
    "Like",
    "Node",
    "Not",
    "Or",
    "field_text",
    "format_field",
    "parse_field",
    "parse_filter",
]

ATTRIBUTES = ("id", "name", "status", "experiment", "start_time", "end_time", "run_key", "env_fingerprint")
_AGGREGATES = ("last", "min", "max", "count")
_KEYWORDS = {"and", "or", "not", "in", "like", "ilike", "is", "null", "true", "false"}


@dataclass(frozen=True)
class Field:
    kind: str  # metrics | params | tags | attributes | env
    key: str
    aggregate: str = "last"  # metrics only

    def __str__(self) -> str:
        suffix = f".{self.aggregate}" if self.kind == "metrics" and self.aggregate != "last" else ""
        return f"{self.kind}.{self.key}{suffix}"


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str  # = != < <= > >=
    value: Any


@dataclass(frozen=True)
class InList:
    field: Field
    values: tuple[Any, ...]
    negated: bool = False


@dataclass(frozen=True)
class Like:
    field: Field
    pattern: str
    case_insensitive: bool = False
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    field: Field
    negated: bool = False


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Compare | InList | Like | IsNull | And | Or | Not


@dataclass(frozen=True)
class _Token:
    kind: str  # name | string | number | op | lparen | rparen | comma | dot | end
    text: str
    value: Any
    column: int  # 1-based


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?![\w.])")


def _value_position(tokens: list[_Token]) -> bool:
    """A sign starts a number only where a value may stand: after an operator, '(' or ','."""
    return bool(tokens) and tokens[-1].kind in ("op", "lparen", "comma")


class _Syntax(Exception):
    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


def _error(source: str, message: str, column: int, field: str = "filter", what: str = "filter") -> InvalidInput:
    caret = " " * (column - 1) + "^"
    return InvalidInput(f"invalid {what} at column {column}: {message}\n  {source}\n  {caret}", field=field,
                        column=column)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        column = i + 1
        if c.isspace():
            i += 1
        elif c in "'\"":
            quote, i, chars = c, i + 1, []
            while True:
                if i >= n:
                    raise _Syntax("unterminated string", column)
                ch = text[i]
                if ch == "\\" and i + 1 < n and text[i + 1] in ("'", '"', "\\"):
                    chars.append(text[i + 1])  # an escaped quote or backslash; any other \ stays (LIKE uses it)
                    i += 2
                elif ch == quote and i + 1 < n and text[i + 1] == quote:
                    chars.append(quote)
                    i += 2
                elif ch == quote:
                    i += 1
                    break
                else:
                    chars.append(ch)
                    i += 1
            literal = "".join(chars)
            if "\x00" in literal:
                raise _Syntax("a NUL character cannot be matched", column)
            tokens.append(_Token("string", text[column - 1 : i], literal, column))
        elif c == "`":
            end = text.find("`", i + 1)
            if end == -1:
                raise _Syntax("unterminated backtick", column)
            if end == i + 1:
                raise _Syntax("empty backtick name", column)
            tokens.append(_Token("quoted", text[i : end + 1], text[i + 1 : end], column))
            i = end + 1
        elif (match := _NUMBER.match(text, i)) and (c not in "+-" or _value_position(tokens)):
            raw = match.group(0)
            value: Any = float(raw) if any(ch in raw for ch in ".eE") else int(raw)
            if type(value) is int and not -(2**63) <= value < 2**63:
                value = float(value)  # beyond 64 bits: compared as the number it is, on every backend
            tokens.append(_Token("number", raw, value, column))
            i = match.end()
        elif c.isalpha() or c == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] in "_-/:"):
                j += 1
            tokens.append(_Token("name", text[i:j], text[i:j], column))
            i = j
        elif text.startswith(("<=", ">=", "!=", "<>", "=="), i):
            op = text[i : i + 2]
            tokens.append(_Token("op", op, "=" if op == "==" else op, column))
            i += 2
        elif c in "=<>":
            tokens.append(_Token("op", c, c, column))
            i += 1
        elif c in "(),.":
            kind = {"(": "lparen", ")": "rparen", ",": "comma", ".": "dot"}[c]
            tokens.append(_Token(kind, c, c, column))
            i += 1
        else:
            raise _Syntax(f"unexpected character {c!r}", column)
    tokens.append(_Token("end", "", None, n + 1))
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.pos]

    def _word(self, *words: str) -> bool:
        t = self.token
        return t.kind == "name" and t.text.lower() in words

    def _take(self) -> _Token:
        t = self.token
        self.pos += 1
        return t

    def _expect(self, kind: str, what: str) -> _Token:
        if self.token.kind != kind:
            found = self.token.text or "the end"
            raise _Syntax(f"expected {what}, found {found!r}" if self.token.kind != "end" else f"expected {what}",
                          self.token.column)
        return self._take()

    def parse(self) -> Node:
        if self.token.kind == "end":
            raise _Syntax("empty filter", 1)
        node = self._or()
        if self.token.kind != "end":
            raise _Syntax(f"expected 'and', 'or' or the end, found {self.token.text!r}", self.token.column)
        return node

    def _or(self) -> Node:
        items = [self._and()]
        while self._word("or"):
            self._take()
            items.append(self._and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def _and(self) -> Node:
        items = [self._not()]
        while self._word("and"):
            self._take()
            items.append(self._not())
        return items[0] if len(items) == 1 else And(tuple(items))

    def _not(self) -> Node:
        if self._word("not"):
            self._take()
            return Not(self._not())
        if self.token.kind == "lparen":
            self._take()
            node = self._or()
            self._expect("rparen", "')'")
            return node
        return self._comparison()

    def _field(self) -> tuple[Field, int]:
        start = self.token
        if start.kind not in ("name", "quoted") or (start.kind == "name" and start.text.lower() in _KEYWORDS):
            raise _Syntax("expected a field such as metrics.acc, params.lr or tags.team", start.column)
        parts = [(self._take(), start.column)]
        while self.token.kind == "dot":
            self._take()
            if self.token.kind not in ("name", "quoted", "number"):
                raise _Syntax("expected a name after '.'", self.token.column)
            parts.append((self._take(), self.token.column))
        names = [t.value if t.kind == "quoted" else t.text for t, _ in parts]
        quoted = [t.kind == "quoted" for t, _ in parts]
        return _make_field(names, quoted, start.column), start.column

    def _value(self) -> Any:
        t = self.token
        if t.kind in ("string", "number"):
            self._take()
            return t.value
        if self._word("true", "false"):
            self._take()
            return t.text.lower() == "true"
        raise _Syntax("expected a value: a number, a 'quoted string', true or false", t.column)

    def _comparison(self) -> Node:
        field, _ = self._field()
        t = self.token
        if t.kind == "op":
            self._take()
            if self._word("null"):
                raise _Syntax("compare with NULL using IS NULL or IS NOT NULL", self.token.column)
            return Compare(field, "!=" if t.value == "<>" else t.value, self._value())
        negated = False
        if self._word("is"):
            self._take()
            if self._word("not"):
                self._take()
                negated = True
            if not self._word("null"):
                raise _Syntax("expected NULL after IS", self.token.column)
            self._take()
            return IsNull(field, negated)
        if self._word("not"):
            self._take()
            negated = True
            if not self._word("in", "like", "ilike"):
                raise _Syntax("expected IN, LIKE or ILIKE after NOT", self.token.column)
        if self._word("in"):
            self._take()
            self._expect("lparen", "'(' after IN")
            values = [self._value()]
            while self.token.kind == "comma":
                self._take()
                values.append(self._value())
            self._expect("rparen", "')' closing the IN list")
            return InList(field, tuple(values), negated)
        if self._word("like", "ilike"):
            insensitive = self._take().text.lower() == "ilike"
            pattern = self.token
            if pattern.kind != "string":
                raise _Syntax("LIKE needs a 'quoted pattern' (% matches any text, _ one character)", pattern.column)
            self._take()
            return Like(field, pattern.value, insensitive, negated)
        found = t.text or "the end"
        raise _Syntax(f"expected an operator (= != < <= > >= IN LIKE ILIKE IS) after {field}, found {found!r}",
                      t.column)


FIELD_KINDS = ("metrics", "params", "tags", "attributes", "env")  # what a field name starts with


def _make_field(names: list[str], quoted: list[bool], column: int) -> Field:
    kind = names[0].lower() if not quoted[0] else names[0]
    rest = names[1:]
    if kind in ATTRIBUTES and not rest:
        return Field("attributes", kind)
    if kind not in FIELD_KINDS:
        raise _Syntax(
            f"unknown field {'.'.join(names)!r}: start with metrics., params., tags., attributes. or env.", column
        )
    if not rest:
        raise _Syntax(f"{kind} needs a key, e.g. {kind}.name", column)
    if kind == "attributes":
        if len(rest) != 1 or rest[0] not in ATTRIBUTES:
            raise _Syntax(f"unknown attribute {'.'.join(rest)!r}; choose from {', '.join(ATTRIBUTES)}", column)
        return Field("attributes", rest[0])
    if kind == "metrics" and len(rest) > 1 and not quoted[-1] and rest[-1] in _AGGREGATES:
        return Field("metrics", ".".join(rest[:-1]), rest[-1])
    return Field(kind, ".".join(rest))


def parse_filter(text: str) -> Node:
    """Parse a filter expression; raise ``InvalidInput`` pointing at the column of a syntax error."""
    if not isinstance(text, str):
        raise InvalidInput(f"filter must be a string, got {type(text).__name__}", field="filter")
    try:
        return _Parser(_tokenize(text)).parse()
    except _Syntax as exc:
        raise _error(text, str(exc), exc.column) from None


def parse_field(text: str, option: str = "columns") -> Field:
    """One field name, as in ``--columns`` and ``--group-by`` (``metrics.acc``, ``params.lr``); an error
    names the ``option`` it was given to."""
    try:
        parser = _Parser(_tokenize(text))
        field, _ = parser._field()
        if parser.token.kind != "end":
            raise _Syntax(f"unexpected {parser.token.text!r} after the field", parser.token.column)
        return field
    except _Syntax as exc:
        raise _error(text, str(exc), exc.column, field=option, what=f"field in --{option.replace('_', '-')}") from None


def format_field(field: Field) -> str:
    """A field as filter text that parses back to it: the key in backticks (it may hold dots, spaces or an
    aggregate's name). A key holding a backtick cannot be written in the language: ``InvalidInput``."""
    if "`" in field.key:
        raise InvalidInput(f"the key {field.key!r} holds a backtick, which a filter cannot quote", field="filter")
    if field.kind == "attributes":
        return f"attributes.{field.key}"
    suffix = f".{field.aggregate}" if field.kind == "metrics" and field.aggregate != "last" else ""
    return f"{field.kind}.`{field.key}`{suffix}"


def field_text(field: Field) -> str:
    """A field as people write it (``params.lr``, ``metrics.loss.min``), backticked only where it must be
    for the text to parse back to the same field (a key with spaces, quotes or an aggregate's name)."""
    plain = str(field)
    try:
        if parse_field(plain) == field:
            return plain
    except InvalidInput:
        pass
    return format_field(field)
