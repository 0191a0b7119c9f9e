"""The error of a batch that raised, on its action and its requests (status `failed`).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for name in ("actions", "requests"):
        with op.batch_alter_table(name) as table:
            table.add_column(sa.Column("error", sa.String(500)))


def downgrade() -> None:
    for name in ("requests", "actions"):
        with op.batch_alter_table(name) as table:
            table.drop_column("error")
