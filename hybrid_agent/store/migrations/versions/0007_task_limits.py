"""a rule's concurrency limit carried by its tasks, and what a queued task is waiting for
(its resource, or a free slot of its rule)

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("rule_concurrency", sa.Integer, nullable=True))
    op.add_column("tasks", sa.Column("waiting_for", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("tasks", "waiting_for")
    op.drop_column("tasks", "rule_concurrency")
