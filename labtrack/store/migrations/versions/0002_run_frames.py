"""run frames: the compact per-run summary that loading many runs as columns reads; an index that
lists an experiment's runs newest first without reading the table

Revision ID: 0002
Revises: 0001

The frames of runs that ended before this revision are filled in by ``labtrack db upgrade`` after the
migration (``SqlStore.fill_frames``); until then such runs are read from their rows, only slower.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs') as batch:
        batch.add_column(sa.Column('frame_keys', sa.Text(), nullable=True))
        batch.add_column(sa.Column('frame_values', sa.Text(), nullable=True))
        batch.add_column(sa.Column('frame_numbers', sa.LargeBinary(), nullable=True))
    op.drop_index('ix_runs_experiment_id_start_time', table_name='runs')
    op.create_index('ix_runs_experiment_id_start_time_id', 'runs',
                    ['experiment_id', sa.text('start_time DESC'), 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_runs_experiment_id_start_time_id', table_name='runs')
    op.create_index('ix_runs_experiment_id_start_time', 'runs', ['experiment_id', 'start_time'], unique=False)
    with op.batch_alter_table('runs') as batch:
        batch.drop_column('frame_numbers')
        batch.drop_column('frame_values')
        batch.drop_column('frame_keys')
