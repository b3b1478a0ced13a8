"""pause_requested on runs (POST /v1/runs/{id}/pause of a running run)

The new status value ``paused`` needs no schema change (status is a string).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 14:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'run',
        sa.Column('pause_requested', sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table('run') as batch:
        batch.drop_column('pause_requested')
