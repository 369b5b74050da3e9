"""Alembic environment: runs migrations on a sync connection to the configured URL."""

from alembic import context
from sqlalchemy import create_engine, pool, text

from hybrid_agent.store.tables import Base

url = context.config.get_main_option("sqlalchemy.url")
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Processes starting together (api, router, workers) migrate one at a time.
            connection.execute(text("SELECT pg_advisory_xact_lock(7305210811)"))
        context.run_migrations()
engine.dispose()
