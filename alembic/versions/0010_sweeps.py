"""sweeps: the sweep table and its tags, ASHA rung decisions, trial links and pause points

- ``sweep``: a sweep's validated request (``spec``), status, the parameters of every trial
  drawn so far (``planned``) and its best trial.
- ``sweep_tag``: one row per (sweep, tag), as for runs, networks and datasets.
- ``sweep_rung``: one row per (sweep, trial, rung): the objective there and the decision.
- ``run.sweep_trial`` (unique with ``sweep_id``: a trial is created once, also by two
  servers) and ``run.pause_at_epoch`` (the worker pauses there). Existing rows get nulls.
- ``run_notification.sweep_id`` (a sweep's webhook; ``run_id`` becomes nullable). The
  downgrade deletes sweep notifications first.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'sweep',
        sa.Column('id', sa.String(length=64), primary_key=True),
        sa.Column('owner', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=True),
        sa.Column(
            'network_id',
            sa.String(length=64),
            sa.ForeignKey('network.id', ondelete='CASCADE'),
            nullable=False,
        ),
        sa.Column(
            'dataset_id',
            sa.String(length=64),
            sa.ForeignKey('dataset.id', ondelete='CASCADE'),
            nullable=False,
        ),
        sa.Column('spec', sa.JSON(), nullable=False),
        sa.Column('planned', sa.JSON(), nullable=False),
        sa.Column('best_trial', sa.Integer(), nullable=True),
        sa.Column('trials_created', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.Column('tags', sa.JSON(), nullable=False, server_default='[]'),
        sa.Column('meta', sa.JSON(), nullable=False, server_default='{}'),
    )
    op.create_index('ix_sweep_owner_id', 'sweep', ['owner', 'id'])
    op.create_index('ix_sweep_status', 'sweep', ['status'])
    op.create_table(
        'sweep_tag',
        sa.Column('sweep_id', sa.String(length=64), nullable=False),
        sa.Column('tag', sa.String(length=64), nullable=False),
        sa.Column('owner', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['sweep_id'], ['sweep.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('sweep_id', 'tag'),
    )
    op.create_index('ix_sweep_tag_owner_tag', 'sweep_tag', ['owner', 'tag', 'sweep_id'])
    op.create_table(
        'sweep_rung',
        sa.Column(
            'sweep_id',
            sa.String(length=64),
            sa.ForeignKey('sweep.id', ondelete='CASCADE'),
            primary_key=True,
        ),
        sa.Column('trial', sa.Integer(), primary_key=True),
        sa.Column('rung', sa.Integer(), primary_key=True),
        sa.Column('epoch', sa.Integer(), nullable=False),
        sa.Column('value', sa.Float(), nullable=True),
        sa.Column('decision', sa.String(length=16), nullable=False),
        sa.Column('decided_at', sa.DateTime(), nullable=False),
    )
    op.add_column('run', sa.Column('sweep_trial', sa.Integer(), nullable=True))
    op.add_column('run', sa.Column('pause_at_epoch', sa.Integer(), nullable=True))
    op.create_index('ux_run_sweep_trial', 'run', ['sweep_id', 'sweep_trial'], unique=True)
    # run_notification is a leaf table: a batch rebuild (SQLite) loses nothing.
    with op.batch_alter_table('run_notification') as batch:
        batch.alter_column('run_id', existing_type=sa.String(length=64), nullable=True)
        batch.add_column(sa.Column('sweep_id', sa.String(length=64), nullable=True))
        batch.create_foreign_key(
            'fk_run_notification_sweep_id', 'sweep', ['sweep_id'], ['id'], ondelete='CASCADE'
        )
        batch.create_index('ix_run_notification_sweep_id', ['sweep_id'])


def downgrade() -> None:
    op.execute("DELETE FROM run_notification WHERE run_id IS NULL")
    with op.batch_alter_table('run_notification') as batch:
        batch.drop_index('ix_run_notification_sweep_id')
        batch.drop_constraint('fk_run_notification_sweep_id', type_='foreignkey')
        batch.drop_column('sweep_id')
        batch.alter_column('run_id', existing_type=sa.String(length=64), nullable=False)
    op.drop_index('ux_run_sweep_trial', table_name='run')
    # Native DROP COLUMN (SQLite >= 3.35): a batch rebuild of run would lose its indexes.
    op.drop_column('run', 'pause_at_epoch')
    op.drop_column('run', 'sweep_trial')
    op.drop_table('sweep_rung')
    op.drop_index('ix_sweep_tag_owner_tag', table_name='sweep_tag')
    op.drop_table('sweep_tag')
    op.drop_index('ix_sweep_status', table_name='sweep')
    op.drop_index('ix_sweep_owner_id', table_name='sweep')
    op.drop_table('sweep')
