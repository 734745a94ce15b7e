"""Sunbird's bulk upload API: which uploads (one per batch) make up a ``processId``.

A new table, written by the dashboard when it publishes a bulk file's batches and read by
``GET /v1/upload/status/{processId}``; additive only, so older code keeps working on a store migrated to it.

Revision ID: 0010
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bulk_processes",
        sa.Column("process_id", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("upload_id", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.Text(), nullable=False),
        sa.Column("operation", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("ids", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("upload_id"),
        sa.UniqueConstraint("process_id", "position", name="bulk_processes_position_key"),
    )


def downgrade() -> None:
    op.drop_table("bulk_processes")
