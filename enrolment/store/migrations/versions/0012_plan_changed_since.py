"""A plan's changed-since set, fixed when it is approved (resuming an approved plan reports the same rows).

- ``plans.changed_since``: the user ids whose membership another upload changed after the plan was made, as
  computed when the approval was committed; NULL before. A resumed approval publishes those rows as
  CHANGED_SINCE_PLAN again instead of computing the set afresh.

Additive only (one nullable column).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("plans", sa.Column("changed_since", JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("plans", "changed_since")
