"""Dashboard sign-in: password accounts, server-side sessions, failed sign-ins, the states a team serves.

Additive only (four new tables), so older code keeps working on a store migrated to this revision.

Revision ID: 0006
Revises: 0004 (becomes 0005 when the token lifecycle revision is merged)
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _user_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("user_id", sa.Text(), primary_key=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        _user_fk(),
    )
    op.create_table(
        "web_sessions",
        sa.Column("session_sha256", sa.Text(), primary_key=True),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("csrf_token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        _user_fk(),
    )
    op.create_index("web_sessions_user_idx", "web_sessions", ["user_id"])
    op.create_table(
        "sign_in_failures",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("client", sa.Text(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    )
    op.create_index("sign_in_failures_user_idx", "sign_in_failures", ["user_id", "failed_at"])
    op.create_index("sign_in_failures_client_idx", "sign_in_failures", ["client", "failed_at"])
    op.create_table(
        "served_states",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "state"),
        _user_fk(),
        sa.ForeignKeyConstraint(["state"], ["states.code"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("served_states")
    op.drop_table("sign_in_failures")
    op.drop_table("web_sessions")
    op.drop_table("accounts")
