"""The completion rule and the state report columns.

- ``course_completions``: the processor's own record of who completed a batch's course, learned from the
  course-progress topic in the same transaction (and position compare-and-set) as the commands it guards; a
  remove of someone recorded here is refused (``COURSE_COMPLETED``) unless the upload says
  ``include_completed``.
- ``uploads.include_completed``: what the upload said (recorded for the audit trail).
- ``users``: optional profile columns for Sunbird's course progress report (organisation, district, block,
  school name, school UDISE code), loaded by ``participants users import``.

Additive only (a new table, nullable columns, a defaulted boolean), so older code keeps working on a store
migrated to this revision. Revision 0008 is reserved for another change; this one follows 0007 until it lands.

Revision ID: 0009
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

PROFILE_COLUMNS = ("org_name", "district", "block", "school_name", "school_udise")


def upgrade() -> None:
    op.create_table(
        "course_completions",
        sa.Column("batch_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("course_id", sa.Text(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("batch_id", "user_id"),
    )
    op.add_column("uploads", sa.Column("include_completed", sa.Boolean(), nullable=False, server_default="false"))
    for name in PROFILE_COLUMNS:
        op.add_column("users", sa.Column(name, sa.Text(), nullable=True))


def downgrade() -> None:
    for name in reversed(PROFILE_COLUMNS):
        op.drop_column("users", name)
    op.drop_column("uploads", "include_completed")
    op.drop_table("course_completions")
