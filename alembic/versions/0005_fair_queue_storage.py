"""fair queue indexes, dataset summaries, storage accounting

- ``run``: indexes for the fair queue (each tenant's oldest queued run, each
  tenant's latest start).
- ``dataset.stored_bytes``: what a dataset charges against its tenant's storage
  quota. Existing datasets are charged the length of their arrays plus the most
  their summary's label records can take (16 bytes a sample for a one-column
  ``y``); computing the summary, the first time a run uses the dataset, sets the
  exact figure.
- ``dataset_summary``: what run creation checks a dataset against. Existing
  datasets get theirs lazily, outside any write transaction, the first time a run
  uses them (this migration runs no application code and decodes no dataset).
- ``run_storage``: each run's reservation and, once finished, its stored bytes.
  Existing runs get a row with neither; the storage service fills in their
  stored bytes (finished runs) or reservation (others) the next time their
  tenant's usage is computed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECORDS_BOUND = 'CASE WHEN n_targets = 1 THEN 16 * CAST(n_samples AS BIGINT) + 256 ELSE 0 END'


def upgrade() -> None:
    op.create_index('ix_run_status_owner_id', 'run', ['status', 'owner', 'id'], unique=False)
    op.create_index('ix_run_owner_started_at', 'run', ['owner', 'started_at'], unique=False)

    op.add_column(
        'dataset',
        sa.Column('stored_bytes', sa.BigInteger(), nullable=False, server_default='0'),
    )
    op.execute(
        'UPDATE dataset SET stored_bytes = COALESCE((SELECT length(data) FROM dataset_arrays '
        f'WHERE dataset_arrays.dataset_id = dataset.id), 0) + {RECORDS_BOUND}'
    )
    op.create_table(
        'dataset_summary',
        sa.Column('dataset_id', sa.String(length=64), nullable=False),
        sa.Column('summary', sa.JSON(), nullable=False),
        sa.Column('label_records', sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(['dataset_id'], ['dataset.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('dataset_id'),
    )

    op.create_table(
        'run_storage',
        sa.Column('run_id', sa.String(length=64), nullable=False),
        sa.Column('owner', sa.String(length=64), nullable=False),
        sa.Column('reserved_bytes', sa.BigInteger(), nullable=True),
        sa.Column('stored_bytes', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['run_id'], ['run.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id'),
    )
    op.create_index(
        'ix_run_storage_owner_bytes',
        'run_storage',
        ['owner', 'stored_bytes', 'reserved_bytes'],
        unique=False,
    )
    op.execute(
        'INSERT INTO run_storage (run_id, owner, reserved_bytes, stored_bytes) '
        'SELECT id, owner, NULL, NULL FROM run'
    )


def downgrade() -> None:
    op.drop_index('ix_run_storage_owner_bytes', table_name='run_storage')
    op.drop_table('run_storage')
    op.drop_table('dataset_summary')
    op.drop_column('dataset', 'stored_bytes')  # native DROP COLUMN (SQLite >= 3.35)
    op.drop_index('ix_run_owner_started_at', table_name='run')
    op.drop_index('ix_run_status_owner_id', table_name='run')
