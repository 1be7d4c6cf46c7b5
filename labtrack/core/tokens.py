"""API tokens of the tracking server: minted, parsed and checked here; stored (as hashes only) by the store.

A token reads ``lt_<id>_<secret>``: the ``lt_`` prefix lets secret scanners find one that leaked, the id
(10 characters) names it in ``labtrack token list`` and finds its row, and the secret (43 characters, 256
random bits) is never stored — only the sha256 of the whole token is, compared in constant time. A token
is shown once, when it is created.

Roles grow: a reader reads, a writer also records runs, an admin also manages tokens and deletes. A token
may be limited to some experiments.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from labtrack.core.errors import InvalidInput

__all__ = ["PREFIX", "Role", "TokenInfo", "check_experiments", "check_role", "hash_token", "mint_token", "token_id",
           "token_matches"]

PREFIX = "lt_"
_TOKEN = re.compile(r"lt_([a-z0-9]{10})_([A-Za-z0-9_-]{43})")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class Role(enum.StrEnum):
    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"

    def __str__(self) -> str:
        return self.value

    def allows(self, needed: Role) -> bool:
        order = (Role.READER, Role.WRITER, Role.ADMIN)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class TokenInfo:
    """A token as the store keeps it and ``labtrack token list`` shows it: never its secret."""

    id: str
    name: str
    role: Role
    created_time: float
    experiments: tuple[str, ...] | None = None  # None: every experiment
    expires_time: float | None = None
    revoked_time: float | None = None

    def usable(self, now: float) -> bool:
        return self.revoked_time is None and (self.expires_time is None or now < self.expires_time)


def mint_token() -> tuple[str, str]:
    """A new token and its id."""
    token_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))
    return f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}", token_id


def token_id(token: str) -> str:
    """The id of a well-formed token; InvalidInput for anything else (the message never repeats it)."""
    found = _TOKEN.fullmatch(token.strip()) if isinstance(token, str) else None
    if found is None:
        raise InvalidInput("not a labtrack token (they read lt_<id>_<secret>)", field="token")
    return found.group(1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.strip().encode("ascii")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)


def check_role(role: object) -> Role:
    try:
        return Role(str(role).lower())
    except ValueError:
        raise InvalidInput(f"role: choose reader, writer or admin, got {role!r}", field="role") from None


def check_experiments(experiments: Sequence[str] | None) -> tuple[str, ...] | None:
    if experiments is None:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in experiments if n.strip()))
    if not names:
        raise InvalidInput("experiments: name at least one experiment, or leave it out for all", field="experiments")
    return names
