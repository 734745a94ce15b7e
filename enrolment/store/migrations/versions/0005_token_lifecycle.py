"""API tokens get a lifecycle: a public id, a name, who created them, an expiry, the last use and who revoked.

Additive only, so code that predates it keeps working on the migrated table: every new column has a
server default or is nullable.

- ``token_id``: the public handle that ``list`` shows and ``revoke`` takes (``tok_`` + 12 hex digits); the
  database draws one for every existing row and for inserts by older code, new code draws its own.
- ``name``: what the token is for; existing rows take their ``label`` (kept, and still written).
- ``expires_at``: new tokens live 90 days unless asked otherwise. Existing tokens had no expiry; they get 90
  days *from this migration* (the default is evaluated once for the existing rows), so nothing in use stops
  working today and every old token ends within the same window a new one would.
- ``created_by`` (unknown for existing rows), ``last_used_at``, ``revoked_by``: nullable.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TOKEN_ID_DEFAULT = "('tok_'::text || substr(md5((random())::text), 1, 12))"
EXPIRES_DEFAULT = "(now() + '90 days'::interval)"


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("token_id", sa.Text(), nullable=False, server_default=sa.text(TOKEN_ID_DEFAULT)))
    op.add_column("api_tokens", sa.Column("name", sa.Text(), nullable=False, server_default=""))
    op.execute("UPDATE api_tokens SET name = label")
    op.add_column("api_tokens", sa.Column("created_by", sa.Text(), nullable=True))
    op.add_column(
        "api_tokens",
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text(EXPIRES_DEFAULT)),
    )
    op.add_column("api_tokens", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_tokens", sa.Column("revoked_by", sa.Text(), nullable=True))
    op.create_index("api_tokens_token_id_idx", "api_tokens", ["token_id"], unique=True)
    op.create_index("api_tokens_user_idx", "api_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_index("api_tokens_user_idx", table_name="api_tokens")
    op.drop_index("api_tokens_token_id_idx", table_name="api_tokens")
    for column in ("revoked_by", "last_used_at", "expires_at", "created_by", "name", "token_id"):
        op.drop_column("api_tokens", column)
