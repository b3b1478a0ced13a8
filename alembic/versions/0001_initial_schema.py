"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 12:49:35.644063
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('dataset',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('n_samples', sa.Integer(), nullable=False),
    sa.Column('n_features', sa.Integer(), nullable=False),
    sa.Column('n_targets', sa.Integer(), nullable=False),
    sa.Column('target_type', sa.String(length=16), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('network',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('input_size', sa.Integer(), nullable=False),
    sa.Column('output_size', sa.Integer(), nullable=False),
    sa.Column('n_parameters', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('dataset_arrays',
    sa.Column('dataset_id', sa.String(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['dataset.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('dataset_id')
    )
    op.create_table('network_arrays',
    sa.Column('network_id', sa.String(length=64), nullable=False),
    sa.Column('weights', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['network_id'], ['network.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('network_id')
    )
    op.create_table('run',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('network_id', sa.String(length=64), nullable=False),
    sa.Column('dataset_id', sa.String(length=64), nullable=True),
    sa.Column('validation_dataset_id', sa.String(length=64), nullable=True),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('epochs', sa.Integer(), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('loss', sa.Float(), nullable=True),
    sa.Column('val_loss', sa.Float(), nullable=True),
    sa.Column('best_loss', sa.Float(), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('stop_reason', sa.String(length=32), nullable=True),
    sa.Column('error', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('lease_owner', sa.String(length=128), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['dataset.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['network_id'], ['network.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['validation_dataset_id'], ['dataset.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_run_network_id'), ['network_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_run_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_run_validation_dataset_id'), ['validation_dataset_id'], unique=False)

    op.create_table('checkpoint',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('loss', sa.Float(), nullable=True),
    sa.Column('val_loss', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('checkpoint', schema=None) as batch_op:
        batch_op.create_index('ix_checkpoint_run_id_epoch', ['run_id', 'epoch'], unique=False)

    op.create_table('run_arrays',
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('init_weights', sa.LargeBinary(), nullable=True),
    sa.Column('final_weights', sa.LargeBinary(), nullable=True),
    sa.Column('final_epoch', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id')
    )
    op.create_table('run_history_chunk',
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('first_epoch', sa.Integer(), nullable=False),
    sa.Column('last_epoch', sa.Integer(), nullable=False),
    sa.Column('n_points', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'first_epoch')
    )
    op.create_table('checkpoint_state',
    sa.Column('checkpoint_id', sa.String(length=64), nullable=False),
    sa.Column('state', sa.LargeBinary(), nullable=False),
    sa.Column('weights', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['checkpoint_id'], ['checkpoint.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('checkpoint_id')
    )



def downgrade() -> None:

    op.drop_table('checkpoint_state')
    op.drop_table('run_history_chunk')
    op.drop_table('run_arrays')
    with op.batch_alter_table('checkpoint', schema=None) as batch_op:
        batch_op.drop_index('ix_checkpoint_run_id_epoch')

    op.drop_table('checkpoint')
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_validation_dataset_id'))
        batch_op.drop_index(batch_op.f('ix_run_status'))
        batch_op.drop_index(batch_op.f('ix_run_network_id'))
        batch_op.drop_index(batch_op.f('ix_run_dataset_id'))

    op.drop_table('run')
    op.drop_table('network_arrays')
    op.drop_table('dataset_arrays')
    op.drop_table('network')
    op.drop_table('dataset')

