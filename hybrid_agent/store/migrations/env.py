"""Alembic environment: runs migrations on a sync connection to the configured URL."""

from alembic import context
from sqlalchemy import create_engine, pool

from hybrid_agent.store.tables import Base

url = context.config.get_main_option("sqlalchemy.url")
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
