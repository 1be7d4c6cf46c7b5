"""tokens: the tracking server's API tokens, stored as hashes

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'tokens',
        sa.Column('id', sa.String(length=16), nullable=False),
        sa.Column('name', sa.String(length=250), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('experiments', sa.Text(), nullable=True),
        sa.Column('created_time', sa.Float(), nullable=False),
        sa.Column('expires_time', sa.Float(), nullable=True),
        sa.Column('revoked_time', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_tokens')),
    )


def downgrade() -> None:
    op.drop_table('tokens')
