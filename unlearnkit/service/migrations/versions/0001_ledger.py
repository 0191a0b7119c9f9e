"""The ledger: model versions, subjects, requests, actions, tokens, state, audit log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIME = sa.String(40)


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("path", sa.String(400), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("method", sa.String(60)),
        sa.Column("config", sa.JSON),
        sa.Column("data", sa.String(400), nullable=False),
        sa.Column("data_fingerprint", sa.String(64), nullable=False),
        sa.Column("train_ids_path", sa.String(400), nullable=False),
        sa.Column("train_ids_sha256", sa.String(64), nullable=False),
        sa.Column("train_count", sa.Integer, nullable=False),
        sa.Column("excluded_subjects", sa.JSON, nullable=False),
        sa.Column("verdict", sa.String(10)),
        sa.Column("created", TIME, nullable=False),
    )
    op.create_table(
        "subjects",
        sa.Column("subject_id", sa.String(200), primary_key=True),
        sa.Column("sample_id", sa.Integer, primary_key=True),
    )
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("requests", sa.JSON, nullable=False),
        sa.Column("input_version", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("output_version", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("method", sa.String(60)),
        sa.Column("config", sa.JSON),
        sa.Column("started", TIME, nullable=False),
        sa.Column("finished", TIME),
        sa.Column("seconds", sa.Float),
        sa.Column("verdict", sa.JSON),
        sa.Column("report_path", sa.String(400)),
        sa.Column("report_sha256", sa.String(64)),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("subjects", sa.JSON, nullable=False),
        sa.Column("sample_ids", sa.JSON, nullable=False),
        sa.Column("received", TIME, nullable=False, index=True),
        sa.Column("deadline", TIME, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("actions.id")),
        sa.Column("served", TIME),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created", TIME, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    op.create_table(
        "state",
        sa.Column("key", sa.String(40), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("time", TIME, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("event", sa.String(60), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    for table in ("audit_log", "state", "tokens", "requests", "actions", "subjects", "model_versions"):
        op.drop_table(table)
