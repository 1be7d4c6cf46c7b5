"""deletion times: a run or experiment can be deleted (hidden from searches and listings, restorable) before
``labtrack gc`` removes it for good

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('experiments', sa.Column('deleted_time', sa.Float(), nullable=True))
    op.add_column('runs', sa.Column('deleted_time', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs') as batch:
        batch.drop_column('deleted_time')
    with op.batch_alter_table('experiments') as batch:
        batch.drop_column('deleted_time')
