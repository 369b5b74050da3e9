"""triggers: rule decisions on events, task templates and dry runs, cooldowns, schedules,
change-set approvals

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("events", sa.Column("routing", sa.JSON, nullable=True))
    op.add_column("tasks", sa.Column("rule", sa.String(80), nullable=True))
    op.add_column("tasks", sa.Column("template", sa.String(40), nullable=True))
    op.add_column("tasks", sa.Column("params", sa.JSON, nullable=True))
    op.add_column("tasks", sa.Column("dry_run", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("tasks", sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
    op.add_column("tasks", sa.Column("policy", sa.Text, nullable=True))
    op.add_column("tasks", sa.Column("budgets", sa.JSON, nullable=True))
    op.add_column("approvals", sa.Column("kind", sa.String(16), nullable=False, server_default="call"))
    op.add_column("approvals", sa.Column("change_set", sa.JSON, nullable=True))
    op.create_table(
        "cooldowns",
        sa.Column("rule", sa.String(80), primary_key=True),
        sa.Column("resource", sa.String(200), primary_key=True),
        sa.Column("until", TS, nullable=False),
        sa.Column("event_id", sa.String(40), nullable=True),
    )
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("cron", sa.String(120), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(80), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("misfire_grace_s", sa.Integer, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),   # rules (the file) or api
        sa.Column("created_by", sa.String(80), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("schedules")
    op.drop_table("cooldowns")
    for column in ("change_set", "kind"):
        op.drop_column("approvals", column)
    for column in ("budgets", "policy", "priority", "dry_run", "params", "template", "rule"):
        op.drop_column("tasks", column)
    op.drop_column("events", "routing")
