"""Resubmission while an upload is in progress: the file of each upload, recorded when it is published.

The processor writes an upload's row in ``uploads`` only when it reads the upload's record, so the same file
sent again while the first is still being processed (or while the processor is down) was not seen by the
resubmission check.  ``published_files`` is written by whoever publishes an upload of a file (the CLI's
producer, the dashboard's upload and Sunbird bulk APIs) once it is published: its upload id, batch and
content hash.  Additive only (a new table), so older code keeps working on a store migrated to it.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "published_files",
        sa.Column("upload_id", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("published_by", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("upload_id"),
    )
    op.create_index("published_files_content_idx", "published_files", ["content_hash", "batch_id"])


def downgrade() -> None:
    op.drop_index("published_files_content_idx", table_name="published_files")
    op.drop_table("published_files")
