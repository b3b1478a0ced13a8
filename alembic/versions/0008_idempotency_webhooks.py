"""idempotency keys, webhook secrets and run notifications (issue 13)

- ``idempotency_key``: each tenant's POST ``Idempotency-Key`` with the request's
  hash and, once answered, the response to replay (expired rows are swept).
- ``webhook_secret``: each tenant's signing secret for webhooks.
- ``run_notification``: the webhooks owed for runs' terminal statuses, with their
  delivery attempts (a run's ``notify_url`` lives in its ``config``).

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-02 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'idempotency_key',
        sa.Column('owner', sa.String(length=64), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('response_headers', sa.JSON(), nullable=True),
        sa.Column('response_body', sa.LargeBinary(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('locked_until', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('owner', 'key'),
    )
    op.create_index('ix_idempotency_key_expires_at', 'idempotency_key', ['expires_at'])
    op.create_table(
        'webhook_secret',
        sa.Column('owner', sa.String(length=64), nullable=False),
        sa.Column('secret', sa.String(length=128), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('owner'),
    )
    op.create_table(
        'run_notification',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('run_id', sa.String(length=64), nullable=False),
        sa.Column('owner', sa.String(length=64), nullable=False),
        sa.Column('event', sa.String(length=32), nullable=False),
        sa.Column('url', sa.String(length=2048), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('body', sa.LargeBinary(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('attempt_log', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
        sa.Column('delivered_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['run_id'], ['run.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_run_notification_run_id', 'run_notification', ['run_id'])
    op.create_index(
        'ix_run_notification_status_next', 'run_notification', ['status', 'next_attempt_at']
    )


def downgrade() -> None:
    op.drop_index('ix_run_notification_status_next', table_name='run_notification')
    op.drop_index('ix_run_notification_run_id', table_name='run_notification')
    op.drop_table('run_notification')
    op.drop_table('webhook_secret')
    op.drop_index('ix_idempotency_key_expires_at', table_name='idempotency_key')
    op.drop_table('idempotency_key')
