"""dashboard read model

The dashboard's own tables (prefix dash_), built only from the enrolment-events, course-progress, results
and uploads topics.  Every row carries the dashboard consumer group (group_id) that built it, so a rebuild of
one dashboard (``participants dashboard rebuild``) deletes and replays its rows only, and test dashboards on
private topics never touch the real one.

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Where the read model is in each topic partition; moved with a compare-and-set in the same
    # transaction as the rows it describes (so a batch of messages is applied exactly once).
    op.create_table(
        "dash_positions",
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "topic", "kafka_partition"),
    )
    # Ids of messages already applied ("event:<event id>", "result:<command id>"): a replay changes nothing.
    op.create_table(
        "dash_applied_events",
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "event_id"),
    )
    op.create_table(
        "dash_members",
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("course_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_via", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        # Copies of the user's name and state id (reference data, refreshed when users change): the table's
        # sort and search keys, so a page of a 10k batch is an index range, not a 10k-row join and sort.
        sa.Column("name", sa.Text(), nullable=False, server_default=""),
        sa.Column("state_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("group_id", "batch_id", "user_id"),
    )
    op.create_index("dash_members_enrolled_idx", "dash_members", ["group_id", "batch_id", "enrolled_at", "user_id"])
    op.create_index("dash_members_name_idx", "dash_members", ["group_id", "batch_id", "name", "user_id"])
    op.create_index("dash_members_user_idx", "dash_members", ["user_id"])
    op.create_table(
        "dash_batch_counts",
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.Text(), nullable=False),
        sa.Column("course_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("participant_count", sa.Integer(), nullable=False, server_default="0"),
        # Time of the last membership event (not of the write), so a rebuild gives identical rows.
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "batch_id"),
        sa.CheckConstraint("participant_count >= 0", name="dash_batch_counts_nonnegative"),
    )
    op.create_table(
        "dash_progress",
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("progress", sa.SmallInteger(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "batch_id", "user_id"),
        sa.CheckConstraint("progress BETWEEN 0 AND 100", name="dash_progress_percent"),
    )
    op.create_table(
        "dash_uploads",
        sa.Column("group_id", sa.Text(), nullable=False),
        sa.Column("upload_id", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.Text(), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("file_name", sa.Text(), nullable=True),
        sa.Column("parent_upload_id", sa.Text(), nullable=True),
        sa.Column("commands_published", sa.Integer(), nullable=True),
        sa.Column("refused", postgresql.JSONB(astext_type=sa.Text()), nullable=False, server_default="[]"),
        sa.Column("processed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("outcomes", postgresql.JSONB(astext_type=sa.Text()), nullable=False, server_default="{}"),
        sa.Column("reasons", postgresql.JSONB(astext_type=sa.Text()), nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        # Earliest time any message names for the upload (created_at, else the first result): orders the list
        # and is the same after a rebuild.
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "upload_id"),
    )
    op.create_index("dash_uploads_batch_idx", "dash_uploads", ["group_id", "batch_id"])
    op.create_index("dash_uploads_recent_idx", "dash_uploads", ["group_id", "first_seen_at"])


def downgrade() -> None:
    op.drop_index("dash_uploads_recent_idx", table_name="dash_uploads")
    op.drop_index("dash_uploads_batch_idx", table_name="dash_uploads")
    op.drop_table("dash_uploads")
    op.drop_table("dash_progress")
    op.drop_table("dash_batch_counts")
    op.drop_index("dash_members_user_idx", table_name="dash_members")
    op.drop_index("dash_members_name_idx", table_name="dash_members")
    op.drop_index("dash_members_enrolled_idx", table_name="dash_members")
    op.drop_table("dash_members")
    op.drop_table("dash_applied_events")
    op.drop_table("dash_positions")
