"""approvals: held calls with what a person needs to decide, and the decision

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("task_id", sa.String(40), nullable=False, index=True),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("tool_call", sa.JSON, nullable=False),
        sa.Column("diff", sa.Text, nullable=True),
        sa.Column("risk", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("scores", sa.JSON, nullable=False),
        sa.Column("snapshot_id", sa.String(40), nullable=True),
        sa.Column("requested_by", sa.String(80), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False, index=True),
        sa.Column("decided_by", sa.String(80), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("resumed_at", TS, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("approvals")
