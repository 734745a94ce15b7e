"""Ledger rows and upload seals name the topic and consumer group that applied them.

Several commands topics (tests, staging) or replay groups may share one store: crash recovery must
re-publish only what *this* group applied from *this* topic.

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
    op.add_column("command_ledger", sa.Column("kafka_topic", sa.Text(), nullable=False, server_default=""))
    op.add_column("command_ledger", sa.Column("group_id", sa.Text(), nullable=False, server_default=""))
    op.drop_index("command_ledger_position_idx", table_name="command_ledger")
    op.create_index(
        "command_ledger_position_idx", "command_ledger", ["group_id", "kafka_topic", "kafka_partition", "kafka_offset"]
    )
    op.add_column("uploads", sa.Column("sealed_topic", sa.Text(), nullable=True))
    op.add_column("uploads", sa.Column("sealed_group", sa.Text(), nullable=True))
    op.drop_index("uploads_sealed_idx", table_name="uploads")
    op.create_index("uploads_sealed_idx", "uploads", ["sealed_group", "sealed_topic", "sealed_partition", "sealed_offset"])


def downgrade() -> None:
    op.drop_index("uploads_sealed_idx", table_name="uploads")
    op.create_index("uploads_sealed_idx", "uploads", ["sealed_partition", "sealed_offset"])
    op.drop_column("uploads", "sealed_group")
    op.drop_column("uploads", "sealed_topic")
    op.drop_index("command_ledger_position_idx", table_name="command_ledger")
    op.create_index("command_ledger_position_idx", "command_ledger", ["kafka_partition", "kafka_offset"])
    op.drop_column("command_ledger", "group_id")
    op.drop_column("command_ledger", "kafka_topic")
