"""tenant owner on networks, datasets and runs

Rows created before tenants belong to the default tenant (the server default),
which is the tenant of every request when no API keys are configured.
Checkpoints, history and arrays belong to their run/network/dataset.

The columns are added in place (ALTER TABLE ADD COLUMN): a batch table
rebuild on SQLite would drop and recreate ``network``, and with foreign keys on
that drop cascades to the runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('network', 'dataset', 'run')


def upgrade() -> None:
    for table in TABLES:
        op.add_column(
            table,
            sa.Column('owner', sa.String(length=64), nullable=False, server_default='default'),
        )
        op.create_index(f'ix_{table}_owner_id', table, ['owner', 'id'], unique=False)
    op.create_index('ix_run_owner_status', 'run', ['owner', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_run_owner_status', table_name='run')
    for table in reversed(TABLES):
        op.drop_index(f'ix_{table}_owner_id', table_name=table)
        op.drop_column(table, 'owner')  # native DROP COLUMN (SQLite >= 3.35), no rebuild
