"""The tracking server's tokens in the SQL store: rows of ``schema.tokens`` (hashes, never tokens)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.engine import Connection

from labtrack.core.errors import InvalidInput
from labtrack.core.tokens import Role, TokenInfo, hash_token, mint_token, token_id, token_matches
from labtrack.store import schema as db

__all__ = ["authenticate", "create_token", "list_tokens", "revoke_token"]


def _info(row: Any) -> TokenInfo:
    return TokenInfo(id=row.id, name=row.name, role=Role(row.role), created_time=row.created_time,
                     experiments=tuple(json.loads(row.experiments)) if row.experiments else None,
                     expires_time=row.expires_time, revoked_time=row.revoked_time)


def create_token(conn: Connection, name: str, role: Role, experiments: Sequence[str] | None,
                 expires_time: float | None, now: float) -> tuple[str, TokenInfo]:
    token, new_id = mint_token()
    conn.execute(db.tokens.insert().values(
        id=new_id, name=name, hash=hash_token(token), role=role.value,
        experiments=json.dumps(list(experiments)) if experiments is not None else None,
        created_time=now, expires_time=expires_time, revoked_time=None,
    ))
    return token, TokenInfo(new_id, name, role, now, tuple(experiments) if experiments is not None else None,
                            expires_time)


def list_tokens(conn: Connection) -> list[TokenInfo]:
    return [_info(row) for row in conn.execute(select(db.tokens).order_by(db.tokens.c.created_time))]


def revoke_token(conn: Connection, id_or_name: str, now: float) -> list[TokenInfo]:
    """Revoke the token with this id, or every live token with this name; returns them (revoked)."""
    t = db.tokens.c
    rows = list(conn.execute(select(db.tokens).where(or_(t.id == id_or_name, t.name == id_or_name),
                                                     t.revoked_time.is_(None))))
    if not rows:
        raise InvalidInput(f"no live token with the id or name {id_or_name!r} (`labtrack token list` shows them)",
                           field="token")
    conn.execute(db.tokens.update().where(t.id.in_([r.id for r in rows])).values(revoked_time=now))
    return [replace(_info(r), revoked_time=now) for r in rows]


def authenticate(conn: Connection, token: str, now: float) -> TokenInfo | None:
    """The token's record if it is known, matches its hash, and is neither expired nor revoked."""
    try:
        found_id = token_id(token)
    except InvalidInput:
        return None
    row = conn.execute(select(db.tokens).where(db.tokens.c.id == found_id)).first()
    if row is None or not token_matches(token, row.hash):
        return None
    info = _info(row)
    return info if info.usable(now) else None
