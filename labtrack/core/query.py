"""Parsing of ``order_by`` terms (and, later, the filter language) into plain values.

An order term is ``<kind>.<key>[.<aggregate>] [asc|desc]``: kind is ``metrics``, ``params``, ``tags`` or
``attributes`` (a bare name such as ``start_time`` means an attribute); for metrics, a trailing
``.last`` (default), ``.min``, ``.max`` or ``.count`` picks the summary value. A key that itself contains
dots or spaces is written in backticks: ``metrics.`val.min` desc``.
"""

from __future__ import annotations

from dataclasses import dataclass

from labtrack.core.errors import InvalidInput
from labtrack.core.validation import MAX_KEY_LENGTH

__all__ = ["AGGREGATES", "KINDS", "OrderTerm", "parse_order_by"]

KINDS = ("metrics", "params", "tags", "attributes")
AGGREGATES = ("last", "min", "max", "count")


@dataclass(frozen=True)
class OrderTerm:
    kind: str
    key: str
    descending: bool = False
    aggregate: str = "last"


def _parse_one(text: str) -> OrderTerm:
    original = text
    text = text.strip()
    descending = False
    lowered = text.lower()
    for suffix, desc in ((" desc", True), (" asc", False)):
        if lowered.endswith(suffix):
            text, descending = text[: -len(suffix)].rstrip(), desc
            break
    if not text:
        raise InvalidInput(f"order_by term {original!r} is empty", field="order_by")
    kind, dot, rest = text.partition(".")
    if not dot or kind not in KINDS:
        if "`" in text or " " in text:
            raise InvalidInput(
                f"order_by term {original!r}: write <kind>.<key> [asc|desc] with kind one of {', '.join(KINDS)}",
                field="order_by",
            )
        return OrderTerm("attributes", text, descending)
    aggregate = "last"
    if rest.startswith("`"):
        end = rest.find("`", 1)
        if end == -1:
            raise InvalidInput(f"order_by term {original!r}: unclosed backtick", field="order_by")
        key, tail = rest[1:end], rest[end + 1 :]
        if tail:
            if not tail.startswith(".") or tail[1:] not in AGGREGATES:
                raise InvalidInput(
                    f"order_by term {original!r}: after the key only .{', .'.join(AGGREGATES)} may follow",
                    field="order_by",
                )
            aggregate = tail[1:]
    else:
        key = rest
        if any(c.isspace() for c in key):
            word = key.split()[-1]
            raise InvalidInput(
                f"order_by term {original!r}: {word!r} is not a direction; write <kind>.<key> [asc|desc] (a key "
                "with spaces goes in backticks: metrics.`val acc` desc)", field="order_by",
            )
        head, dot, last = rest.rpartition(".")
        if kind == "metrics" and dot and last in AGGREGATES:
            key, aggregate = head, last
    if not key:
        raise InvalidInput(f"order_by term {original!r} names no key", field="order_by")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"order_by term {original[:40]!r}...: the key is {len(key)} characters; keys have at "
                           f"most {MAX_KEY_LENGTH}", field="order_by")
    if aggregate != "last" and kind != "metrics":
        raise InvalidInput(f"order_by term {original!r}: aggregates apply to metrics only", field="order_by")
    return OrderTerm(kind, key, descending, aggregate)


def parse_order_by(terms: str | list[str] | tuple[str, ...] | None) -> list[OrderTerm]:
    if terms is None:
        return []
    if isinstance(terms, str):
        terms = [terms]
    return [_parse_one(t) for t in terms]
