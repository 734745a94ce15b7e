"""Uploads name who submitted them (``submitted_by``) besides who requested them (``requested_by``).

The requester is the person on whose authority the batch changes (the processor checks them); the submitter
is who sent the upload: the upload API's signed-in user, or the operator account (``cli:LOGIN``) running the
direct path with ``--as``.  Additive only (a nullable column in the store's and the read model's uploads), so
older code keeps working on a store migrated to this revision; uploads recorded before it have no submitter.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("uploads", sa.Column("submitted_by", sa.Text(), nullable=True))
    op.add_column("dash_uploads", sa.Column("submitted_by", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("dash_uploads", "submitted_by")
    op.drop_column("uploads", "submitted_by")
