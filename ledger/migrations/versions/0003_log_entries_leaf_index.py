"""a covering index over each entry's leaf data (proofs read it without the record)

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_log_entries_leaf", "log_entries",
                    ["log_id", "idx", "leaf_hash", "record_digest", "salt", "appended_at"])


def downgrade() -> None:
    op.drop_index("ix_log_entries_leaf", table_name="log_entries")
