"""chunk checksums: every metric chunk carries the crc32 of its arrays, so damaged points raise an error
naming the run and key instead of being returned as data

Chunks written before this revision keep a NULL checksum and are read unchecked (``labtrack db check``
counts them): computing one now would vouch for bytes nobody checked.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('metric_chunks', sa.Column('crc', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('metric_chunks') as batch:
        batch.drop_column('crc')
