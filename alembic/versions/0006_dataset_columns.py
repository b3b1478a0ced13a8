"""dataset column names, classes and transform; the transform a run was created with

- ``dataset.feature_names`` / ``target_names`` (JSON lists; null for datasets stored
  before: the API shows ``x0…``/``y0…``), ``dataset.classes`` (class names of a
  categorical target) and ``dataset.transform`` (:mod:`app.datasets.transforms`).
- ``run.transform``: copied from its dataset at creation, applied by predict.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("dataset", sa.Column("feature_names", sa.JSON(), nullable=True))
    op.add_column("dataset", sa.Column("target_names", sa.JSON(), nullable=True))
    op.add_column("dataset", sa.Column("classes", sa.JSON(), nullable=True))
    op.add_column("dataset", sa.Column("transform", sa.JSON(), nullable=True))
    op.add_column("run", sa.Column("transform", sa.JSON(), nullable=True))


def downgrade() -> None:
    # Native DROP COLUMN (SQLite >= 3.35): a batch rebuild would drop the tables and
    # cascade to the rows that reference them.
    op.drop_column("run", "transform")
    for column in ("transform", "classes", "target_names", "feature_names"):
        op.drop_column("dataset", column)
