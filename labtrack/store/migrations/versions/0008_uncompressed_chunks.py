"""uncompressed chunks: PostgreSQL stores metric chunks' packed arrays without compressing them (they barely
compress, and compressing them was ingestion's largest CPU cost); new rows only

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

from labtrack.store.schema import POSTGRES_STORAGE

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # SQLite: nothing to do
        for statement in POSTGRES_STORAGE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_STORAGE:
            op.execute(statement.replace("EXTERNAL", "EXTENDED"))
