"""planner statistics: PostgreSQL learns how params' and tags' keys and values go together, so that a
filtered search ordered by a metric walks that metric's index and stops at max_results

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

from labtrack.store.schema import PLANNER_STATISTICS, POSTGRES_STATISTICS

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # SQLite: nothing to do
        for statement in POSTGRES_STATISTICS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in PLANNER_STATISTICS:
            op.execute(f"DROP STATISTICS IF EXISTS {name}")
