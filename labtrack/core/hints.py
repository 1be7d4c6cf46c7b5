"""What the wire format reads from a record's class: its fields with their resolved type hints, and the
read-only properties it names to be written for readers (``wire_derived``). Shared by the careful path
(``core.wire``) and the fast one (``core.wirefast``)."""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, cast, get_type_hints

__all__ = ["derived", "record_fields"]


@functools.cache
def record_fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, resolved type hint, required) of each field a record's constructor takes, in order."""
    try:
        module = sys.modules.get(cls.__module__)
        lazy = getattr(module, "wire_types", None)  # names a module imports only on demand (see core.model)
        hints = get_type_hints(cls, localns=lazy() if callable(lazy) else None)
    except NameError as exc:
        raise TypeError(f"the type hints of {cls.__qualname__} name {exc.name!r}, which its module imports only "
                        "for type checking: import it at run time so that records can be decoded") from exc
    return tuple(
        (f.name, hints[f.name], f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls)
        if f.init
    )


def derived(cls: type) -> tuple[str, ...]:
    return cast("tuple[str, ...]", getattr(cls, "wire_derived", ()))
