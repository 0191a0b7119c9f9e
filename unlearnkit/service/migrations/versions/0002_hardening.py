"""Token scopes, who submitted a request, and when a version's files were purged.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tokens") as table:
        table.add_column(sa.Column("scope", sa.String(10)))
    with op.batch_alter_table("requests") as table:
        table.add_column(sa.Column("submitted_by", sa.String(200)))
    with op.batch_alter_table("model_versions") as table:
        table.add_column(sa.Column("purged", sa.String(40)))


def downgrade() -> None:
    for name, column in (("model_versions", "purged"), ("requests", "submitted_by"), ("tokens", "scope")):
        with op.batch_alter_table(name) as table:
            table.drop_column(column)
