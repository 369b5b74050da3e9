"""steps.policy: the policy decision on the step's call (decision, risk, reasons, rules,
policy version); steps.model: what the hybrid model's parts decided (ablation, planner,
reranker, budget)

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("policy", sa.JSON, nullable=True))
        batch.add_column(sa.Column("model", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("model")
        batch.drop_column("policy")
