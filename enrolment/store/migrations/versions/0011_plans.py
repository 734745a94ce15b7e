"""Plans (plan, approve, apply), batch sync's breaker settings per state, and resubmission.

- ``plans``: a plan of an add, remove or sync, computed against the store at ``made_at`` (``basis``: the
  processor's positions on the commands topic then), waiting for a state admin's decision; applying it is
  one upload (``upload_id``).
- ``plan_rows``: each row of the plan with its expected outcome and reason (COPY-loaded, 10k rows at once).
- ``plan_settings``: per state, whether the implementation team's uploads need approval and the sync
  breaker's thresholds (a state without a row uses the defaults).
- ``uploads.plan_id`` and ``uploads.content_hash``: the plan an upload applied and the SHA-256 of its file
  (the resubmission check), carried by the upload record (UploadSummary v4).

Additive only (new tables, nullable columns), so older code keeps working on a store migrated to it.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("plan_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="waiting"),
        sa.Column("made_by", sa.Text(), nullable=False),
        sa.Column("submitted_by", sa.Text(), nullable=True),
        sa.Column("made_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=True),
        sa.Column("file_name", sa.Text(), nullable=True),
        sa.Column("counts", JSONB(), nullable=False, server_default="{}"),
        sa.Column("basis", JSONB(), nullable=False, server_default="{}"),
        sa.Column("batch_size", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("needs_approval_reason", sa.Text(), nullable=True),
        sa.Column("breaker", JSONB(), nullable=True),
        sa.Column("include_completed", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("allow_repeat", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("upload_id", sa.Text(), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("plan_id"),
        sa.CheckConstraint("kind IN ('add','remove','sync')", name="plans_kind_check"),
        sa.CheckConstraint(
            "status IN ('waiting','approved','rejected','applied','expired')", name="plans_status_check"
        ),
    )
    op.create_index("plans_batch_idx", "plans", ["batch_id", "made_at"])
    op.create_index("plans_waiting_idx", "plans", ["state", "status"])
    op.create_table(
        "plan_rows",
        sa.Column("plan_id", sa.Text(), sa.ForeignKey("plans.plan_id", ondelete="CASCADE"), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("id_type", sa.Text(), nullable=True),
        sa.Column("identifier", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("plan_id", "line"),
    )
    op.create_table(
        "plan_settings",
        sa.Column("state", sa.Text(), sa.ForeignKey("states.code", ondelete="CASCADE"), nullable=False),
        sa.Column("team_approval_required", sa.Boolean(), nullable=False, server_default="true"),
        sa.Column("breaker_percent", sa.Float(), nullable=False, server_default="10"),
        sa.Column("breaker_max_removals", sa.Integer(), nullable=False, server_default="500"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("state"),
    )
    op.add_column("uploads", sa.Column("plan_id", sa.Text(), nullable=True))
    op.add_column("uploads", sa.Column("content_hash", sa.Text(), nullable=True))
    op.create_index(
        "uploads_content_idx",
        "uploads",
        ["content_hash", "batch_id"],
        postgresql_where=sa.text("content_hash IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uploads_content_idx", table_name="uploads")
    op.drop_column("uploads", "content_hash")
    op.drop_column("uploads", "plan_id")
    op.drop_table("plan_settings")
    op.drop_table("plan_rows")
    op.drop_index("plans_waiting_idx", table_name="plans")
    op.drop_index("plans_batch_idx", table_name="plans")
    op.drop_table("plans")
