"""one pending request per run (run.requested), supervisors and their heartbeats

- ``run.requested`` (null, 'pause' or 'cancel') replaces the booleans
  ``cancel_requested`` and ``pause_requested``: only a running run has one, and
  a cancel wins over a pause, as it always did. Rows that the old race left
  queued or paused with a cancel asked (a resume then left them queued forever)
  are cancelled, as their owner asked; finished runs lose their stale flags.
- ``supervisor``: one row per ``backprop serve`` / ``backprop worker`` process
  that supervises workers, with a heartbeat in the database's clock;
  ``run.lease_supervisor`` names the lease holder's supervisor, so that the
  sweep counts an attempt only when a worker died while its supervisor lived.

Columns are added and dropped in place (ALTER TABLE; native DROP COLUMN on
SQLite >= 3.35): a batch rebuild of ``run`` on SQLite would drop the table, and
with foreign keys on that drop cascades to its checkpoints and history.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _run_table(*extra: sa.Column) -> sa.TableClause:
    return sa.table(
        'run',
        sa.column('status', sa.String()),
        sa.column('stop_reason', sa.String()),
        sa.column('finished_at', sa.DateTime()),
        sa.column('lease_owner', sa.String()),
        sa.column('lease_expires_at', sa.DateTime()),
        sa.column('requested', sa.String()),
        *extra,
    )


def upgrade() -> None:
    op.create_table(
        'supervisor',
        sa.Column('id', sa.String(length=128), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('beat_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_supervisor_expires_at', 'supervisor', ['expires_at'], unique=False)
    op.add_column('run', sa.Column('lease_supervisor', sa.String(length=128), nullable=True))
    op.add_column('run', sa.Column('requested', sa.String(length=16), nullable=True))

    cancel = sa.column('cancel_requested', sa.Boolean())
    pause = sa.column('pause_requested', sa.Boolean())
    run = _run_table(cancel, pause)
    running = run.c.status == 'running'
    op.execute(
        run.update().where(running, cancel.is_(sa.true())).values(requested='cancel')
    )
    op.execute(
        run.update()
        .where(running, pause.is_(sa.true()), cancel.is_(sa.false()))
        .values(requested='pause')
    )
    op.execute(
        run.update()
        .where(run.c.status.in_(('queued', 'paused')), cancel.is_(sa.true()))
        .values(
            status='cancelled',
            stop_reason='cancelled',
            finished_at=datetime.now(UTC).replace(tzinfo=None),
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    op.drop_column('run', 'pause_requested')
    op.drop_column('run', 'cancel_requested')


def downgrade() -> None:
    op.add_column(
        'run',
        sa.Column('cancel_requested', sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        'run',
        sa.Column('pause_requested', sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    cancel = sa.column('cancel_requested', sa.Boolean())
    pause = sa.column('pause_requested', sa.Boolean())
    run = _run_table(cancel, pause)
    op.execute(run.update().where(run.c.requested == 'cancel').values(cancel_requested=True))
    op.execute(run.update().where(run.c.requested == 'pause').values(pause_requested=True))
    op.drop_column('run', 'requested')
    op.drop_column('run', 'lease_supervisor')
    op.drop_index('ix_supervisor_expires_at', table_name='supervisor')
    op.drop_table('supervisor')
