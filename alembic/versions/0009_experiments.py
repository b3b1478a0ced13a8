"""experiments: names, tags and metadata; sweep id and best epoch of runs

- ``network``, ``dataset``, ``run``: ``tags`` (JSON list, what responses show) and
  ``meta`` (the API's ``metadata`` object); ``run.name``.
- ``network_tag``, ``dataset_tag``, ``run_tag``: one row per (object, tag), indexed
  ``(owner, tag, object id)``: the list filters are semi-joins on that index, the same
  SQL on SQLite and PostgreSQL. Deleted with their object (foreign key cascade).
- ``run.sweep_id`` (reserved for sweeps; indexed with the owner) and ``run.best_epoch``.
  Existing rows get no tags, an empty object and nulls.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TAGGED = (('network', 'network_id'), ('dataset', 'dataset_id'), ('run', 'run_id'))


def upgrade() -> None:
    for table, _ in TAGGED:
        op.add_column(table, sa.Column('tags', sa.JSON(), nullable=False, server_default='[]'))
        op.add_column(table, sa.Column('meta', sa.JSON(), nullable=False, server_default='{}'))
    op.add_column('run', sa.Column('name', sa.String(length=200), nullable=True))
    op.add_column('run', sa.Column('sweep_id', sa.String(length=64), nullable=True))
    op.add_column('run', sa.Column('best_epoch', sa.Integer(), nullable=True))
    op.create_index('ix_run_owner_sweep_id', 'run', ['owner', 'sweep_id'], unique=False)
    for table, key in TAGGED:
        op.create_table(
            f'{table}_tag',
            sa.Column(key, sa.String(length=64), nullable=False),
            sa.Column('tag', sa.String(length=64), nullable=False),
            sa.Column('owner', sa.String(length=64), nullable=False),
            sa.ForeignKeyConstraint([key], [f'{table}.id'], ondelete='CASCADE'),
            sa.PrimaryKeyConstraint(key, 'tag'),
        )
        op.create_index(
            f'ix_{table}_tag_owner_tag', f'{table}_tag', ['owner', 'tag', key], unique=False
        )


def downgrade() -> None:
    for table, _ in TAGGED:
        op.drop_index(f'ix_{table}_tag_owner_tag', table_name=f'{table}_tag')
        op.drop_table(f'{table}_tag')
    op.drop_index('ix_run_owner_sweep_id', table_name='run')
    # Native DROP COLUMN (SQLite >= 3.35): a batch rebuild of network would cascade to runs.
    for column in ('best_epoch', 'sweep_id', 'name'):
        op.drop_column('run', column)
    for table, _ in TAGGED:
        op.drop_column(table, 'meta')
        op.drop_column(table, 'tags')
