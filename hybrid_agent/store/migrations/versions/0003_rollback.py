"""snapshots, compensations, restores; steps.snapshot_id and steps.rollback; tasks.check_cmd
and tasks.cancel_requested_at

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("task_id", sa.String(40), nullable=True, index=True),
        sa.Column("step", sa.Integer, nullable=True),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("manifest", sa.String(64), nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("files_read", sa.Integer, nullable=False),
        sa.Column("bytes_stored", sa.BigInteger, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("created_at", TS, nullable=False, index=True),
        sa.Column("expired_at", TS, nullable=True),
    )
    op.create_table(
        "compensations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(40), nullable=True, index=True),
        sa.Column("step", sa.Integer, nullable=True),
        sa.Column("snapshot_id", sa.String(40), nullable=True),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("undoes", sa.Text, nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        sa.Column("ran_at", TS, nullable=True),
        sa.Column("ok", sa.Boolean, nullable=True),
        sa.Column("output", sa.Text, nullable=True),
    )
    op.create_table(
        "restores",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("snapshot_id", sa.String(40), nullable=False, index=True),
        sa.Column("task_id", sa.String(40), nullable=True, index=True),
        sa.Column("step", sa.Integer, nullable=True),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("requested_by", sa.String(80), nullable=True),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("report", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=False),
    )
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("snapshot_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("rollback", sa.JSON, nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("check_cmd", sa.Text, nullable=True))
        batch.add_column(sa.Column("cancel_requested_at", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("cancel_requested_at")
        batch.drop_column("check_cmd")
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("rollback")
        batch.drop_column("snapshot_id")
    op.drop_table("restores")
    op.drop_table("compensations")
    op.drop_table("snapshots")
