"""events, tasks, steps, journal, api tokens

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("dedup_key", sa.String(200), nullable=False, unique=True),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(80), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("published_at", TS, nullable=True),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("event_id", sa.String(40), sa.ForeignKey("events.id"), nullable=True, index=True),
        sa.Column("goal", sa.Text, nullable=False),
        sa.Column("status", sa.String(24), nullable=False, index=True),
        sa.Column("workspace", sa.Text, nullable=True),
        sa.Column("queue", sa.String(40), nullable=False),
        sa.Column("requested_by", sa.String(80), nullable=True),
        sa.Column("isolation", sa.String(40), nullable=True),
        sa.Column("deliveries", sa.Integer, nullable=False),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False, index=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
    )
    op.create_table(
        "steps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(40), sa.ForeignKey("tasks.id"), nullable=False, index=True),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("tool_call", sa.JSON, nullable=True),
        sa.Column("decision", sa.String(24), nullable=False),
        sa.Column("observation", sa.Text, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("candidates", sa.JSON, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("timings", sa.JSON, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.UniqueConstraint("task_id", "n"),
    )
    op.create_table(
        "journal",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(60), nullable=False, index=True),
        sa.Column("task_id", sa.String(40), nullable=True, index=True),
        sa.Column("event_id", sa.String(40), nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
    )


def downgrade() -> None:
    for table in ("api_tokens", "journal", "steps", "tasks", "events"):
        op.drop_table(table)
