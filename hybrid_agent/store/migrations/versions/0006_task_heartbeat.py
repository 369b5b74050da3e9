"""task heartbeats (a running task's worker says it is alive; the reaper returns tasks whose
worker vanished), the resource a task acts on, and fencing tokens

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("tasks", sa.Column("resource", sa.String(200), nullable=True))
    op.create_table(
        "fences",
        sa.Column("resource", sa.String(200), primary_key=True),
        sa.Column("token", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fences")
    op.drop_column("tasks", "resource")
    op.drop_column("tasks", "heartbeat_at")
